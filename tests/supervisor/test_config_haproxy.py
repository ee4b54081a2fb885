"""HAProxy-syntax loader: tokenizer, .if conditions, program sections, and errors that name file:line."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from progset_supervisor.config import ConfigError, load_path, load_text
from progset_supervisor.config.haproxy import load_haproxy_text, parse_time
from progset_supervisor.config.haproxy_cond import ConditionError, eval_condition
from progset_supervisor.config.haproxy_tokens import MAX_WORDS, TokenError, quote_word, split_line, tokenize
from progset_supervisor.config.haproxy_version import HAProxyTarget, split_version


def errors(text: str, environ: dict[str, str] | None = None, filename: str = "h.cfg") -> list[str]:
    """Every problem of a config that must fail, as ``location: message`` lines."""
    with pytest.raises(ConfigError) as info:
        load_haproxy_text(text, filename, environ or {})
    return [str(p) for p in info.value.problems]


def only_program(text: str, environ: dict[str, str] | None = None):
    config = load_haproxy_text(text, "h.cfg", environ or {})
    assert len(config.programs) == 1
    return config.programs[0]


# -- tokenizer ------------------------------------------------------------------------------------


def test_verified_haproxy_example():
    line = """command prog "arg with space" 'single $x' plain\\ esc "${FOO}\""""
    assert split_line(line, {"FOO": "bar"}) == [
        "command", "prog", "arg with space", "single $x", "plain esc", "bar"]


def test_verified_example_through_the_loader():
    text = "program p\n    command prog \"arg with space\" 'single $x' plain\\ esc \"${FOO}\"\n"
    assert only_program(text, {"FOO": "bar"}).command == ("prog", "arg with space", "single $x", "plain esc", "bar")


@pytest.mark.parametrize(("line", "words"), [
    ("a  b\t\tc  ", ["a", "b", "c"]),
    ("   leading", ["leading"]),
    ("a\\ b", ["a b"]),
    ("a\\#b", ["a#b"]),
    ("a\\\\b", ["a\\b"]),
    ("a\\'b", ["a'b"]),
    ('a\\"b', ['a"b']),
    ("a\\tb a\\nb a\\rb", ["a\tb", "a\nb", "a\rb"]),
    ("\\x41\\x62", ["Ab"]),
    ("\\xc3\\xa9t\\xC3\\xA9", ["été"]),
    ("a\\1b", ["a\\1b"]),  # not an escape: the backslash stays
    ("end\\", ["end\\"]),
    ("\\$HOME", ["\\$HOME"]),  # \$ is an escape only inside double quotes
    ('"\\$HOME"', ["$HOME"]),
    ("$HOME", ["$HOME"]),  # no expansion outside double quotes
    ("'$HOME \\n'", ["$HOME \\n"]),  # nothing is interpreted in single quotes
    ('"a b # \' c"', ["a b # ' c"]),
    ("'a \" b'", ['a " b']),
    ('"a \\"q\\" b"', ['a "q" b']),
    ("x'y z'\"w\"", ["xy zw"]),  # quotes glue to the surrounding word
    ("a # comment 'unterminated", ["a"]),
    ("a#b c", ["a"]),  # '#' starts a comment even inside a word
    ('a "" b', ["a", "", "b"]),  # an explicit empty word is kept (HAProxy would end the list there)
    ("a ''", ["a", ""]),
    ("", []),
    ("   # only a comment", []),
    ("a\rignored", ["a"]),  # CR ends the line, as in HAProxy
])
def test_tokenizer_rules(line, words):
    assert split_line(line, {}) == words


@pytest.mark.parametrize(("line", "words"), [
    ('"$FOO"', ["bar"]),
    ('"${FOO}x"', ["barx"]),
    ('"$FOO.x"', ["bar.x"]),  # a name is letters, digits and '_'
    ('"${FOO-def}"', ["bar"]),
    ('"${NOPE-def ault}"', ["def ault"]),
    ('"${EMPTY-def}"', [""]),  # '-' applies to unset only, like the shell's ${X-y}
    ('"${NOPE-}"', [""]),
    ('"pre-$NOPE"', ["pre-"]),  # unset inside a non-empty word is fine, as in HAProxy
    ('"${LIST[*]}"', ["a", "b", "c"]),
    ('x "${LIST[*]}" y', ["x", "a", "b", "c", "y"]),
    ('"<${LIST[*]}>"', ["<a", "b", "c>"]),
    ('"${SPACED[*]}"', ["a", "b"]),  # leading, trailing and repeated blanks make no empty words
    ('x "${EMPTY[*]}" y', ["x", "y"]),  # an empty list is no word at all
    ('"${NOPE[*]-p q}"', ["p", "q"]),
    ('"${LIST}"', ["a b  c"]),  # without [*] the value stays one word
])
def test_variable_expansion(line, words):
    env = {"FOO": "bar", "EMPTY": "", "LIST": "a b  c", "SPACED": "  a\tb  "}
    assert split_line(line, env) == words


