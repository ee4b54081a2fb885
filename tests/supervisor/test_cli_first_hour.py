"""Master CLI answers a newcomer reads first: show info's counts, show logs of a silent program, and
show startup-logs keeping to the start-up or the last reload (as HAProxy's)."""

from __future__ import annotations

from .cli_helpers import CliSupervisor, socket_dir
from .helpers import wait_until

CONFIG = """\
programs:
  - name: silent
    command: [sleep, "3600"]
  - name: once
    command: [sh, -c, "echo done"]
    restart: never
  - name: stopme
    command: [sleep, "3600"]
"""


def info(sup: CliSupervisor) -> dict[str, str]:
    lines = [line for line in sup.text("show info").splitlines() if line]
    keys = [line.split(": ", 1)[0] for line in lines]
    assert len(keys) == len(set(keys)), keys
    return dict(line.split(": ", 1) for line in lines)


def test_show_info_counts_exited_apart_from_stopped_and_names_each_reload_counter_once() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CONFIG, programs=3) as sup:
        wait_until(lambda: info(sup)["Exited"] == "1")
        assert sup.text("stop stopme").startswith("Program 'stopme'")
        values = info(sup)
        assert (values["Running"], values["Stopped"], values["Exited"]) == ("1", "1", "1")
        assert "Failed_reloads" not in values
        assert (values["Reloads_failed"], values["Reloads_failed_in_a_row"]) == ("0", "0")


def test_show_logs_of_a_silent_program_says_so() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CONFIG, programs=3) as sup:
        assert sup.text("show logs silent") == "Program 'silent' has written no output yet.\n\n"
        wait_until(lambda: sup.text("show logs once") == "done\n\n")


def test_show_startup_logs_ends_with_the_load() -> None:
    with socket_dir() as directory, CliSupervisor(directory, CONFIG, programs=3) as sup:
        wait_until(lambda: sup.err.matching(r"Current program 'once' \(\d+\) exited"))
        assert sup.text("stop stopme").startswith("Program 'stopme'")
        startup = sup.text("show startup-logs")
        assert startup.rstrip("\n").endswith("Loading success.")
        assert "exited" not in startup and "stopped" not in startup  # runtime events stay out
        sup.config.write_text(CONFIG.replace('"3600"]\n  - name: once', '"3601"]\n  - name: once'))
        reloaded = sup.cli(b"reload\n", timeout=30).decode()
        assert reloaded.startswith("Success=1")
        wait_until(lambda: sup.text("show startup-logs").rstrip("\n").endswith("Loading success."))
        after = sup.text("show startup-logs")
        assert after.startswith("[NOTICE]") and "Reloading progset on master CLI" in after.splitlines()[0]
        assert sup.text("restart silent").startswith("Program 'silent'")
        assert sup.text("show startup-logs") == after  # a restart by command is no part of the reload
