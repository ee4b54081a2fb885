"""``progsetctl``: the Master CLI for people without socat.

``progsetctl [-S SOCKET] COMMAND...`` runs one command line (``;`` separates several) and exits
non-zero when an answer is an error, so scripts can rely on it. Without a command it is interactive:
a ``master> `` prompt (the supervisor's own, so ``[ReloadFailed]`` shows up), line editing and a
history file.

How answers are delimited: the HAProxy protocol ends every answer with a blank line, but an answer
may itself contain blank lines (program output in ``show logs``). So after each command the client
sends ``echo <random marker>`` and reads up to the marker's answer. In one-shot mode it also turns on
``set severity-output number``, which prefixes messages with their syslog severity exactly as HAProxy
does (``[3]: `` for errors): that is how an error is told from a normal answer, without guessing from
the text.
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

from . import __version__
from .cli.protocol import split_commands

DEFAULT_SOCKET = "/var/run/progset/master.sock"
CLOSING_COMMANDS = ("quit", "reload", "hard-reload")
LEVEL_COMMANDS = ("operator", "user")
PROXY_ERRORS = (b"Can't find the target PID", b"Permission denied!", b"Usage: prompt", b"Too many connections",
                b"Command line too long")
EXAMPLES = """examples:
  progsetctl show proc                              one command
  progsetctl 'stop api; show programs'              several, separated by ';'
  printf 'show info\\n' | progsetctl                 commands on standard input
  progsetctl -S unix@/var/run/progset/master.sock   interactive: prompt, history, Tab completion
"""
EXIT_ERROR_ANSWER = 1
EXIT_UNREACHABLE = 2


class Unreachable(Exception):
    """The socket cannot be reached or stopped answering; the message is for the user."""


def socket_path(text: str) -> str:
    """The path in any form the supervisor's side uses: ``PATH``, ``unix@PATH`` (``show cli sockets``,
    ``HAPROXY_MASTER_CLI``), or a whole ``-S`` value with its ``,mode,660,...`` bind options."""
    path = text.split(",", 1)[0]
    return path[len("unix@"):] if path.startswith("unix@") else path


def default_socket() -> str:
    """The socket the supervisor exported to its programs, else the documented path."""
    for variable in ("PROGSET_MASTER_CLI", "HAPROXY_MASTER_CLI"):
        for address in os.environ.get(variable, "").split(";"):
            if address.startswith("unix@") and os.path.exists(address[5:]):
                return address[5:]
    return DEFAULT_SOCKET


def connect(path: str, timeout: float) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise Unreachable(f"cannot connect to {path}: {exc.strerror or exc}") from None
    return sock


def _recv(sock: socket.socket, path: str, timeout: float) -> bytes:
    try:
        return sock.recv(65536)
    except TimeoutError:
        raise Unreachable(f"no answer from {path} within {timeout:g}s (use -t to wait longer)") from None
    except ConnectionResetError:
        return b""


def _command_name(command: bytes) -> str:
    words = command.split()
    if words and words[0].startswith(b"@"):
        words = words[1:]
    return words[0].decode(errors="replace") if words else ""


def exchange(path: str, commands: list[bytes], timeout: float) -> list[bytes]:
    """Send ``commands`` on one connection; their answers, split at markers (the last may be cut short)."""
    marker = f"progsetctl-{secrets.token_hex(8)}".encode()
    end = b"[6]: " + marker + b"\n\n"
    payload = b"set severity-output number\n" + b"".join(c + b"\necho " + marker + b"\n" for c in commands)
    sock = connect(path, timeout)
    try:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while data := _recv(sock, path, timeout):
            chunks.append(data)
    finally:
        sock.close()
    return b"".join(chunks).split(end)


def run_once(path: str, line: str, timeout: float) -> int:
    """Run one command line; print answers (errors on stderr); 1 if any answer is an error."""
    commands = split_commands(line.encode())
    if not commands:
        print("progsetctl: no command given", file=sys.stderr)
        return EXIT_UNREACHABLE
    answers = exchange(path, commands, timeout)
    status = 0
    for index, answer in enumerate(answers):
        if index >= len(commands):
            break
        complete = index < len(answers) - 1
        name = _command_name(commands[index])
        if not complete and not answer and name in CLOSING_COMMANDS:
            break
        error, text = classify(answer, complete, name)
        if text:
            stream = sys.stderr if error else sys.stdout
            stream.write(text.decode(errors="replace"))
            stream.flush()
        status = status or (EXIT_ERROR_ANSWER if error else 0)
        if not complete:
            break
    return status


def classify(answer: bytes, complete: bool, name: str) -> tuple[bool, bytes]:
    """``(is_error, text to show)`` for one answer; the severity prefix and the final blank line go."""
    text = answer[:-1] if answer.endswith(b"\n\n") else answer
    error = False
    if text[:1] == b"[" and text[2:5] == b"]: " and text[1:2].isdigit():
        error = int(text[1:2]) <= 4
        text = text[5:]
    if text.startswith((b"Unknown command", b"Success=0")):
        error = True
    if not complete and name not in CLOSING_COMMANDS:
        error = True  # the supervisor closed the session: a session-level error (or the limit)
    if text.startswith(PROXY_ERRORS):
        error = True
    if text and not text.endswith(b"\n"):
        text += b"\n"
    return error, text


class Interactive:
    """One session kept open across lines, so ``operator``/``user`` and ``@`` targets stick as in socat."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.prompt = "master> "
        self.marker = f"progsetctl-{secrets.token_hex(8)}".encode()
        self.level_set = False  # 'operator'/'user' were sent in this session

    def _open(self) -> None:
        self.sock = connect(self.path, self.timeout)
        self.buffer = b""
        self.level_set = False
        self._exchange(b"")

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def _exchange(self, line: bytes) -> tuple[bytes, bool]:
        """Send ``line``; return its answer and whether the session is still open."""
        assert self.sock is not None
        delimiter = b"prompt p\necho " + self.marker + b"\nprompt i\n"
        self.sock.sendall(line + b"\n" + delimiter if line else delimiter)
        end = self.marker + b"\n\n"
        while end not in self.buffer:
            data = _recv(self.sock, self.path, self.timeout)
            if not data:
                answer, self.buffer = self.buffer, b""
                self.close()
                return answer, False
            self.buffer += data
        before, _, after = self.buffer.partition(end)
        cut = before.rfind(b"\n") + 1
        answer, prompt = before[:cut], before[cut:]
        previous = prompt.rfind(b"> ", 0, len(prompt) - 2)
        if previous >= 0:  # a command that toggled the prompt on printed one more: keep the last
            prompt = prompt[previous + 2:]
        while not after.endswith(b"> "):  # the prompt printed after the marker's answer
            data = _recv(self.sock, self.path, self.timeout)
            if not data:
                break
            after += data
        self.buffer = b""
        self.prompt = prompt.decode(errors="replace") or self.prompt
        return answer, True

    def run_line(self, line: str) -> bool:
        """Run one typed line; False when the user asked to leave."""
        if self.sock is None:
            self._open()
        names = [_command_name(c) for c in split_commands(line.encode())]
        self.level_set = self.level_set or any(name in LEVEL_COMMANDS for name in names)
        level_set = self.level_set
        answer, still_open = self._exchange(line.encode())
        sys.stdout.write(answer.decode(errors="replace"))
        if answer and not answer.endswith(b"\n"):
            sys.stdout.write("\n")
        sys.stdout.flush()
        if not still_open and "quit" in names:
            return False
        if not still_open and level_set:
            self._say_new_level()
        return True

    def _say_new_level(self) -> None:
        """The supervisor closed a session whose level was lowered (a refused ``operator``/``user``
        closes it, as in HAProxy); the next session starts at the socket's level, which may be higher:
        open it now and say which, instead of silently running the next command as admin."""
        self._open()
        answer, _ = self._exchange(b"show cli level")
        level = answer.decode(errors="replace").strip() or "unknown"
        print(f"progsetctl: the supervisor closed the session; a new one is open at level {level} "
              "(the socket's level: 'operator'/'user' given before do not carry over)", file=sys.stderr, flush=True)

    def loop(self) -> int:
        history = _setup_readline()
        completer = None
        if history is not None:
            from .ctl_complete import Completer, install

            completer = Completer(lambda commands: exchange(self.path, commands, min(self.timeout, 5.0)))
            install(completer)
        try:
            self._open()
            while True:
                if completer is not None:
                    completer.new_line()
                try:
                    line = input(self.prompt)
                except EOFError:
                    print()
                    return 0
                except KeyboardInterrupt:
                    print()
                    continue
                if not line.strip():
                    continue
                if line.strip() in ("exit", "quit") and self.sock is None:
                    return 0
                try:
                    if not self.run_line(line):
                        return 0
                except KeyboardInterrupt:
                    print()
                    self.close()  # the answer we stopped waiting for must not leak into the next one
        finally:
            self.close()
            _save_history(history)


