"""Program output: modes, and writes that never block the loop (issue 15.1, issue 14.5).

Real pipes and the real loop: a pipe nobody reads stands for a stalled container log pipe.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from progset_supervisor.runtime.loop import Loop
from progset_supervisor.runtime.output import OutputSink, StreamWriter, format_lines

from .helpers import program, programs_config, started


@pytest.fixture
def pipe():  # type: ignore[no-untyped-def]
    r, w = os.pipe()
    yield r, w
    for fd in (r, w):
        try:
            os.close(fd)
        except OSError:
            pass


def read_available(fd: int) -> bytes:
    os.set_blocking(fd, False)
    data = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def test_a_full_pipe_drops_whole_lines_counts_them_and_announces_once(pipe) -> None:  # type: ignore[no-untyped-def]
    r, w = pipe
    loop = Loop()
    writer = StreamWriter(w, "stdout", limit=4096)
    episodes: list[tuple[str, Counter[str], float]] = []
    writer.on_drained = lambda stream, dropped, seconds: episodes.append((stream, dropped, seconds))
    writer.attach(loop)
    line = b"x" * 99 + b"\n"
    accepted = dropped = 0
    for i in range(5000):  # 500 kB into a 64 kB pipe plus a 4 kB buffer: must return at once, every time
        if writer.write(line, 1, "api" if i % 2 else "web"):
            accepted += 1
        else:
            dropped += 1
    assert dropped > 0 and accepted + dropped == 5000
    assert len(writer.buffer) <= 4096
    assert sum(writer.dropped.values()) == dropped == sum(writer.dropped_total.values())
    assert episodes == []  # not announced while the pipe is still full
    data = b""
    while writer.buffer or writer.waiting:
        data += read_available(r)
        loop.run_once(0.5)
    data += read_available(r)
    assert data == line * accepted  # whole lines only, in order, none torn
    assert len(episodes) == 1 and episodes[0][0] == "stdout"
    assert sum(episodes[0][1].values()) == dropped and set(episodes[0][1]) == {"api", "web"}
    assert writer.dropped == Counter()  # the next episode starts from zero...
    assert sum(writer.dropped_total.values()) == dropped  # ...the metric's total does not
    writer.close()
    assert os.get_blocking(w)  # handed back as it was given
    loop.close()


def test_a_closed_reader_is_not_an_error(pipe) -> None:  # type: ignore[no-untyped-def]
    r, w = pipe
    loop = Loop()
    writer = StreamWriter(w, "stdout")
    writer.attach(loop)
    os.close(r)
    assert writer.write(b"gone\n")
    assert writer.broken and not writer.buffer
    writer.close()
    loop.close()


def test_stdout_and_stderr_on_one_pipe_share_one_writer(pipe) -> None:  # type: ignore[no-untyped-def]
    _r, w = pipe
    w2 = os.dup(w)
    try:
        sink = OutputSink(stdout_fd=w, stderr_fd=w2)
        assert sink.writers["stdout"] is sink.writers["stderr"]
    finally:
        os.close(w2)


@pytest.mark.parametrize(("mode", "expected"), [
    ("prefixed", b"api | hello\napi | world\n"), ("raw", b"hello\nworld\n")])
def test_text_modes(mode: str, expected: bytes) -> None:
    assert format_lines(mode, "api", 42, "stdout", [b"hello", b"world"]) == expected


def test_json_mode() -> None:
    record = json.loads(format_lines("json", "api", 42, "stderr", [b"caf\xc3\xa9 \xff"]))
    assert {k: v for k, v in record.items() if k != "ts"} == {"program": "api", "pid": 42, "stream": "stderr",
                                                              "line": "café \ufffd"}


def test_output_modes_end_to_end(tmp_path: Path) -> None:
    """``--output raw`` for all, a program's own ``output`` wins: HAProxy's raw lines where wanted."""
    config = programs_config(
        program("plain", "sh", "-c", "echo plain-line; exec sleep 60"),
        program("jsonlog", "sh", "-c", "echo '{\"level\":\"info\"}'; exec sleep 60", output="raw"),
        program("tagged", "sh", "-c", "echo tagged-line; exec sleep 60", output="prefixed"),
        program("structured", "sh", "-c", "echo structured-line; exec sleep 60", output="json"))
    with started(tmp_path) as start:
        sup = start(config, "--output", "raw")
        sup.wait_ready(4)
        sup.out.wait_for(r"^plain-line$")
        sup.out.wait_for(r'^\{"level":"info"\}$')
        sup.out.wait_for(r"^tagged \| tagged-line$")
        record = json.loads(sup.out.wait_for(r'"program": "structured"')[0].string)
        assert record["line"] == "structured-line"
        assert sup.stop() == 0


def test_log_format_json_still_means_json_program_lines(tmp_path: Path) -> None:
    with started(tmp_path) as start:
        sup = start(programs_config(program("a", "sh", "-c", "echo hi; exec sleep 60")), "--log-format", "json")
        sup.wait_log(r'"msg": "Loading success\."')
        assert json.loads(sup.out.wait_for(r'"program": "a"')[0].string)["line"] == "hi"
        assert sup.stop() == 0


def test_output_keyword_in_haproxy_syntax(tmp_path: Path) -> None:
    """``output raw`` in a ``program`` section: the HAProxy-syntax spelling of the per-program field."""
    from progset_supervisor.config import ConfigError, load_path

    path = tmp_path / "haproxy.cfg"
    path.write_text("program api\n  command /bin/true\n  output raw\nprogram web\n  command /bin/true\n")
    assert [p.output for p in load_path(path).programs] == ["raw", None]
    path.write_text("program api\n  command /bin/true\n  output colour\n")
    with pytest.raises(ConfigError) as caught:
        load_path(path)
    (problem,) = caught.value.problems
    assert str(problem.location).startswith(f"{path}:3") and "must be one of prefixed, raw, json" in problem.message
