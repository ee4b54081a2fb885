"""``progset-supervisor -c`` and HAProxy's ``-c`` agree on a set of real-world-shaped configs.

Each config is checked by Debian's HAProxy (2.6, ``haproxy -W -c``) and by progset told to answer
conditions as that HAProxy (``--haproxy-version 2.6.12``): both must call it valid, or both invalid.
The configs look like the ones people run: several sections, tabs, comments, ``.if`` blocks around
keywords that have nothing to do with programs, environment variables from ``global``, several ``-f``
and a ``conf.d`` directory. The invalid ones are invalid in the parts progset reads (programs,
conditions, directives, the environment keywords, section structure).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from .peers import require

GLOBAL = """\
# /etc/haproxy/haproxy.cfg, as distributions ship it
global
\tlog /dev/log\tlocal0
\tmaxconn 4096
\tmaster-worker
{extra}
defaults
\tmode http
\ttimeout connect 5s   # connect
\ttimeout client  30s
\ttimeout server  30s

frontend fe_main
\tbind unix@{sock}
\tdefault_backend be_app

backend be_app
\tserver app1 127.0.0.1:8080
"""

CONFIGS: dict[str, tuple[str, str, bool]] = {
    # name: (text of global's extra lines, text after the common part, valid?)
    "plain program": ("", "program api\n\tcommand sleep 1000\n", True),
    "dataplaneapi port from global setenv": (
        "\tsetenv DPAPI_PORT 5555\n",
        'program dataplaneapi\n\tcommand sleep "${DPAPI_PORT}"\n\tno option start-on-reload\n', True),
    "presetenv keeps a set variable": (
        "\tpresetenv HOME /nope\n", 'program p\n\tcommand sleep "${HOME}"\n', True),
    "unsetenv then use: empty word": (
        "\tsetenv X 1\n\tunsetenv X\n", 'program p\n\tcommand sleep 1 "${X-}"\n', True),
    "version conditionals around global keywords": (
        ".if version_atleast(2.5)\n\tnbthread 2\n.else\n\tnbproc 1\n.endif\n"
        ".if version_before(2.4)\n\tfrobnicate-unknown-keyword\n.endif\n",
        "program api\n\tcommand sleep 1000\n", True),
    "feature and defined conditionals": (
        ".if feature(OPENSSL) && !feature(QUIC)\n\tssl-default-bind-options ssl-min-ver TLSv1.2\n.endif\n"
        ".if defined(SURELY_NOT_SET_ANYWHERE)\n\tnot-a-keyword\n"
        ".elif streq(a,a) || strneq(a,b)\n\tmaxconn 100\n.endif\n",
        "program api\n\tcommand sleep 1000\n", True),
    "program names HAProxy accepts": (
        "", "program spoe_agent\n\tcommand sleep 1000\nprogram Mirror.V2\n\tcommand sleep 1000\n", True),
    "user and group by name": ("", "program p\n\tcommand sleep 1\n\tuser root\n\tgroup root\n", True),
    "notice and warning directives": (
        '.notice "starting"\n.warning "careful"\n', "program p\n\tcommand sleep 1\n", True),
    "env keyword arguments used in a condition": (
        "\tsetenv MODE prod\n.if streq(\"$MODE\",prod)\n\tmaxconn 200\n.endif\n",
        "program p\n\tcommand sleep 1\n", True),
    # invalid ones
    "unknown program keyword": ("", "program api\n\tcommand sleep 1\n\tfrobnicate yes\n", False),
    "program without a command": ("", "program api\n\tuser root\n", False),
    "program without a name": ("", "program\n\tcommand sleep 1\n", False),
    "duplicate program": ("", "program a\n\tcommand sleep 1\nprogram a\n\tcommand sleep 2\n", False),
    "unknown option": ("", "program a\n\tcommand sleep 1\n\toption bogus\n", False),
    "unknown user": ("", "program a\n\tcommand sleep 1\n\tuser no-such-user-here\n", False),
    "unterminated if": (".if 1\n", "program a\n\tcommand sleep 1\n", False),
    "lone endif": ("", "program a\n\tcommand sleep 1\n.endif\n", False),
    "else after else": ("", ".if 1\n.else\n.else\n.endif\nprogram a\n\tcommand sleep 1\n", False),
    "unknown predicate": (".if exists(X)\n.endif\n", "program a\n\tcommand sleep 1\n", False),
    "strstr is 2.8+": (".if strstr(abc,b)\n.endif\n", "program a\n\tcommand sleep 1\n", False),
    "missing predicate argument": (".if streq(a)\n.endif\n", "program a\n\tcommand sleep 1\n", False),
    "trailing garbage in condition": (".if 1 2\n.endif\n", "program a\n\tcommand sleep 1\n", False),
    "alert directive": ('.alert "not on this host"\n', "program a\n\tcommand sleep 1\n", False),
    "message with two words": (".warning two words\n", "program a\n\tcommand sleep 1\n", False),
    "unknown directive": (".frob\n", "program a\n\tcommand sleep 1\n", False),
    "setenv without value": ("\tsetenv ONLY_NAME\n", "program a\n\tcommand sleep 1\n", False),
    "setenv with too many words": ("\tsetenv A b c d\n", "program a\n\tcommand sleep 1\n", False),
    "unsetenv without name": ("\tunsetenv\n", "program a\n\tcommand sleep 1\n", False),
    "unmatched quote": ("", "program a\n\tcommand sleep \"1\n", False),
    "keyword out of section": ("", "", False),  # see _text: a line before 'global'
}


def _text(name: str, directory: Path) -> str:
    extra, tail, _ = CONFIGS[name]
    text = GLOBAL.format(extra=extra.rstrip("\n"), sock=directory / "fe.sock") + "\n" + tail
    if name == "keyword out of section":
        text = "maxconn 10\n" + text + "program a\n\tcommand sleep 1\n"
    return text


def _haproxy_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("haproxy"), "-W", "-c", *args], capture_output=True, text=True, timeout=30)


def _progset_check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "progset_supervisor", "-W", "-c", "--haproxy-version", "2.6.12",
                           *args], capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_check_agrees_with_haproxy(name: str, tmp_path: Path) -> None:
    config = tmp_path / "haproxy.cfg"
    config.write_text(_text(name, tmp_path))
    theirs = _haproxy_check("-f", str(config))
    ours = _progset_check("-f", str(config))
    expected_valid = CONFIGS[name][2]
    assert (theirs.returncode == 0) is expected_valid, f"HAProxy itself: {theirs.stderr}"
    assert (ours.returncode == 0) is expected_valid, f"progset disagrees with HAProxy: {ours.stderr}"
    if not expected_valid:
        assert "config : parsing [" in ours.stderr or "config : " in ours.stderr, ours.stderr
        assert ours.stderr.rstrip().endswith("config : Fatal errors found in configuration."), ours.stderr


def _conf_d(tmp_path: Path, second: str) -> Path:
    """The distribution layout: haproxy.cfg with global, conf.d/*.cfg with programs (and a README.conf)."""
    (tmp_path / "haproxy.cfg").write_text(GLOBAL.format(extra="\tsetenv SPOA_PORT 12345", sock=tmp_path / "fe.sock"))
    conf_d = tmp_path / "conf.d"
    conf_d.mkdir()
    (conf_d / "10-api.cfg").write_text("program api\n\tcommand sleep 1000\n")
    (conf_d / "20-spoa.cfg").write_text(second)
    (conf_d / "README.conf").write_text("this is not a config file and is never read\n")
    return conf_d


@pytest.mark.parametrize(("second", "valid"), [
    ('program spoa\n\tcommand sleep "${SPOA_PORT}"\n', True),
    ("program spoa\n\tfrobnicate\n", False),
    ("\tcommand sleep 1\n", False),  # a section does not continue into the next file
    ("program api\n\tcommand sleep 1\n", False),  # the same name in two files
])
def test_several_f_and_conf_d_agree_with_haproxy(tmp_path: Path, second: str, valid: bool) -> None:
    conf_d = _conf_d(tmp_path, second)
    args = ("-f", str(tmp_path / "haproxy.cfg"), "-f", str(conf_d))
    assert (_haproxy_check(*args).returncode == 0) is valid
    ours = _progset_check(*args)
    assert (ours.returncode == 0) is valid, ours.stderr
    if valid:
        assert "(2 programs," in ours.stdout


def test_several_f_load_every_program_in_haproxy_order(tmp_path: Path) -> None:
    from progset_supervisor.config import load_paths

    conf_d = _conf_d(tmp_path, 'program spoa\n\tcommand sleep "${SPOA_PORT}"\n')
    config = load_paths([str(tmp_path / "haproxy.cfg"), str(conf_d)], environ={})
    assert [p.name for p in config.programs] == ["api", "spoa"]
    assert config.by_name()["spoa"].command == ("sleep", "12345")  # setenv of the first file, seen by the second
    assert config.env_ops == (("setenv", "SPOA_PORT", "12345"),)