def _setup_readline() -> str | None:
    try:
        import readline
    except ImportError:
        return None
    path = os.environ.get("PROGSETCTL_HISTORY", str(Path.home() / ".progsetctl_history"))
    try:
        readline.read_history_file(path)
    except OSError:
        pass
    readline.set_history_length(1000)
    return path


def _save_history(path: str | None) -> None:
    if path is None:
        return
    import readline

    try:
        readline.write_history_file(path)
    except OSError:
        pass


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="progsetctl", description="Talk to progset-supervisor's Master CLI (the HAProxy master socket protocol).",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXAMPLES)
    parser.add_argument("-S", dest="socket", metavar="SOCKET", type=socket_path,
                        help="Master CLI socket: PATH or unix@PATH, as -S, show cli sockets and $HAPROXY_MASTER_CLI "
                        f"write it (default: from $PROGSET_MASTER_CLI, else {DEFAULT_SOCKET})")
    parser.add_argument("-V", "--version", action="version", version=f"progsetctl {__version__}")
    parser.add_argument("-t", "--timeout", type=float, default=120.0, metavar="SECONDS",
                        help="how long to wait for an answer (reloads and stops can take a while; default %(default)s)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="command line, e.g. show proc")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = args.socket or default_socket()
    try:
        if args.command:
            return run_once(path, " ".join(args.command), args.timeout)
        if not sys.stdin.isatty():
            return run_once(path, sys.stdin.read(), args.timeout)
        return Interactive(path, args.timeout).loop()
    except Unreachable as exc:
        print(f"progsetctl: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except BrokenPipeError:
        return EXIT_UNREACHABLE


if __name__ == "__main__":
    sys.exit(main())
