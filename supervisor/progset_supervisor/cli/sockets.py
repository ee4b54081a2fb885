"""``-S`` socket specs and binding them safely.

``-S PATH[,mode,OCTAL][,uid,N][,gid,N][,user,NAME][,group,NAME][,level,user|operator|admin][,maxconn,N]``
follows HAProxy's syntax (bind options with commas instead of spaces), so an existing pod spec keeps
working. ``maxconn`` is the socket's own connection limit: clients of a ``user``-level socket can never
use up the connections of the ``admin`` one.

Binding goes through a private temporary directory where the socket is born with its mode and gets
its owner *before* it is renamed into place (see :func:`bind`): there is never a moment where the final
path accepts connections with the wrong permissions, no step follows a name another user could swap,
and a stale socket left by a killed supervisor is replaced atomically. A path that still
answers connections belongs to a live process and is refused rather than stolen.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import stat
from typing import NamedTuple

from .levels import Level, parse_level

DEFAULT_MODE = 0o660
UNIX_PATH_MAX = 107  # sun_path is 108 bytes including the NUL
OPTIONS = ("mode", "uid", "gid", "user", "group", "level", "maxconn")


class SocketSpec(NamedTuple):
    path: str
    mode: int = DEFAULT_MODE
    uid: int | None = None
    gid: int | None = None
    level: Level = Level.ADMIN
    maxconn: int | None = None  # this socket's own connection limit; None: --cli-maxconn

    @property
    def address(self) -> str:
        """HAProxy's address notation, as listed in ``HAPROXY_MASTER_CLI`` and ``show cli sockets``."""
        return f"unix@{self.path}"


