"""Starting one program process: argv, environment, identity, working dir, umask, process group.

Spawning is on the restart path, so it must stay cheap: ``subprocess.Popen`` without ``preexec_fn``
uses vfork, and everything that would need Python code in the child is done by Popen's own C-level
options (``process_group``, ``umask``, ``cwd``, ``user``/``group``/``extra_groups``). Programs of a
supervisor that is not PID 1 die with it through the guardian process (:mod:`..runtime.guardian`);
only without one does util-linux ``setpriv`` in the exec chain set the parent-death signal. The
caller builds the environment once per definition, not per restart, and PATH is searched by the
exec itself (explained only if it fails); argv[0] is passed exactly as written.
Errors a retry cannot fix (no such executable, no permission to switch user) are reported as
:class:`SpawnError` with the reason.

Why not ``os.posix_spawn``: measured no faster here (the parent waits for the exec either way, and
that is most of a spawn), and glibc's leaves its internal signals 32 and 33 ignored in the program.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

from ..config import Program


class SpawnError(Exception):
    """The program cannot be started as configured; retrying without a config change will not help."""


class Identity:
    """Resolved ids for a program; ``None`` fields mean "keep the supervisor's"."""

    __slots__ = ("gid", "groups", "uid")

    def __init__(self, uid: int | None = None, gid: int | None = None,
                 groups: tuple[int, ...] | None = None) -> None:
        self.uid, self.gid, self.groups = uid, gid, groups


KEEP_IDENTITY = Identity()


@functools.cache
def setpriv() -> str | None:
    """Path of util-linux ``setpriv``, looked up once (only a supervisor that is not PID 1 needs it)."""
    import shutil

    return shutil.which("setpriv")


def resolve_identity(program: Program) -> Identity:
    """Names or numeric ids, resolved at each spawn (a new user in /etc/passwd is picked up).

    A user given by name gets its supplementary groups (initgroups), unlike HAProxy which kept the
    master's. A numeric uid with no passwd entry (OpenShift's random UIDs) is allowed.
    """
    if program.user is None and program.group is None:
        return KEEP_IDENTITY  # the common case, on every restart: nothing to look up
    import grp
    import pwd

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
    euid, egid = os.geteuid(), os.getegid()
    if uid == euid and gid in (None, egid) and (groups is None or set(groups) <= set(os.getgroups()) | {egid}):
        return KEEP_IDENTITY  # already this identity: switching would only fail for a non-root supervisor
    if (uid is not None or gid is not None) and euid != 0:
        who = f"user '{program.user}'" if program.user else f"group '{program.group}'"
        raise SpawnError(f"cannot switch to {who}: the supervisor runs as uid {euid}, not root; "
                         "remove user/group from the program or run the supervisor as root")
    return Identity(uid, gid, groups)


def resolve_executable(program: Program, env: Mapping[str, str]) -> str:
    """Find argv[0] the way execvp would, or raise :class:`SpawnError` saying why it cannot run."""
    argv0 = program.command[0]
    if "/" in argv0:
        path = argv0 if os.path.isabs(argv0) or program.working_dir is None else os.path.join(
            program.working_dir, argv0)
        if not os.path.exists(path):
            raise SpawnError(f"cannot execute {argv0}: no such file")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise SpawnError(f"cannot execute {argv0}: not an executable file")
        return argv0
    import shutil

    search = env.get("PATH", os.defpath)
    found = shutil.which(argv0, path=search)
    if found is None:
        raise SpawnError(f"cannot execute {argv0}: not found in PATH ({search})")
    return found


def build_env(program: Program, base: Mapping[str, str]) -> dict[str, str]:
    env = dict(base)
    for var in program.env:
        env[var.name] = var.value
    return env


def _explain(program: Program, env: Mapping[str, str], exc: OSError) -> SpawnError:
    """Turn an exec failure into the message a lookup before the fork would have given."""
    try:
        resolve_executable(program, env)
    except SpawnError as reason:
        return reason
    return SpawnError(f"cannot start {program.command[0]}: {exc.strerror or exc}")


def spawn(program: Program, env: dict[str, str] | None, *, pdeathsig: bool) -> tuple[int, int, int]:
    """Fork and exec ``program`` in its own process group with stdout/stderr on fresh pipes.

    ``env`` is the program's full environment (:func:`build_env`), or None for the supervisor's own,
    inherited as it is (no per-spawn conversion). Returns the pid and the read ends
    of its stdout and stderr pipes, owned by the caller. The pipes are made here (close-on-exec;
    Popen dup2s the write ends onto 1 and 2 in the child) rather than with ``subprocess.PIPE``, whose
    file objects the supervisor would only unwrap and throw away on every restart.
    """
    import subprocess  # already imported by the time anything spawns; here so start-up pays it later

    search_env = os.environ if env is None else env
    identity = resolve_identity(program)
    if program.working_dir is not None and not os.path.isdir(program.working_dir):
        raise SpawnError(f"working directory {program.working_dir} does not exist")
    wrapper = setpriv() if pdeathsig else None
    if wrapper is not None:
        # The fallback when no guardian runs: setpriv sets PR_SET_PDEATHSIG after Popen switched ids (a
        # credential change clears it), then execvp()s the program with its argv exactly as written
        # (checked here first: setpriv failing to find it would only be exit 127), with the same pid.
        resolve_executable(program, search_env)
        argv = [wrapper, "--pdeathsig", "KILL", "--", *program.command]
    else:
        # Popen searches the program's PATH in the child as execvp does; a failure comes back as an
        # OSError and is explained then, so a successful start pays for no lookup. argv[0] stays as
        # written (HAProxy, supervisord and runc do the same; ``pgrep -x`` depends on it).
        argv = list(program.command)
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
            raise _explain(program, search_env, exc) from None
        if isinstance(exc, ValueError | OverflowError):  # the model rejects these; never let one kill the loop
            raise SpawnError(f"cannot start {program.command[0]}: {exc}") from None
        raise
    finally:
        os.close(out_w)
        os.close(err_w)
    # The master reaps every child itself (waitpid(-1)). A Popen dropped with no return code would
    # be polled by subprocess's clean-up at the next Popen, which would steal the exit status.
    popen.returncode = 0
    return popen.pid, out_r, err_r


def preflight(program: Program, base_env: Mapping[str, str]) -> str | None:
    """Why ``program`` cannot start on this machine (user, group, working directory, executable), or
    None. Checked before a reload stops a working process for a new definition: the old process
    stays when the new one could not start."""
    problems = preflight_problems(program, base_env)
    return "; ".join(problems) if problems else None


def preflight_problems(program: Program, base_env: Mapping[str, str]) -> list[str]:
    """Every reason ``program`` cannot start here, each checked on its own (``-c`` lists them all)."""
    problems = []
    try:
        resolve_identity(program)
    except SpawnError as exc:
        problems.append(str(exc))
    if program.working_dir is not None and not os.path.isdir(program.working_dir):
        problems.append(f"working directory {program.working_dir} does not exist")
    try:
        resolve_executable(program, build_env(program, base_env) if program.env else base_env)
    except SpawnError as exc:
        problems.append(str(exc))
    return problems
