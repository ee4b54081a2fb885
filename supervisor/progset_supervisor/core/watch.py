"""Config watching with inotify: reload when the file or the kubelet's ConfigMap directory changes.

The kubelet updates a mounted ConfigMap by writing a new timestamped directory and renaming a
``..data_tmp`` symlink over ``..data``: the key files themselves (symlinks into ``..data``) never
change. So we watch the *directory* (the config directory itself, or the parent of a config file),
debounce the burst of events one update makes, and reload only if the bytes of the config changed.
No polling: the inotify fd sits in the event loop like any socket.

The watcher is set up after the first programs were started (it needs ctypes, whose import is
not worth delaying them for). It is given the content the first load read, and compares once
when it starts, so a change made in between is not lost.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

from ..config import ConfigError
from ..config.loader import HAPROXY_SUFFIXES, YAML_SUFFIXES, config_files, fingerprint
from ..runtime.libc import libc
from ..runtime.loop import Loop, Timer

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_CLOSE_WRITE = 0x008
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000
WATCH_MASK = (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
              | IN_DELETE_SELF | IN_MOVE_SELF)
PARENT_MASK = IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE
_EVENT = struct.Struct("iIII")


class WatchError(Exception):
    pass


def config_fingerprint(path: str) -> bytes:
    """What a load of ``path`` would read now (resolving the kubelet's symlinks), as ``loader.fingerprint``
    makes it, so it compares equal to :attr:`Config.fingerprint` of a load of the same files."""
    files: list[tuple[str, bytes]] = []
    try:
        for file in config_files(path) if os.path.isdir(path) else [path]:
            with open(file, "rb") as handle:
                files.append((file, handle.read()))
    except (OSError, ConfigError):
        return b"unreadable"
    return fingerprint(files)


class ConfigWatcher:
    """Calls ``on_change()`` once per settled change of the config's content."""

    def __init__(self, loop: Loop, path: str, on_change: Callable[[], None], debounce: float = 0.2,
                 loaded: bytes | None = None) -> None:
        """``loaded``: the fingerprint of what was last loaded (:attr:`Config.fingerprint`); a difference
        from the files as they are now counts as a change (the default, None, takes them as they are)."""
        import ctypes

        self.loop = loop
        self.path = os.path.abspath(path)
        self.is_directory = os.path.isdir(self.path)
        self.directory = self.path if self.is_directory else os.path.dirname(self.path)
        self.name = os.path.basename(self.path)
        self.on_change = on_change
        self.debounce = debounce
        self._timer: Timer | None = None
        self._libc = libc()
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise WatchError(f"inotify_init1 failed: {os.strerror(ctypes.get_errno())}")
        self.fd = fd
        wd = self._libc.inotify_add_watch(fd, os.fsencode(self.directory), WATCH_MASK)
        if wd < 0:
            os.close(fd)
            raise WatchError(f"cannot watch {self.directory}: {os.strerror(ctypes.get_errno())}")
        self.wd = wd
        # An inotify watch follows an inode, not a path: once the directory is replaced (renamed away
        # and a new one renamed or created in its place) the watch saw nothing ever again. Watching the
        # parent for our directory's name lets us move the watch to the new directory.
        self.parent_wd: int | None = None
        parent = os.path.dirname(self.directory)
        if parent != self.directory:
            parent_wd = self._libc.inotify_add_watch(fd, os.fsencode(parent), PARENT_MASK)
            self.parent_wd = parent_wd if parent_wd >= 0 else None
        loop.add_reader(fd, self._readable)
        # Read after the watch exists: a change from here on is an event, one before it a difference.
        self.fingerprint = config_fingerprint(self.path)
        if loaded is not None and loaded != self.fingerprint:
            self.fingerprint = loaded
            self._timer = loop.call_later(debounce, self._settled)  # as if an event had come

    def accept(self, fingerprint: bytes) -> None:
        """The content the master just loaded, so a reload by signal does not trigger another."""
        self.fingerprint = fingerprint

    def _relevant(self, name: bytes) -> bool:
        """Only events that can change what the loader reads count; a busy neighbour file in the same
        directory (a log, a pid file) must neither wake a reload check nor delay one."""
        if not name or name.startswith(b".."):  # the directory itself, or the kubelet's ..data swap
            return True
        text = os.fsdecode(name)
        if self.is_directory:
            return text.endswith(YAML_SUFFIXES + HAPROXY_SUFFIXES)
        return text == self.name

    def _readable(self) -> None:
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return
        relevant = False
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, _, _, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            if wd == self.wd:
                relevant = relevant or self._relevant(name)
            elif wd == self.parent_wd:
                if name == os.fsencode(os.path.basename(self.directory)):
                    self._rewatch()
                    relevant = True
            elif wd == -1:  # IN_Q_OVERFLOW: events were lost, so compare the content
                relevant = True
        # The first relevant event of a burst arms the timer; later ones do not push it back, so a
        # directory that never stops changing still gets its change noticed within ``debounce``.
        if relevant and self._timer is None:
            self._timer = self.loop.call_later(self.debounce, self._settled)

    def _rewatch(self) -> None:
        """Watch whatever directory now has our path (the same wd if it is still the same inode)."""
        if self.fd < 0:
            return
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(self.directory), WATCH_MASK)
        if wd >= 0:
            self.wd = wd

    def _settled(self) -> None:
        self._timer = None
        self._rewatch()  # the directory may have been replaced between its parent's event and now
        fingerprint = config_fingerprint(self.path)
        if fingerprint != self.fingerprint:
            self.fingerprint = fingerprint
            self.on_change()

    def close(self) -> None:
        if self.fd >= 0:
            self.loop.remove_reader(self.fd)
            os.close(self.fd)
            self.fd = -1