def _int(option: str, value: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        raise ValueError(f"'{option}' expects a number (got '{value}')") from None
    if number < 0:
        raise ValueError(f"'{option}' expects a non-negative number (got '{value}')")
    return number


def parse_spec(text: str) -> SocketSpec:
    """Parse one ``-S`` value; errors name the offending option like HAProxy's do."""
    address, *rest = text.split(",")
    if address.startswith("unix@"):
        address = address[len("unix@"):]
    elif "@" in address.split("/", 1)[0] or (":" in address and not address.startswith(("/", "."))):
        raise ValueError(f"-S '{text}': only Unix socket paths are supported (e.g. /var/run/progset/master.sock)")
    if not address:
        raise ValueError(f"-S '{text}': missing socket path")
    if len(rest) % 2:
        raise ValueError(f"-S '{text}': option '{rest[-1]}' expects a value")
    values: dict[str, object] = {}
    for option, value in zip(rest[::2], rest[1::2], strict=True):
        if option == "mode":
            try:
                mode = int(value, 8)
            except ValueError:
                raise ValueError(f"-S '{text}': 'mode' expects an octal number such as 660 (got '{value}')") from None
            if not 0 <= mode <= 0o7777:
                raise ValueError(f"-S '{text}': 'mode' out of range (got '{value}')")
            values["mode"] = mode
        elif option in ("uid", "gid"):
            values[option] = _int(option, value)
        elif option == "maxconn":
            try:
                values["maxconn"] = _int(option, value)
            except ValueError as exc:
                raise ValueError(f"-S '{text}': {exc}") from None
            if values["maxconn"] == 0:
                raise ValueError(f"-S '{text}': 'maxconn' must be at least 1")
        elif option == "user":
            try:
                values["uid"] = pwd.getpwnam(value).pw_uid
            except KeyError:
                raise ValueError(f"-S '{text}': unknown user '{value}'") from None
        elif option == "group":
            try:
                values["gid"] = grp.getgrnam(value).gr_gid
            except KeyError:
                raise ValueError(f"-S '{text}': unknown group '{value}'") from None
        elif option == "level":
            try:
                values["level"] = parse_level(value)
            except ValueError as exc:
                raise ValueError(f"-S '{text}': {exc}") from None
        else:
            import difflib  # only to suggest a fix for a typo

            best = difflib.get_close_matches(option, OPTIONS, n=1)
            hint = f". Did you mean '{best[0]}' maybe ?" if best else f"; valid options: {', '.join(OPTIONS)}"
            raise ValueError(f"-S '{text}': unknown keyword '{option}'{hint}")
    return SocketSpec(path=address, **values)  # type: ignore[arg-type]


def _check_existing(path: str) -> None:
    """Refuse a live socket or a non-socket file; a stale socket is fine (it gets replaced)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise OSError(f"Master CLI path {path} exists and is not a socket; refusing to replace it")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        return  # nobody listens: a stale socket from a previous run
    except FileNotFoundError:
        return
    except TimeoutError:
        pass  # a full backlog: someone listens, but is slow to accept
    except OSError as exc:
        raise OSError(f"Master CLI socket {path}: cannot check whether it is in use: {exc.strerror}") from None
    finally:
        probe.close()
    raise OSError(f"Master CLI socket {path} is in use by a running process (it accepts connections); "
                  "is another supervisor running?")


def bind(spec: SocketSpec, backlog: int = 1024) -> tuple[socket.socket, int]:
    """Create the listening socket for ``spec``; returns it with the inode, to unlink only our own file.

    No step follows a name someone else could swap for a symlink: the socket is bound in a private
    directory (``mkdtemp``: mode 0700, ours), born with its mode (the umask during ``bind``, so no
    ``chmod`` at all), ``lchown``-ed there, then renamed into place. Before, the temporary name was
    ``PATH.<pid>.tmp`` in the shared directory and was ``chmod``/``chown``-ed by name, so whoever could
    write to that directory could point the name at another file between ``bind`` and ``chown``.
    """
    parent = os.path.dirname(os.path.abspath(spec.path))
    os.makedirs(parent, exist_ok=True)
    if len(os.fsencode(spec.path)) > UNIX_PATH_MAX:
        raise OSError(f"Master CLI socket path {spec.path} is too long for a Unix socket "
                      f"(at most {UNIX_PATH_MAX} bytes)")
    _check_existing(spec.path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    private: str | None = None
    try:
        private = _private_directory(parent)
        target = os.path.join(private, "s")
        if len(os.fsencode(target)) > UNIX_PATH_MAX:  # no room for the detour: bind the final name
            os.rmdir(private)
            private = None
            target = spec.path
            _unlink_quietly(target)
        old_umask = os.umask(0o777 & ~spec.mode)
        try:
            sock.bind(target)
        finally:
            os.umask(old_umask)
        if spec.uid is not None or spec.gid is not None:
            os.chown(target, -1 if spec.uid is None else spec.uid, -1 if spec.gid is None else spec.gid,
                     follow_symlinks=False)
        sock.listen(backlog)
        if private is not None:
            os.rename(target, spec.path)
        inode = os.lstat(spec.path).st_ino
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EPERM and (spec.uid is not None or spec.gid is not None):
            raise OSError(f"Master CLI socket {spec.path}: cannot change owner to uid {spec.uid}, gid {spec.gid} "
                          "(needs root or CAP_CHOWN)") from None
        if exc.strerror:
            raise OSError(f"Master CLI socket {spec.path}: {exc.strerror}") from None
        raise
    finally:
        if private is not None:
            _unlink_quietly(os.path.join(private, "s"))
            try:
                os.rmdir(private)
            except OSError:
                pass
    sock.setblocking(False)
    return sock, inode


def _private_directory(parent: str) -> str:
    """A new directory only we can enter (``tempfile.mkdtemp``'s guarantee without importing tempfile,
    which pulls in ``random`` and ``shutil`` before the first program starts)."""
    for _ in range(100):
        path = os.path.join(parent, f".progset-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            os.mkdir(path, 0o700)  # fails on any existing name, symlinks included
        except FileExistsError:
            continue
        return path
    raise OSError(errno.EEXIST, "cannot create a private temporary directory")


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def unlink_if_ours(path: str, inode: int) -> None:
    """Remove the socket file at shutdown unless something else has replaced it meanwhile."""
    try:
        if os.stat(path).st_ino == inode:
            os.unlink(path)
    except OSError:
        pass
