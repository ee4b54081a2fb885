"""``progset-supervisor``: command line, start-up and the main loop.

Flags follow HAProxy's where they exist (``-f``, ``-S``, ``-p``), so a pod spec written for an
HAProxy master needs few changes.
"""

from __future__ import annotations

import gc
import os
import resource
import sys
from collections import Counter
from typing import Any

from . import _early  # noqa: F401  (_early first: it guards start-up against reload signals)
from .cmdline import parse_args
from .config import Config, ConfigError
from .config.haproxy_version import parse_target
from .core.master import Master, Options
from .core.watch import ConfigWatcher, WatchError
from .load_notes import load_notes
from .runtime.libc import libc
from .runtime.log import Logger
from .runtime.loop import Loop
from .runtime.output import OutputSink

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphans of our programs even when not PID 1, so nothing we started stays a zombie."""
    try:
        return libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except OSError:
        return False


def check_only(config: Config, args: Any, log: Logger) -> int:
    """``-c``: the config is valid; warn about what cannot start here (fail with ``--strict``)."""
    from .core.spawn import preflight_problems

    env = {**os.environ, "HAPROXY_MWORKER": "1"}
    problems = [(p.name, reason) for p in config.programs for reason in preflight_problems(p, env)]
    for name, reason in problems:
        log.warning(f"Program '{name}' cannot start on this machine: {reason}")
    if problems and args.strict:
        log.alert(f"{len({name for name, _ in problems})} program(s) cannot start on this machine (--strict).")
        return 1
    if not args.quiet:
        print(f"Configuration file is valid ({len(config.programs)} programs, {config.hash})"
              + (f"; {len({name for name, _ in problems})} cannot start on this machine" if problems else ""))
    return 0


def start_guardian(master: Master) -> None:
    """Outside PID 1, a guardian process kills the programs' trees if this process is SIGKILLed."""
    from .runtime.guardian import Guardian

    def lost(status: int) -> None:
        master.guardian = None
        master.log.warning(f"The guardian process ended (wait status {status}): programs started from now on "
                           "die with the supervisor through setpriv's parent-death signal only")
    try:
        guardian = Guardian(master.loop, master.watch_exit, lost)
    except OSError as exc:
        master.log.warning(f"Cannot start the guardian process ({exc}); programs die with the supervisor "
                           "through setpriv's parent-death signal only")
        return
    master.guardian = guardian
    master.reaper.on_adopt = guardian.adopt
    master.reaper.on_release = guardian.release
    master.on_exit_hooks.append(guardian.finish)


def raise_fd_limit() -> None:
    """Two pipes per program: lift the soft fd limit to the hard one for large configs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def attach_output(master: Master, sink: OutputSink, log: Logger) -> None:
    """From here on, program output and our own messages never block the loop (see :mod:`.runtime.output`)."""
    def drained(stream: str, dropped: Counter[str], seconds: float) -> None:
        parts = [f"{name}: {count}" if name else f"supervisor messages: {count}" for name, count in dropped.items()]
        log.warning(f"Output to {stream} was blocked for {seconds:.1f}s: {sum(dropped.values())} lines were "
                    f"dropped ({', '.join(parts)})")

    def mode_of(name: str) -> str | None:
        supervised = master.programs.get(name)
        return supervised.program.output if supervised is not None else None

    sink.mode_of = mode_of
    sink.attach(master.loop, drained)
    log.write = sink.write_supervisor


def refuse_haproxy_only_flags(args: Any) -> str:
    """HAProxy flags that cannot mean anything for progset: the reason, or "" when none was given."""
    if args.daemon:
        return ("-D (daemon mode) is not supported: progset stays in the foreground, as a container's main "
                "process or a systemd service must (use -Ws with Type=notify); drop -D, keep -p PIDFILE for a pid file")
    if args.soft_finish is not None or args.terminate is not None:
        flag = "-sf" if args.soft_finish is not None else "-st"
        return (f"{flag} hands HAProxy's listening sockets over from old processes; progset has none to hand over. "
                "Reload the running supervisor instead: kill -USR2 <pid>, or 'reload' on its Master CLI")
    return ""


def start_watchers(master: Master, paths: list[str], config: Any) -> list[ConfigWatcher]:
    """One inotify watcher per ``-f``; each one's change reloads everything, as any change does."""
    from .core.watch import config_fingerprint

    watchers: list[ConfigWatcher] = []
    for path in paths:
        try:
            watcher = ConfigWatcher(master.loop, path, lambda: master.reload(origin="config change"),
                                    master.options.debounce_seconds,
                                    loaded=config.fingerprint if len(paths) == 1 else None)
        except WatchError as exc:
            master.log.warning(f"Not watching {path} for changes: {exc}")
            continue
        if len(paths) == 1:
            master.on_load_hooks.append(lambda loaded, w=watcher: w.accept(loaded.fingerprint))
        else:  # the config's fingerprint covers every file: each watcher compares only its own path's
            master.on_load_hooks.append(lambda loaded, w=watcher: w.accept(config_fingerprint(w.path)))
        watchers.append(watcher)
    return watchers


