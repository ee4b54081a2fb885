"""Text of the status commands: ``show proc`` in HAProxy's exact columns, ``show programs``, ``show info``.

``show proc`` is parsed by existing tools (dataplaneapi, scripts), so it reproduces HAProxy 3.x's printf
formats byte for byte: ``#%-14s %-15s ...`` header, ``%-15s`` fields with trailing padding, ``# workers``
always present (programs with a runtime socket, see ``forward``), ``# programs`` only when there is one
(as from HAProxy 3.1), ``# old ...`` only when a process replaced by a reload is still stopping.
Unlike HAProxy there is no output-size ceiling: the answer is built whole and buffered per client.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from ..core.program import State
from ..core.status import processes, snapshot

if TYPE_CHECKING:
    from ..core.master import Master

UNKNOWN = "-"


def uptime(seconds: float) -> str:
    """HAProxy's ``<d>d<hh>h<mm>m<ss>s``; negative values clamp to zero."""
    total = int(seconds) if seconds > 0 else 0
    rest = total % 86400
    return f"{total // 86400}d{rest // 3600:02d}h{rest % 3600 // 60:02d}m{rest % 60:02d}s"


def prompt_clock(seconds: float) -> str:
    """The timed prompt's ``[<d>:<hh>:<mm>:<ss>] `` prefix."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"[{days}:{hours:02d}:{minutes:02d}:{secs:02d}] "


HEADER = f"#{'<PID>':<14} {'<type>':<15} {'<reloads>':<15} {'<uptime>':<15} {'<version>':<15}\n"
ROW = "%-15s %-15s %-15s %-15s %-15s\n"
PROGRAM_ROW = "%-15d %-15s %-15d %-15s " + f"{UNKNOWN:<15}\n"  # printf formats of HAProxy's cli_io_handler_show_proc
WORKER_ROW = "%-15d %-15s %-15d %-15s " + f"{UNKNOWN:<15}"  # a worker's type is its program name, version '-'


DEBUG_HEADER = f"\t\t {'<ipc_fd[0]>':<15} {'<ipc_fd[1]>':<15}"
DEBUG_FDS = f"\t\t {-1:<15} {-1:<15}"  # no IPC socketpair: progset talks to workers over their own socket


def show_proc(master: Master, now: float | None = None, *, debug: bool = False) -> str:
    """HAProxy 3.x's layout, built in one pass with %-formatting (at 200 programs this is most of a
    ``show proc`` round trip): programs with a runtime socket are the workers (``@1``...), the others
    are listed under ``# programs`` (omitted when there are none, as from HAProxy 3.1). ``debug`` adds
    3.1's ``<ipc_fd>`` columns to the master and worker rows."""
    from .forward import workers

    now = time.time() if now is None else now
    current, old = processes(master)
    current_workers, old_workers = workers(master)
    extra = DEBUG_FDS if debug else ""
    out = [HEADER if not debug else HEADER[:-1] + DEBUG_HEADER + "\n",
           ROW[:-1] % (os.getpid(), "master", f"{master.reloads} [failed: {master.failed_reloads}]",
                       uptime(now - master.started_wall), master.version) + extra + "\n",
           "# workers\n"]
    for worker in current_workers:
        out.append(WORKER_ROW % (worker.pid, worker.name, worker.reloads, uptime(now - worker.started)) + extra + "\n")
    if old_workers:
        out.append("# old workers\n")
        for worker in old_workers:
            out.append(WORKER_ROW % (worker.pid, worker.name, worker.reloads, uptime(now - worker.started))
                       + extra + "\n")
    worker_pids = {w.pid for w in (*current_workers, *old_workers)}
    uptimes: dict[int, str] = {}  # programs started in the same second share one string
    programs = [p for p in current if p.pid not in worker_pids]
    if programs:
        out.append("# programs\n")
    for process in programs:
        seconds = int(now - process.started)
        text = uptimes.get(seconds)
        if text is None:
            text = uptimes[seconds] = uptime(seconds)
        out.append(PROGRAM_ROW % (process.pid, process.name, process.reloads, text))
    old_programs = [p for p in old if p.pid not in worker_pids]
    if old_programs:
        out.append("# old programs\n")
        for process in old_programs:
            out.append(PROGRAM_ROW % (process.pid, process.name, process.reloads, uptime(now - process.started)))
    return "".join(out)


PROGRAM_COLUMNS = ("<name>", "<state>", "<ready>", "<pid>", "<uptime>", "<restarts>", "<last-exit>", "<backoff>",
                   "<on-reload>", "<last-check>", "<reason>")