def test_pseudo_variables():
    tokens = tokenize('"$.FILE:$.LINE" "${.SECTION}"', {}, {".FILE": "h.cfg", ".LINE": "7", ".SECTION": "api"})
    assert tokens.words == ("h.cfg:7", "api")


def test_word_left_empty_by_an_unset_variable_is_an_issue_not_a_syntax_error():
    tokens = tokenize('a "${NOPE}" b', {})
    assert tokens.words == ("a", "", "b")
    assert tokens.issues == ("word 2 is empty because environment variable 'NOPE' is not set; set it, or write "
                             "${NOPE-} where an empty value is intended",)
    with pytest.raises(TokenError, match="word 2 is empty because environment variable 'NOPE'"):
        split_line('a "${NOPE}" b', {})


def test_unset_list_variable_is_reported():
    assert tokenize('a "${NOPE[*]}"', {}).issues == (
        "word 2 is empty because environment variable 'NOPE' is not set; set it, or write ${NOPE-} where an "
        "empty value is intended",)


def test_binary_words_are_issues():
    tokens = tokenize("a \\xff \\x00", {})
    assert tokens.words == ("a", "\udcff", "\x00")
    assert tokens.issues == (
        "word 2 (column 3) is not valid UTF-8 (from \\x escapes or an environment variable)",
        "\\x00 at column 8: a program argument cannot contain a NUL byte",
    )


@pytest.mark.parametrize(("line", "message", "column"), [
    ('a "open', "unmatched double quote at column 3", 3),
    ("a 'open", "unmatched single quote at column 3", 3),
    ('"cost $5"', "invalid variable name at column 8: '$' must be followed by a letter or '_'; write \\$ for a "
                  "literal '$'", 8),
    ('"${FOO"', "unmatched '{' at column 3", 3),
    ('"${FOO-x"', "unmatched '{' at column 3", 3),
    ('"${FOO[1]}"', "invalid word expansion at column 7: only ${NAME[*]} is supported", 7),
    ("\\xg1", "invalid \\x escape at column 1: expected two hex digits, as in \\x41", 1),
    ("ab\\x4", "invalid \\x escape at column 3: expected two hex digits, as in \\x41", 3),
    ('"$.NAME"', "unknown pseudo-variable '.NAME' at column 3; known ones are .FILE, .LINE, .SECTION", 3),
])
def test_syntax_errors(line, message, column):
    with pytest.raises(TokenError) as info:
        tokenize(line, {"FOO": "x"})
    assert str(info.value) == message
    assert info.value.column == column


def test_word_limit():
    assert len(split_line(" ".join(["w"] * MAX_WORDS) + "   ", {})) == 64
    with pytest.raises(TokenError, match=r"^too many words at column 129: at most 64 per line, keyword included$"):
        split_line(" ".join(["w"] * (MAX_WORDS + 1)), {})
    with pytest.raises(TokenError, match="too many words"):
        split_line('"${MANY[*]}"', {"MANY": " ".join(["w"] * 65)})


