"""Rules files: every field parsed, every problem reported with rule, line and field; `alerts check`."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from closewatch.alerts.errors import AlertError, RulesInvalid
from closewatch.alerts.rules import (
    DEFAULT_RULES,
    PATTERNS,
    check_rules,
    format_duration,
    load_rules,
    parse_duration,
    resolve_rules_path,
)

FULL = """
[defaults]
channels = ["console", "hook"]
repeat_interval = "4h"
resolve = true

[channels.hook]
type = "webhook"
url_env = "TEST_HOOK_URL"
timeout = "3s"
retries = 4
backoff = "250ms"
headers = { "X-Team" = "voice" }
headers_env = { Authorization = "TEST_HOOK_TOKEN" }

[channels.slack]
type = "apprise"
urls_env = ["TEST_SLACK_URL", "TEST_MAIL_URL"]

[channels.file]
type = "file"
path = "out/alerts.jsonl"

[[rules]]
name = "violations"
kind = "threshold"
description = "chunks too long"
severity = "error"
where = { category = ["input_duration_violation"], close_code = [3007, 3005] }
group_by = ["client_id"]
window = "15m"
metric = "count"
op = ">"
value = 4
for = "2m"
keep_firing_for = "10m"
labels = { team = "voice", tier = 1 }
message = "{rule}: {value} for {client_id} in {window}"
runbook = "fix the chunks"
action = "send 50-1000 ms"

[[rules]]
name = "share"
kind = "threshold"
where = { severity = ["error", "critical"] }
window = "10m"
metric = "rate"
op = ">="
value = 0.25
min_total = 20
channels = ["slack"]
every = "5m"

[[rules]]
name = "spikes"
kind = "pattern"
pattern = "error_spike"
window = "1h"
min_count = 10
min_findings = 2
detection_severity = ["error", "critical"]

[[rules]]
name = "quiet"
kind = "absence"
group_by = ["client_id"]
expected = ["kiosk", "ivr"]
window = "30m"
lookback = "2d"
enabled = false

[[rules]]
name = "custom"
kind = "sql"
query = "SELECT client_id, count(*) AS value FROM closures WHERE ts > $start AND ts <= $end GROUP BY 1 HAVING count(*) > 100"
group_by = ["client_id"]
window = "1h"
channels = ["file"]
"""


def write(tmp_path: Path, text: str, name: str = "alerts.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_field_of_every_kind_is_parsed(tmp_path):
    ruleset = load_rules(write(tmp_path, FULL))
    violations = ruleset.rule("violations")
    assert violations.kind == "threshold" and violations.severity == "error"
    assert violations.where == {"category": ("input_duration_violation",), "close_code": (3007, 3005)}
    assert violations.group_by == ("client_id",)
    assert (violations.window_s, violations.for_s, violations.keep_firing_s, violations.repeat_s) == (900, 120, 600, 4 * 3600)
    assert (violations.op, violations.value, violations.metric) == (">", 4.0, "count")
    assert violations.labels == {"team": "voice", "tier": "1"}
    assert violations.channels == ("console", "hook") and violations.resolve is True
    assert violations.runbook == "fix the chunks" and violations.action == "send 50-1000 ms"
    assert violations.line == FULL.splitlines().index("[[rules]]") + 1

    share = ruleset.rule("share")
    assert (share.metric, share.value, share.min_total, share.every_s, share.channels) == ("rate", 0.25, 20, 300, ("slack",))

    spikes = ruleset.rule("spikes")
    assert (spikes.pattern, spikes.group_by, spikes.min_count, spikes.min_findings) == ("error_spike", ("key",), 10, 2)
    assert spikes.detection_severity == ("error", "critical")

    quiet = ruleset.rule("quiet")
    assert (quiet.expected, quiet.lookback_s, quiet.enabled) == (("kiosk", "ivr"), 2 * 86400, False)
    assert quiet not in ruleset.enabled

    custom = ruleset.rule("custom")
    assert custom.query_params == ("end", "start") and custom.window_s == 3600

    hook = ruleset.channels["hook"]
    assert (hook.url_envs, hook.timeout_s, hook.retries, hook.backoff_s) == (("TEST_HOOK_URL",), 3.0, 4, 0.25)
    assert hook.headers == {"X-Team": "voice"} and hook.headers_env == {"Authorization": "TEST_HOOK_TOKEN"}
    assert ruleset.channels["slack"].url_envs == ("TEST_SLACK_URL", "TEST_MAIL_URL")
    assert {"console", "log"} <= set(ruleset.channels)


def test_unset_secret_variables_are_warnings_not_errors(tmp_path, monkeypatch):
    for name in ("TEST_HOOK_URL", "TEST_HOOK_TOKEN", "TEST_SLACK_URL", "TEST_MAIL_URL"):
        monkeypatch.delenv(name, raising=False)
    ruleset = load_rules(write(tmp_path, FULL))
    assert any("TEST_HOOK_URL" in w and "TEST_HOOK_TOKEN" in w for w in ruleset.warnings)
    monkeypatch.setenv("TEST_HOOK_URL", "http://127.0.0.1:9/x")
    monkeypatch.setenv("TEST_HOOK_TOKEN", "t")
    monkeypatch.setenv("TEST_SLACK_URL", "json://127.0.0.1:9")
    monkeypatch.setenv("TEST_MAIL_URL", "json://127.0.0.1:9")
    assert load_rules(write(tmp_path, FULL)).warnings == []


BAD = """
[channels.hook]
type = "webhook"
url = "ftp://example"
headers = { Authorization = "Bearer abc" }