def main(argv: list[str] | None = None) -> int:
    # No cyclic garbage collection until the first programs run: what start-up allocates (modules,
    # the config) lives for the whole run, so collecting cost 3-9 ms at 200 programs and freed nothing.
    gc.disable()
    args = parse_args(argv)
    log = Logger(fmt=args.log_format, min_level="ALERT" if args.quiet else "DIAG" if args.diag else "NOTICE")
    refusal = refuse_haproxy_only_flags(args)
    if refusal:
        log.alert(refusal)
        return 1
    try:
        target = parse_target(args.haproxy_version)
    except ValueError as exc:
        log.alert(f"--haproxy-version: {exc}")
        return 1
    from .loading import ConfigLoader

    os.environ["HAPROXY_MWORKER"] = "1"  # programs inherit the supervisor's environment, as under HAProxy
    loader = ConfigLoader(args.config, target, log, allow_no_programs=args.allow_no_programs)
    try:
        config = loader.load()
    except ConfigError as exc:
        for problem in exc.problems:
            log.alert(str(problem))
        log.alert("config : Fatal errors found in configuration.")
        return 1
    if args.check:
        return check_only(config, args, log)
    raise_fd_limit()
    is_pid1 = os.getpid() == 1
    if not is_pid1:
        become_subreaper()
    loop = Loop()
    options = Options(config_path=", ".join(args.config), log_lines=args.log_lines, pdeathsig=not is_pid1,
                      watch=not args.no_watch, loader=loader.load)
    sink = OutputSink(args.log_format, mode=args.output)
    master = Master(options, loop, log, sink, base_env=os.environ)
    attach_output(master, sink, log)
    master.install_signals()
    if not is_pid1:
        start_guardian(master)
    services = []
    try:
        if args.sockets:
            from .cli.server import start_cli  # the Master CLI, only when asked for
            services.append(start_cli(master, args.sockets, maxconn=args.cli_maxconn, idle_timeout=args.cli_timeout))
        if args.metrics_address != "off":
            from .http.server import start_http
            services.append(start_http(master, args.metrics_address))
        if args.health_address != "off":
            from .http.server import start_http

            services.append(start_http(master, args.health_address, health_only=True))
    except (OSError, ValueError) as exc:
        log.alert(f"Cannot start: {exc}")
        return 1
    if args.pidfile:
        with open(args.pidfile, "w") as pidfile:
            pidfile.write(f"{os.getpid()}\n")
    loader.snapshot()  # HAPROXY_MWORKER and HAPROXY_MASTER_CLI are set: this is what programs start from
    loader.apply_environment(config)
    master.on_load_hooks.append(loader.apply_environment)
    if args.systemd:
        from .systemd import SystemdNotifier

        SystemdNotifier.attach(log)
    master.start(config)
    for note in load_notes(config):
        log.warning(note)
    master.on_load_hooks.append(lambda loaded: [log.warning(note) for note in load_notes(loaded)])
    gc.enable()
    master.rng  # noqa: B018  (imports random now, once the programs run, not on the first crash's restart)
    watchers = start_watchers(master, args.config, config) if options.watch else []
    try:
        loop.run_forever()
    finally:
        for service in services:
            service.close()
        for watcher in watchers:
            watcher.close()
        if args.pidfile:
            try:
                os.unlink(args.pidfile)
            except FileNotFoundError:
                pass
        log.write = None
        sink.close()
    return master.exit_code or 0


if __name__ == "__main__":
    sys.exit(main())