WORDS = st.lists(st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0")), max_size=MAX_WORDS)


@given(WORDS)
def test_quote_word_round_trips(words):
    line = " ".join(quote_word(w) for w in words)
    assert split_line(line, {}) == words


@given(st.lists(st.from_regex(r"[A-Za-z0-9_./:=@-]+", fullmatch=True), max_size=20),
       st.sampled_from([" ", "\t", "  \t "]))
def test_plain_words_split_like_str_split(words, blank):
    assert split_line(blank.join(words), {}) == words


@given(st.text(st.sampled_from(list(" \t\"'\\#${}[]*-x0aF.n\r")), max_size=40))
def test_any_line_tokenizes_or_raises_token_error(line):
    try:
        tokens = tokenize(line, {"a": "1 2", "F": ""}, {})
    except TokenError as exc:
        assert exc.column >= 1
    else:
        assert len(tokens.words) <= MAX_WORDS


def test_quote_word_choices():
    assert quote_word("plain-word") == "plain-word"
    assert quote_word("") == "''"
    assert quote_word("a b") == "'a b'"
    assert quote_word("it's $x\n") == '"it\'s \\$x\\n"'
    with pytest.raises(ValueError, match="NUL"):
        quote_word("a\0b")


# -- .if conditions -------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("", False), ("1", True), ("0", False), ("42", True), ("-1", True), ("0x0", False), ("0x10", True),
    ("010", True), ("!0", True), ("! ! 1", True),
    ("defined(SET)", True), ("defined(EMPTY)", True), ("defined(NOPE)", False), ("!defined(NOPE)", True),
    ("streq(yes,yes)", True), ("streq(yes, yes )", True), ("streq(yes,no)", False), ("strneq(yes,no)", True),
    ("streq('a,b',\"a,b\")", True), ("streq(a\\,b,a\\,b)", True), ("streq(,)", True),
    ("feature(PROGSET)", True), ("feature(OPENSSL)", True), ("feature(QUIC)", False), ("feature(OPEN)", False),
    ("strstr(abcdef,cd)", True), ("strstr(abc,x)", False), ("enabled(POLL)", True), ("enabled(KQUEUE)", False),
    ("defined(SET) && defined(NOPE)", False), ("defined(SET) || defined(NOPE)", True),
    ("1 && 0 || 1", True), ("0 || 1 && 0", False), ("(0 || 1) && !(0)", True), ("!(1 && 1)", False),
])
def test_conditions(text, expected):
    assert eval_condition(text, {"SET": "1", "EMPTY": ""}) is expected


# Each error text below is what Debian's HAProxy 2.6.12 prints for the same condition (after
# "parsing [t.cfg:2]: "), checked with `haproxy -W -c`; HAProxy adds a caret line, progset names the position.
@pytest.mark.parametrize(("text", "message"), [
    ("exists(X)", "unparsable conditional expression 'exists(X)' in '.if' at position 1"),
    ("foo", "unparsable conditional expression 'foo' in '.if' at position 1"),
    ("defined", "missing arguments (got 0/1), type 'string' expected in argument 1 of predicate 'defined' used in "
                "conditional expression in '.if' at position 8"),
    ("streq(a)", "missing arguments (got 1/2), type 'string' expected in argument 1 of predicate 'streq' used in "
                 "conditional expression in '.if' at position 8"),
    ("defined(HOME,x)", "expected ')' before ',x)' in argument 1 of predicate 'defined' used in conditional "
                        "expression in '.if' at position 13"),
    ("streq(a,b", "expected ')' after the arguments of predicate 'streq'"),
    ("1 2", "unexpected character '2' at the end of conditional expression '1 2' in '.if' at position 3"),
    ("(1", "expected ')' after conditional expression '(1' in '.if' at position 1"),
    ("08", "unexpected character '8' at the end of conditional expression '08' in '.if' at position 2"),
    ("(" * 100 + "1" + ")" * 100, "unparsable conditional expression"),
    # 2.6 has no strstr() nor enabled() (both came with 2.8): the same error as an unknown word
    ("strstr(abc,b)", "unparsable conditional expression 'strstr(abc,b)' in '.if' at position 1"),
    ("enabled(POLL)", "unparsable conditional expression 'enabled(POLL)' in '.if' at position 1"),
])
def test_condition_errors(text, message):
    with pytest.raises(ConditionError) as info:
        eval_condition(text, {}, HAProxyTarget("2.6.12"))
    assert str(info.value).startswith(message)


# -- program sections -----------------------------------------------------------------------------

REAL_HAPROXY_CFG = """\
global
    master-worker
    expose-deprecated-directives
    log stdout format raw local0
    stats socket "${RUNDIR-/run}/admin.sock" mode 600 level admin

defaults
    mode http
    timeout client 5s   # a comment

frontend fe
    bind :8080
    http-request set-header X-Bin "\\xff\\x00"
    default_backend be

backend be
    server s1 127.0.0.1:9000 check

program dataplaneapi
    command /usr/bin/dataplaneapi -f /etc/dataplaneapi.yml
    no option start-on-reload

program spoa
    command spoa-agent --port "${SPOA_PORT}"
    user haproxy
    group haproxy
    option start-on-reload

listen stats
    bind :8404
"""