[[rules]]
name = "a"
kind = "threshold"
window = "90s"
value = "x"
where = { category = ["nope"], colour = "red" }
group_by = ["client"]
channels = ["pager"]
message = "{rule} {bogus}"

[[rules]]
name = "writer"
kind = "sql"
query = "DELETE FROM closures"

[[rules]]
kind = "magic"

[[rules]]
name = "gone"
kind = "absence"
window = "2h"
lookback = "1h"
expected = ["x"]
for = "soon"

[[rules]]
name = "few"
kind = "threshold"
window = "10m"
op = "<"
value = 3
"""


def test_check_reports_every_problem_with_rule_line_and_field(tmp_path):
    ruleset, problems = check_rules(write(tmp_path, BAD))
    assert ruleset is None
    lines = BAD.splitlines()
    rule_lines = [i + 1 for i, line in enumerate(lines) if line == "[[rules]]"]
    expected = [
        ("channel 'hook' (line 2), field 'url'", "http"),
        ("channel 'hook' (line 2), field 'headers'", "headers_env"),
        (f"rule 'a' (line {rule_lines[0]}), field 'value'", "number"),
        (f"rule 'a' (line {rule_lines[0]}), field 'where.category'", "'nope'"),
        (f"rule 'a' (line {rule_lines[0]}), field 'where.colour'", "unknown filter"),
        (f"rule 'a' (line {rule_lines[0]}), field 'group_by'", "'client'"),
        (f"rule 'a' (line {rule_lines[0]}), field 'channels'", "'pager'"),
        (f"rule 'a' (line {rule_lines[0]}), field 'window'", "multiple"),
        (f"rule 'a' (line {rule_lines[0]}), field 'message'", "{bogus}"),
        (f"rule 'writer' (line {rule_lines[1]}), field 'query'", "SELECT"),
        (f"rule '#3' (line {rule_lines[2]}), field 'name'", "name"),
        (f"rule '#3' (line {rule_lines[2]}), field 'kind'", "'magic'"),
        (f"rule 'gone' (line {rule_lines[3]}), field 'for'", "'soon'"),
        (f"rule 'gone' (line {rule_lines[3]}), field 'lookback'", "longer than window"),
        (f"rule 'gone' (line {rule_lines[3]}), field 'expected'", "one group_by column"),
        (f"rule 'few' (line {rule_lines[4]}), field 'op'", "absence rule"),
    ]
    for prefix, words in expected:
        assert any(p.startswith(prefix) and words in p for p in problems), (prefix, problems)
    assert len(problems) == len(expected), problems


def test_load_rules_raises_one_sentence_naming_the_first_problem(tmp_path):
    with pytest.raises(RulesInvalid) as caught:
        load_rules(write(tmp_path, BAD))
    message = str(caught.value)
    assert "channel 'hook'" in message and "and 15 more" in message and "alerts check" in message
    assert isinstance(caught.value, AlertError) and len(caught.value.problems) == 16


INHIBITED = "[[rules]]\nname = 'a'\nkind = 'absence'\nwindow = '5m'\n[[rules]]\nname = 'b'\nkind = 'absence'\nwindow = '5m'\n"


@pytest.mark.parametrize("text, words", [
    ("[[rules]]\nname = 'x'\nkind = 'sql'\nquery = 'SELECT 1; SELECT 2'\n", "exactly one statement"),
    ("[[rules]]\nname = 'x'\nkind = 'sql'\nquery = 'SELEC 1'\n", "not valid SQL"),
    ("[[rules]]\nname = 'x'\nkind = 'sql'\nquery = 'SELECT $tenant'\n", "$tenant"),
    ("[[rules]]\nname = 'x'\nkind = 'pattern'\n", "needs pattern"),
    ("[[rules]]\nname = 'x'\nkind = 'threshold'\nvalue = 1\n", "needs window"),
    ("[[rules]]\nname = 'x'\nkind = 'threshold'\nwindow = '5m'\nvalue = 2\nmetric = 'rate'\n", "between 0 and 1"),
    ("[[rules]]\nname = 'x'\nkind = 'absence'\nwindow = '5m'\ncolour = 1\n", "unknown field"),
    ("[[rules]]\nname = 'x'\nkind = 'absence'\nwindow = '5m'\n[[rules]]\nname = 'x'\nkind = 'absence'\nwindow = '5m'\n", "same name"),
    ("[channels.c]\ntype = 'carrier-pigeon'\n[[rules]]\nname = 'x'\nkind = 'absence'\nwindow = '5m'\n", "must be one of"),
    ("[channels.c]\ntype = 'webhook'\n[[rules]]\nname = 'x'\nkind = 'absence'\nwindow = '5m'\n", "url_env"),
    ("[channels.c]\ntype = 'file'\n[[rules]]\nname = 'x'\nkind = 'absence'\nwindow = '5m'\n", "path"),
    ("[[rules]]\nname = 'x'\nkind = 'absence'\nwindow = '5m'\nmessage = '{group'\n", "not a valid template"),
    ("stray = 1\n[[rules]]\nname = 'x'\nkind = 'absence'\nwindow = '5m'\n", "top-level key 'stray'"),
    ("", "defines no rules"),
    ("[[rules]]\nname = 'x'\nkind = 'threshold'\nwindow = '5m'\nmetric = 'per_1k_sessions'\nvalue = 2000\n", "at most 1000"),
    ("[[rules]]\nname = 'x'\nkind = 'threshold'\nwindow = '5m'\nvalue = 2\nmin_sessions = 50\n", "applies to metric = \"per_1k_sessions\""),
    ("[[rules]]\nname = 'x'\nkind = 'threshold'\nwindow = '5m'\nmetric = 'clients'\nvalue = 3\ngroup_by = ['client_id']\n",
     "cannot list client_id"),
    ("[[rules]]\nname = 'x'\nkind = 'threshold'\nwindow = '5m'\nmetric = 'clients'\nvalue = 3\nop = '<'\n", "number of clients"),
    (INHIBITED + "[[inhibit]]\nsource = 'nope'\ntarget = ['b']\n", "field 'source': no rule named 'nope'"),
    (INHIBITED + "[[inhibit]]\nsource = 'a'\ntarget = ['a', 'b']\n", "cannot hold back its own groups"),
    (INHIBITED + "[[inhibit]]\nsource = 'a'\n", "needs target"),
    (INHIBITED + "[[inhibit]]\nsource = 'a'\ntarget = ['b']\nequals = ['x']\n", "unknown field of an inhibit entry"),
    (INHIBITED + "[[inhibit]]\nsource = 'a'\ntarget = ['b']\n[[inhibit]]\nsource = 'b'\ntarget = ['a']\n", "holds it back"),
    ("[[rules]\n", "not valid TOML"),
])
def test_single_problems_are_named(tmp_path, text, words):
    _, problems = check_rules(write(tmp_path, text))
    assert any(words in p for p in problems), problems


def test_inhibit_entries_are_parsed_with_their_lines(tmp_path):
    text = INHIBITED + "\n[[inhibit]]\nsource = 'a'\nsource_match = { category = 'network_abnormal' }\ntarget = 'b'\nequal = ['category']\n"
    ruleset = load_rules(write(tmp_path, text))
    [entry] = ruleset.inhibit
    assert (entry.source, entry.target, entry.source_match, entry.target_match, entry.equal) == (
        "a", ("b",), {"category": ("network_abnormal",)}, {}, ("category",))
    assert entry.line == text.splitlines().index("[[inhibit]]") + 1


def test_an_inhibit_entry_on_labels_a_rule_lacks_is_a_warning(tmp_path):
    ruleset = load_rules(write(tmp_path, INHIBITED + "[[inhibit]]\nsource = 'a'\ntarget = ['b']\nequal = ['category']\n"))
    assert len(ruleset.inhibit) == 1
    assert [w for w in ruleset.warnings if "never holds back" in w] == [
        "inhibit #1 (line 9), field 'equal': rule 'a' has no label category (its labels: rule), so this entry never holds back its groups",
        "inhibit #1 (line 9), field 'equal': rule 'b' has no label category (its labels: rule), so this entry never holds back its groups",
    ]
    assert load_rules(DEFAULT_RULES).warnings == []


def test_a_missing_file_is_one_problem(tmp_path):
    _, problems = check_rules(tmp_path / "nope.toml")
    assert len(problems) == 1 and "does not exist" in problems[0]


def test_the_default_rules_cover_the_common_cases():
    ruleset = load_rules(DEFAULT_RULES)
    names = {rule.name for rule in ruleset.rules}
    assert {"repeated-violations", "disconnect-storm", "concurrency-saturation", "auth-failures", "error-spike",
            "logs-stopped"} <= names
    assert {rule.kind for rule in ruleset.rules} == {"threshold", "pattern", "absence"}
    for rule in ruleset.rules:
        assert rule.runbook and rule.description, rule.name
        assert rule.pattern in (None, *PATTERNS)
    assert ruleset.warnings == []


def test_rules_path_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_rules_path(None) == DEFAULT_RULES
    (tmp_path / "alerts.toml").write_text("")
    assert resolve_rules_path(None) == Path("alerts.toml")
    assert resolve_rules_path(None, {"rules": "conf/r.toml"}, tmp_path / "etc") == tmp_path / "etc" / "conf" / "r.toml"
    assert resolve_rules_path("mine.toml", {"rules": "conf/r.toml"}) == Path("mine.toml")


@pytest.mark.parametrize("text, seconds", [
    ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1h30m", 5400), ("500ms", 0.5),
    ("0", 0), (45, 45), (1.5, 1.5), ("2 h", 7200),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "5", "m5", "5x", "-5m", "5m5", True, None, [], -1])
def test_not_durations(text):
    assert parse_duration(text) is None


@given(st.integers(min_value=0, max_value=10 * 365 * 86400))
def test_format_and_parse_durations_round_trip(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


# -- the command -------------------------------------------------------------------


def test_alerts_check_command_lists_every_problem_and_exits_1(run, tmp_path):
    path = write(tmp_path, BAD)
    result = run("alerts", "check", "--rules", str(path))
    assert result.exit_code == 1
    assert result.stderr.count(str(path)) >= 16
    assert "16 problems" in result.stderr
    assert "define it in a channels.pager table" in result.stderr  # bracketed hints survive the terminal markup
    assert "Traceback" not in result.output + result.stderr


def test_alerts_check_command_accepts_the_defaults_and_shows_warnings(run, tmp_path, monkeypatch):
    result = run("alerts", "check")
    assert result.exit_code == 0, result.stderr
    assert "OK, 9 rules (5 threshold, 3 pattern, 1 absence), 1 inhibit entry" in result.stdout
    monkeypatch.delenv("TEST_HOOK_URL", raising=False)
    result = run("alerts", "check", "--rules", str(write(tmp_path, FULL)))
    assert result.exit_code == 0 and "TEST_HOOK_URL" in result.stderr


def test_other_commands_refuse_a_broken_rules_file_in_one_sentence(run, store, tmp_path):
    store.query("SELECT 1")  # the database exists: the rules file is what is wrong
    result = run("alerts", "run", "--rules", str(write(tmp_path, BAD)))
    assert result.exit_code == 1
    assert result.stderr.startswith("Error:") and "alerts check" in result.stderr and "Traceback" not in result.stderr


def test_config_settings_are_validated(run, tmp_path):
    config = write(tmp_path, "[alerts]\nstep = 'often'\n", "closewatch.toml")
    result = run("--config", str(config), "alerts", "check")
    assert result.exit_code == 1 and "[alerts] step" in result.stderr
