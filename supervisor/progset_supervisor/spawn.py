"""Starting one program process: argv, environment, identity, working dir, umask, process group.

Spawning is on the restart path, so it must stay cheap: ``subprocess.Popen`` without ``preexec_fn``
uses vfork (about 0.25 ms a process). Everything that would need Python code in the child is done by
Popen's own C-level options (``process_group``, ``umask``, ``cwd``, ``user``/``group``/``extra_groups``)
or by util-linux ``setpriv`` in the exec chain (the parent-death signal, so programs die with a
supervisor that is not PID 1). Errors a retry cannot fix (no such executable, no permission to switch
user) are found *before* forking and reported as :class:`SpawnError` with the reason.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from typing import NamedTuple

from .config import Program

SETPRIV = shutil.which("setpriv")


class SpawnError(Exception):
    """The program cannot be started as configured; retrying without a config change will not help."""


@dataclass(frozen=True)
class Identity:
    """Resolved ids for a program; ``None`` fields mean "keep the supervisor's"."""

    uid: int | None = None
    gid: int | None = None
    groups: tuple[int, ...] | None = None


def resolve_identity(program: Program) -> Identity:
    """Names or numeric ids, resolved at each spawn (a new user in /etc/passwd is picked up).

    A user given by name gets its supplementary groups (initgroups), unlike HAProxy which kept the
    master's. A numeric uid with no passwd entry (OpenShift's random UIDs) is allowed.
    """
    if program.user is None and program.group is None:
        return Identity()  # the common case, on every restart: nothing to look up
    uid = gid = None
    groups: tuple[int, ...] | None = None
    user_name: str | None = None
    if program.user is not None:
        if program.user.isdigit():
            uid = int(program.user)
            try:
                entry = pwd.getpwuid(uid)
                user_name, gid = entry.pw_name, entry.pw_gid
            except KeyError:
                groups = ()
        else:
            try:
                entry = pwd.getpwnam(program.user)
            except KeyError:
                raise SpawnError(f"unknown user '{program.user}' (not in the passwd database); "
                                 "use a known name or a numeric uid") from None
            uid, gid, user_name = entry.pw_uid, entry.pw_gid, entry.pw_name
    if program.group is not None:
        if program.group.isdigit():
            gid = int(program.group)
        else:
            try:
                gid = grp.getgrnam(program.group).gr_gid
            except KeyError:
                raise SpawnError(f"unknown group '{program.group}' (not in the group database); "
                                 "use a known name or a numeric gid") from None
    if user_name is not None and gid is not None:
        groups = tuple(sorted(set(os.getgrouplist(user_name, gid))))
    elif gid is not None:
        groups = (gid,)  # no user entry to take groups from: only the primary group, never root's
    current = Identity(os.geteuid(), os.getegid(), None)
    if uid == current.uid and gid in (None, current.gid) and (groups is None or set(groups) <= set(os.getgroups())
                                                              | {current.gid}):
        return Identity()  # already this identity: switching would only fail for a non-root supervisor
    if (uid is not None or gid is not None) and os.geteuid() != 0:
        who = f"user '{program.user}'" if program.user else f"group '{program.group}'"
        raise SpawnError(f"cannot switch to {who}: the supervisor runs as uid {os.geteuid()}, not root; "
                         "remove user/group from the program or run the supervisor as root")
    return Identity(uid, gid, groups)


def resolve_executable(program: Program, env: dict[str, str]) -> str:
    """Find argv[0] the way execvp would, but here, so a typo is a clear FATAL and not exit 127."""
    argv0 = program.command[0]
    if "/" in argv0:
        path = argv0 if os.path.isabs(argv0) or program.working_dir is None else os.path.join(
            program.working_dir, argv0)
        if not os.path.exists(path):
            raise SpawnError(f"cannot execute {argv0}: no such file")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise SpawnError(f"cannot execute {argv0}: not an executable file")
        return argv0
    found = shutil.which(argv0, path=env.get("PATH", os.defpath))
    if found is None:
        raise SpawnError(f"cannot execute {argv0}: not found in PATH ({env.get('PATH', os.defpath)})")
    return found


def build_env(program: Program, base: dict[str, str]) -> dict[str, str]:
    env = dict(base)
    for var in program.env:
        env[var.name] = var.value
    return env


class Spawned(NamedTuple):
    """A started program: its Popen (kept so subprocess never waits for it) and the read ends of its
    stdout and stderr pipes, owned by the caller."""

    popen: subprocess.Popen[bytes]
    stdout_fd: int
    stderr_fd: int


def spawn(program: Program, base_env: dict[str, str], *, pdeathsig: bool) -> Spawned:
    """Fork and exec ``program`` in its own process group with stdout/stderr on fresh pipes.

    The pipes are made here (non-inheritable; Popen dup2s the write ends onto 1 and 2 in the child)
    rather than with ``subprocess.PIPE``, whose file objects the supervisor would only unwrap and
    throw away on every restart.
    """
    env = build_env(program, base_env)
    identity = resolve_identity(program)
    if program.working_dir is not None and not os.path.isdir(program.working_dir):
        raise SpawnError(f"working directory {program.working_dir} does not exist")
    executable = resolve_executable(program, env)
    argv = [executable, *program.command[1:]]
    if pdeathsig and SETPRIV is not None:
        # setpriv sets PR_SET_PDEATHSIG after Popen switched ids (a credential change clears it), then
        # execs the program (resolved to its path here) with the same pid.
        argv = [SETPRIV, "--pdeathsig", "KILL", "--", *argv]
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    try:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err_w,
            env=env,
            cwd=program.working_dir,
            close_fds=True,
            process_group=0,
            umask=-1 if program.umask is None else program.umask,
            user=identity.uid,
            group=identity.gid,
            extra_groups=list(identity.groups) if identity.groups is not None else None,
        )
    except BaseException as exc:
        os.close(out_r)
        os.close(err_r)
        if isinstance(exc, OSError):
            raise SpawnError(f"cannot start {program.command[0]}: {exc.strerror or exc}") from None
        if isinstance(exc, ValueError | OverflowError):  # the model rejects these; never let one kill the loop
            raise SpawnError(f"cannot start {program.command[0]}: {exc}") from None
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    return Spawned(popen, out_r, err_r)