def test_real_haproxy_cfg_loads_only_programs():
    config = load_haproxy_text(REAL_HAPROXY_CFG, "/etc/haproxy/haproxy.cfg", {"SPOA_PORT": "12345"})
    assert config.origin == "/etc/haproxy/haproxy.cfg"
    assert config.to_spec()["programs"] == [
        {"name": "dataplaneapi", "command": ["/usr/bin/dataplaneapi", "-f", "/etc/dataplaneapi.yml"], "env": [],
         "restart": "on-failure", "backoff": {"initialSeconds": 0.5, "maxSeconds": 30.0, "resetAfterSeconds": 60.0},
         "stopSignal": "SIGTERM", "stopTimeoutSeconds": 10.0, "onReload": "keep", "critical": False,
         "dependsOn": []},
        {"name": "spoa", "command": ["spoa-agent", "--port", "12345"], "env": [], "restart": "on-failure",
         "backoff": {"initialSeconds": 0.5, "maxSeconds": 30.0, "resetAfterSeconds": 60.0}, "stopSignal": "SIGTERM",
         "stopTimeoutSeconds": 10.0, "onReload": "restart", "critical": False, "dependsOn": [], "user": "haproxy",
         "group": "haproxy"},
    ]


def test_defaults_of_a_minimal_program():
    program = only_program("program api\n  command /bin/api\n")
    assert (program.name, program.command, program.env, program.working_dir, program.umask, program.user,
            program.group, program.restart, program.stop_signal, program.stop_timeout_seconds, program.on_reload,
            program.reload_signal, program.critical, program.depends_on) == (
        "api", ("/bin/api",), (), None, None, None, None, "on-failure", "SIGTERM", 10.0, "restart", None, False, ())
    assert (program.backoff.initial_seconds, program.backoff.max_seconds, program.backoff.reset_after_seconds) == (
        0.5, 30.0, 60.0)


def test_every_extension_keyword():
    text = """\
program db
    command /bin/db
program api
    command /bin/api --port 8080
    user 1000
    group 2000
    restart always
    on-reload signal
    reload-signal USR1
    stop-signal INT
    stop-timeout 1500ms
    backoff-initial 250ms
    backoff-max 2m
    backoff-reset 1h
    env GREETING "hello world"
    env EMPTY ""
    directory /srv/api
    umask 0027
    critical
    depends-on db
"""
    api = load_haproxy_text(text, "h.cfg", {}).by_name()["api"]
    assert api.to_spec() == {
        "name": "api", "command": ["/bin/api", "--port", "8080"],
        "env": [{"name": "GREETING", "value": "hello world"}, {"name": "EMPTY", "value": ""}],
        "restart": "always", "backoff": {"initialSeconds": 0.25, "maxSeconds": 120.0, "resetAfterSeconds": 3600.0},
        "stopSignal": "SIGINT", "stopTimeoutSeconds": 1.5, "onReload": "signal", "critical": True,
        "dependsOn": ["db"], "workingDir": "/srv/api", "umask": "0027", "user": "1000", "group": "2000",
        "reloadSignal": "SIGUSR1",
    }


@pytest.mark.parametrize(("line", "on_reload"), [
    ("option start-on-reload", "restart"),
    ("no option start-on-reload", "keep"),
    ("on-reload keep", "keep"),
    ("on-reload restart", "restart"),
])
def test_reload_behaviour(line, on_reload):
    assert only_program(f"program p\n command x\n {line}\n").on_reload == on_reload


def test_no_critical_and_repeatable_keywords():
    text = "program a\n command a\nprogram b\n command b\nprogram c\n command c\n no critical\n" \
           " depends-on a\n depends-on b a\n env X 1\n env Y 2\n"
    program = load_haproxy_text(text, "h.cfg", {}).by_name()["c"]
    assert program.critical is False
    assert program.depends_on == ("a", "b", "a")
    assert [(e.name, e.value) for e in program.env] == [("X", "1"), ("Y", "2")]


@pytest.mark.parametrize(("text", "seconds"), [
    ("10", 10.0), ("0", 0.0), ("1.5", 1.5), (".5s", 0.5), ("500ms", 0.5), ("100us", 0.0001), ("10s", 10.0),
    ("2m", 120.0), ("1h", 3600.0), ("1d", 86400.0),
])
def test_parse_time(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "-1", "10x", "s", "1 s", "1e3"])
def test_parse_time_rejects(text):
    with pytest.raises(ValueError, match=f"^invalid time '{text}': write seconds"):
        parse_time(text)


def test_program_section_keyword_may_be_indented_and_sections_end_programs():
    text = "  program a\ncommand a\nbackend be\n  command-like-stuff here\nprogram b\n\tcommand b\n"
    assert [p.name for p in load_haproxy_text(text, "h.cfg", {}).programs] == ["a", "b"]