def _seconds(value: float) -> str:
    return f"{value:.1f}s"


def show_programs(master: Master, now: float | None = None) -> str:
    """One line per configured program, running or not, with what HAProxy never showed.

    Columns are as wide as their longest value (at least the header), so long names keep the table
    aligned, and every cell but the last is a single word (``-`` when empty) so ``awk`` can split it;
    the last, ``<reason>``, says why a program is FATAL or why a reload kept its old process.
    """
    status = snapshot(master, now)
    rows: list[tuple[str, ...]] = []
    for program in status.programs:
        started = program.uptime(status.now)
        rows.append((program.name, program.state.value, "yes" if program.ready else "no",
                     str(program.pid) if program.pid is not None else UNKNOWN,
                     uptime(started) if started is not None else UNKNOWN,
                     str(program.restarts),
                     program.last_exit.short().replace(" ", "=") if program.last_exit else UNKNOWN,
                     _seconds(program.backoff_seconds) if program.state is State.BACKOFF else UNKNOWN,
                     program.on_reload, program.last_check, program.reason.replace("\n", " ") or UNKNOWN))
    return _table(PROGRAM_COLUMNS, rows)



def _table(columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """A '#'-headed table with left-aligned columns as wide as their widest cell, as `show proc` lays
    out its own. The header counts in every width, so no rows still gives a header (``max(header,
    *())`` with a bare int was a TypeError that emptied the answer)."""
    widths = [max([len(columns[i]) + (1 if i == 0 else 0), *(len(r[i]) for r in rows)])
              for i in range(len(columns))]
    header = "#" + columns[0].ljust(widths[0] - 1) + " " + " ".join(
        title.ljust(widths[i]) for i, title in enumerate(columns) if i > 0)
    lines = [header.rstrip() + "\n"]
    for row in rows:
        lines.append(" ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")
    return "".join(lines)

CHECK_COLUMNS = ("<program>", "<check>", "<state>", "<runs>", "<failures>", "<last>", "<target>", "<last-failure>")


def show_checks(master: Master, name: str | None = None) -> str:
    """Every check of every program (or of one): state, runs, consecutive failures, last result, target
    and the last failure's message (free text, so it comes last, with the sd_notify STATUS=)."""
    status = snapshot(master)
    rows: list[tuple[str, ...]] = []
    for program in status.programs:
        if name is not None and program.name != name:
            continue
        for row in program.checks:
            failure = str(row["last_failure"] or UNKNOWN) + (f" [STATUS={row['status']}]" if row["status"] else "")
            rows.append((program.name, str(row["check"]), str(row["state"]), str(row["runs"]),
                         str(row["consecutive_failures"]), str(row["last_result"] or UNKNOWN),
                         str(row["target"]).replace(" ", "="), failure))
    return _table(CHECK_COLUMNS, rows)


def show_info(master: Master, connections: int, maxconn: int, now: float | None = None) -> str:
    """``Key: value`` lines like HAProxy's worker ``show info``: easy for people and for scripts."""
    status = snapshot(master, now)
    up = int(max(0.0, status.now - status.started))
    fields = [
        ("Name", "progset-supervisor"),
        ("Version", status.version),
        ("Pid", status.pid),
        ("Uptime", f"{up // 86400}d {up % 86400 // 3600}h{up % 3600 // 60:02d}m{up % 60:02d}s"),
        ("Uptime_sec", up),
        ("Config", status.config_path),
        ("Config_origin", status.config_origin or UNKNOWN),
        ("Config_hash", status.config_hash or UNKNOWN),
        ("Config_source", status.config_source or UNKNOWN),
        ("Programs", len(status.programs)),
        ("Running", status.count(State.RUNNING)),
        ("Backoff", status.count(State.BACKOFF)),
        ("Stopped", status.count(State.STOPPED)),  # by a command or at shutdown
        ("Exited", status.count(State.EXITED)),  # ended, and its restart policy leaves it so
        ("Fatal", status.count(State.FATAL)),
        ("Old_instances", len(status.old)),
        ("Reloads", status.reloads),
        ("Reloads_succeeded", status.reload_results.get("success", 0)),
        ("Reloads_failed", status.reload_results.get("failure", 0)),
        ("Reloads_failed_in_a_row", status.failed_reloads),  # since the last success: show proc's [failed: N]
        ("Reload_in_progress", 1 if status.reload_in_progress else 0),
        ("Stopping", 1 if status.shutting_down else 0),
        ("CurrConns", connections),
        ("Maxconn", maxconn),
    ]
    return "".join(f"{key}: {value}\n" for key, value in fields)