def test_no_programs_is_an_empty_config():
    assert load_haproxy_text("global\n  daemon\n", "h.cfg", {}).programs == ()


def test_environ_defaults_to_os_environ(monkeypatch):
    monkeypatch.setenv("PROGSET_TEST_ARG", "from-env")
    config = load_haproxy_text('program p\n command echo "$PROGSET_TEST_ARG"\n', "h.cfg")
    assert config.programs[0].command == ("echo", "from-env")


def test_load_text_and_load_path_dispatch_cfg(tmp_path):
    path = tmp_path / "programs.cfg"
    path.write_text("program p\n  command /bin/true\n")
    assert load_path(path).programs[0].command == ("/bin/true",)
    assert load_text("program q\n command x\n", "x.conf").programs[0].name == "q"


# -- conditional blocks ---------------------------------------------------------------------------

CONDITIONAL = """\
.if defined(WITH_A)
program a
    command a
.elif streq("$MODE",b)
program b
    command b
.else
program c
    command c
    .if feature(PROGSET)
    restart always
    .else
    unknown-keyword-never-seen
    .endif
.endif
.if 0
    .if 1
program never
    command x
    .endif
.elif 1
program last
    command last
.endif
"""


@pytest.mark.parametrize(("environ", "names"), [
    ({"WITH_A": ""}, ["a", "last"]),
    ({"WITH_A": "1", "MODE": "b"}, ["a", "last"]),
    ({"MODE": "b"}, ["b", "last"]),
    ({"MODE": "x"}, ["c", "last"]),
])
def test_conditional_blocks(environ, names):
    config = load_haproxy_text(CONDITIONAL, "h.cfg", environ)
    assert [p.name for p in config.programs] == names


def test_feature_progset_block_applies():
    assert load_haproxy_text(CONDITIONAL, "h.cfg", {}).by_name()["c"].restart == "always"


def test_skipped_block_keywords_are_not_checked_but_its_syntax_is():
    text = ".if 0\nprogram x\n  bogus keyword\n  command \"unterminated\n.endif\n"
    assert errors(text) == ["h.cfg:4: unmatched double quote at column 11"]


@pytest.mark.parametrize(("text", "expected"), [
    (".endif\n", ["h.cfg:1: lone '.endif' with no matching '.if'."]),
    (".else\n", ["h.cfg:1: lone '.else' with no matching '.if'."]),
    (".elif 1\n", ["h.cfg:1: lone '.elif' with no matching '.if'."]),
    (".if 1\n.else\n.elif 1\n.endif\n", ["h.cfg:3: '.elif' after '.else' is not permitted (the '.if' is at line 1)."]),
    (".if 1\n.else\n.else\n.endif\n", ["h.cfg:3: '.else' after '.else' is not permitted (the '.if' is at line 1)."]),
    (".if 1\n.if 0\n.endif\n", ["h.cfg:1: non-terminated '.if' block."]),
    (".if 1\n.endif x\n", ["h.cfg:2: Unexpected argument 'x' for '.endif'."]),
    (".if bogus(1)\n.endif\n", ["h.cfg:1: unparsable conditional expression 'bogus(1)' in '.if' at position 1: "
                                ".if bogus(1)"]),
    (".alert \"stop here\"\n", ["h.cfg:1: .alert: stop here"]),
    (".warning two words\n", ["h.cfg:1: Unexpected argument 'words' for '.warning'. Use quotes if the message "
                              "should contain spaces."]),
    (".iff 1\n", ["h.cfg:1: unknown directive '.iff'. Did you mean '.if'?"]),
])
def test_conditional_errors(text, expected):
    assert errors(text) == expected


def test_notice_warning_and_diag_are_accepted():
    text = '.notice "n"\n.warning "w"\n.diag "d"\n.if 0\n.alert "skipped"\n.endif\nprogram p\n command x\n'
    assert [p.name for p in load_haproxy_text(text, "h.cfg", {}).programs] == ["p"]


# -- errors with file:line ------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("program\n command x\n", "h.cfg:1: 'program' expects a name, e.g. 'program api'"),
    ("program a b\n command x\n",
     "h.cfg:1: 'program' takes exactly one name, got 2 words; a name cannot contain spaces"),
    ("program a\n command x\nprogram a\n command y\n",
     "h.cfg:3: program section 'a' already exists (first at h.cfg:1)"),
    ("program a\n command x\n comand y\n",
     "h.cfg:3: unknown keyword 'comand' in 'program' section; did you mean 'command'?"),
    ("program a\n command x\n workingDir /srv\n",
     "h.cfg:3: unknown keyword 'workingDir' in 'program' section; did you mean 'directory'?"),
    ("program a\n command x\n frobnicate\n",
     "h.cfg:3: unknown keyword 'frobnicate' in 'program' section; known keywords: command, user, group, option, "
     "restart, on-reload, reload-signal, stop-signal, stop-timeout, backoff-initial, backoff-max, backoff-reset, "
     "env, directory, umask, critical, depends-on, runtime-socket, output, depends-on-condition, notify, "
     "notify-access, "
     "watchdog, "
     "readiness-|liveness-|startup- http|tcp|exec|options"),
    ("program a\n user root\n",
     "h.cfg:1: program section 'a' lacks a command to launch; add a 'command <argv...>' line"),
    ("program a\n command x\n command y\n",
     "h.cfg:3: 'command' is already set for program 'a' at h.cfg:2; a program has one command (HAProxy silently "
     "kept the last one)"),
    ("program a\n command x\n user root\n user nobody\n", "h.cfg:4: 'user' is already set for program 'a' at h.cfg:3"),
    ("program a\n command x\n group 1\n group 1\n", "h.cfg:4: 'group' is already set for program 'a' at h.cfg:3"),
    ("program a\n command x\n restart always\n restart never\n",
     "h.cfg:4: 'restart' is already set for program 'a' at h.cfg:3"),
    ("program a\n command x\n no option start-on-reload\n on-reload restart\n",
     "h.cfg:4: 'on-reload' conflicts with 'no option start-on-reload' at h.cfg:3: both set onReload of program 'a'"),
    ("program a\n command x\n critical\n no critical\n",
     "h.cfg:4: 'no critical' conflicts with 'critical' at h.cfg:3: both set critical of program 'a'"),
    ("program a\n command x\n option httplog\n",
     "h.cfg:3: unknown option 'httplog' in 'program' section; the only option is 'start-on-reload' (see also "
     "'on-reload restart|keep|signal')"),
    ("program a\n command x\n option start-on-reload now\n",
     "h.cfg:3: 'option' expects exactly one argument (quote it if it contains spaces), got 2; usage: "
     "[no] option start-on-reload"),
    ("program a\n command x\n no user root\n",
     "h.cfg:3: 'no user' is not supported: only 'no option start-on-reload', 'no critical' and 'no notify' take a "
     "'no' prefix"),
    ("program a\n command x\n default option start-on-reload\n",
     "h.cfg:3: 'default option' is not supported: only 'no option start-on-reload', 'no critical' and 'no notify' "
     "take a 'no' prefix"),
    ("program a\n command\n", "h.cfg:2: 'command' expects a command with optional arguments separated in words, "
                              "e.g. 'command /usr/bin/app --flag'"),
    ("program a\n command x\n env ONLY\n", "h.cfg:3: 'env' expects exactly 2 arguments, got 1; usage: env NAME value"),
    ("program a\n command x\n critical yes\n", "h.cfg:3: 'critical' expects no argument, got 1; usage: [no] critical"),
    ("program a\n command x\n depends-on\n",
     "h.cfg:3: 'depends-on' expects at least 1 argument, got 0; usage: depends-on db cache"),
    ("program a\n command x\n stop-timeout soon\n",
     "h.cfg:3: invalid time 'soon': write seconds, or a number with a unit us, ms, s, m, h, d (e.g. 500ms, 10s, 2m)"),
    ("command x\n", "h.cfg:1: 'command x' appears before any section; start a section first, e.g. 'program api'"),
    ("global\n  command x\n",
     "h.cfg:2: 'command' is only valid in a 'program' section, but this line is in the 'global' section started at "
     "line 1; is a 'program <name>' line missing or misspelled?"),
    ('program a\n command echo "$NOPE"\n', "h.cfg:2: word 3 is empty because environment variable 'NOPE' is not "
                                           "set; set it, or write ${NOPE-} where an empty value is intended"),
    ("program a\n command echo \\x00\n", "h.cfg:2: \\x00 at column 15: a program argument cannot contain a NUL byte"),
])
def test_loader_errors(text, expected):
    assert errors(text) == [expected]


@pytest.mark.parametrize(("text", "expected"), [
    ("program 'a b'\n command x\n", "h.cfg:1: invalid program name 'a b': a name is one word of printable "
                                    "characters"),
    ("program a\n command x\n restart sometimes\n",
     "h.cfg:3 (restart): must be one of always, on-failure, never; got 'sometimes'"),
    ("program a\n command x\n on-reload later\n",
     "h.cfg:3 (on-reload): must be one of restart, keep, signal; got 'later'"),
    ("program a\n command x\n stop-signal SIGFOO\n",
     "h.cfg:3 (stop-signal): unknown signal 'SIGFOO'; use a name such as SIGTERM, SIGHUP, SIGUSR1"),
    ("program a\n command x\n reload-signal HUP\n",
     "h.cfg:3 (reload-signal): reloadSignal only applies with onReload: signal; remove it or set onReload: signal"),
    ("program a\n command x\n umask 999\n", "h.cfg:3 (umask): expected an octal string such as \"0022\", got '999'"),
    ("program a\n command x\n env A 1\n env B 2\n env A 3\n",
     "h.cfg:5 (env): environment variable 'A' is set twice"),
    ("program a\n command x\n env 1A x\n", "h.cfg:3 (env): invalid environment variable name '1A'"),
    ("program a\n command x\n backoff-initial 10s\n backoff-max 5s\n",
     "h.cfg:4 (backoff-max): maxSeconds (5) must be at least initialSeconds (10)"),
    ("program a\n command x\n backoff-reset 0\n", "h.cfg:3 (backoff-reset): must be greater than 0, got 0.0"),
    ("program a\n command \"\"\n", "h.cfg:2 (command): must not be empty"),
    ("program a\n command x\n depends-on b\n", "h.cfg:3 (depends-on): 'a' depends on unknown program 'b'"),
    ("program a\n command x\n depends-on a\n", "h.cfg:3 (depends-on): program 'a' cannot depend on itself"),
    ("program a\n command x\n depends-on b\nprogram b\n command y\n depends-on a\n",
     "h.cfg:3 (depends-on): dependsOn cycle: a -> b -> a"),
])
def test_model_errors_point_at_the_keyword_line(text, expected):
    assert errors(text) == [expected]


def test_depends_on_error_names_the_line_of_that_name():
    text = "program api\n command x\nprogram b\n command y\n depends-on api\n depends-on api apx\n"
    assert errors(text) == ["h.cfg:6 (depends-on): 'b' depends on unknown program 'apx'; did you mean 'api'?"]


def test_all_problems_are_reported_in_line_order():
    text = """\
program a
    command x
    restart sometimes
    bogus
program a
    command y
program b
    user root
.if
"""
    assert errors(text, filename="all.cfg") == [
        "all.cfg:3 (restart): must be one of always, on-failure, never; got 'sometimes'",
        "all.cfg:4: unknown keyword 'bogus' in 'program' section; known keywords: command, user, group, option, "
        "restart, on-reload, reload-signal, stop-signal, stop-timeout, backoff-initial, backoff-max, backoff-reset, "
        "env, directory, umask, critical, depends-on, runtime-socket, output, depends-on-condition, notify, "
     "notify-access, "
     "watchdog, "
        "readiness-|liveness-|startup- http|tcp|exec|options",
        "all.cfg:5: program section 'a' already exists (first at all.cfg:1)",
        "all.cfg:7: program section 'b' lacks a command to launch; add a 'command <argv...>' line",
        "all.cfg:9: non-terminated '.if' block.",
    ]


def test_section_with_several_problems_reports_each():
    assert errors("program 'a b'\n user root\n") == [
        "h.cfg:1: program section 'a b' lacks a command to launch; add a 'command <argv...>' line",
        "h.cfg:1: invalid program name 'a b': a name is one word of printable characters",
    ]


def test_pseudo_variables_in_the_loader():
    text = 'global\nprogram p\n  command echo "$.SECTION" "${.LINE}" "$.FILE"\n'
    assert load_haproxy_text(text, "dir/h.cfg", {}).programs[0].command == ("echo", "p", "3", "dir/h.cfg")


def test_token_error_location():
    assert errors("program a\n command 'x\n") == ["h.cfg:2: unmatched single quote at column 10"]


def test_skipped_sections_accept_binary_and_unset_words():
    text = 'backend be\n  http-request set-var(txn.x) str("\\xff")\n  server s "${UNSET}" check\n' \
           'program p\n  command x\n'
    assert [p.name for p in load_haproxy_text(text, "h.cfg", {}).programs] == ["p"]


def test_user_and_group_names_must_exist_as_in_haproxy():
    assert errors("program a\n command x\n user no-such-user-here\n group no-such-group-here\n") == [
        "h.cfg:3: cannot find user id for 'no-such-user-here'; use a numeric id for a user that has no entry in "
        "this system's files",
        "h.cfg:4: cannot find group id for 'no-such-group-here'; use a numeric id for a group that has no entry in "
        "this system's files",
    ]
    assert only_program("program a\n command x\n user 4242\n group 4343\n").user == "4242"


def test_conditions_answer_as_the_chosen_haproxy_version():
    text = (".if version_atleast(3.1)\nprogram new\n command x\n.else\nprogram old\n command x\n.endif\n"
            ".if strstr(abc,b)\nprogram strstr\n command x\n.endif\n")
    assert [p.name for p in load_haproxy_text(text, "h.cfg", {}).programs] == ["new", "strstr"]
    assert [p.name for p in load_haproxy_text(text.split(".if strstr")[0], "h.cfg", {},
                                              target=HAProxyTarget("2.6")).programs] == ["old"]
    with pytest.raises(ConfigError, match="unparsable conditional expression 'strstr"):
        load_haproxy_text(text, "h.cfg", {}, target=HAProxyTarget("2.6"))


@pytest.mark.parametrize(("version", "parsed"), [
    ("1.2.1-pre2", (1, 2, 1, 0, 2, 2, 0)), ("1.2.1", (1, 2, 1, 0, 3, 0, 0)), ("1.2.10.1", (1, 2, 10, 1, 3, 0, 0)),
    ("1.3.16-rc1", (1, 3, 16, 0, 2, 1, 0)), ("1.4-dev3", (1, 4, 0, 0, 1, 3, 0)),
    ("1.5-dev18-43", (1, 5, 0, 0, 1, 18, 43)),
    ("2.4-dev18-f6818d-20", (2, 4, 0, 0, 1, 18, 20)), ("3.2", (3, 2, 0, 0, 3, 0, 0)), ("abc", None), ("", None),
])
def test_split_version_as_haproxy_documents_it(version, parsed):
    assert split_version(version) == parsed


def test_global_environment_keywords_apply_in_order():
    text = ("global\n\tsetenv A 1\n\tpresetenv A 2\n\tpresetenv B 3\n\tsetenv C \"${A}${B}\"\n\tunsetenv B\n"
            "program p\n\tcommand echo \"${A}\" \"${C}\" \"${B-unset}\"\n")
    config = load_haproxy_text(text, "h.cfg", {"KEEP": "k", "DROP": "d"})
    assert config.programs[0].command == ("echo", "1", "13", "unset")
    from progset_supervisor.config.environment import apply_env_ops

    assert apply_env_ops({"KEEP": "k", "DROP": "d"}, config.env_ops) == {"KEEP": "k", "DROP": "d", "A": "1", "C": "13"}
    assert apply_env_ops({"KEEP": "k", "DROP": "d"}, [("resetenv", "KEEP")]) == {"KEEP": "k"}
    reset = load_haproxy_text("global\n\tresetenv KEEP\nprogram p\n\tcommand echo \"${DROP-gone}\"\n", "h.cfg",
                              {"KEEP": "k", "DROP": "d"})
    assert reset.programs[0].command == ("echo", "gone")


def test_messages_are_kept_with_haproxy_wording():
    text = '.notice "n $.LINE"\n.warning "w"\n.diag "d"\n.if 0\n.alert "skipped"\n.endif\nprogram p\n command x\n'
    config = load_haproxy_text(text, "h.cfg", {}, target=HAProxyTarget("2.6"))
    assert [tuple(m) for m in config.messages] == [
        ("NOTICE", "parsing [h.cfg:1]: 'n 1'."), ("WARNING", "parsing [h.cfg:2]: 'w'."),
        ("DIAG", "parsing [h.cfg:3]: 'd'.")]
    deprecated = load_haproxy_text("program p\n command x\n", "h.cfg", {})  # 3.2 wants expose-deprecated-directives
    assert [m.level for m in deprecated.messages] == ["DIAG"]
    assert not load_haproxy_text("global\n expose-deprecated-directives\nprogram p\n command x\n", "h.cfg",
                                 {}).messages


def test_program_names_as_haproxy_accepts_them():
    config = load_haproxy_text("program spoe_agent\n command x\nprogram Mirror.V2\n command y\n", "h.cfg", {})
    assert [p.name for p in config.programs] == ["spoe_agent", "Mirror.V2"]
    from progset_supervisor.config.model import kubernetes_name

    assert [kubernetes_name(p.name) for p in config.programs] == ["spoe-agent", "mirror-v2"]
