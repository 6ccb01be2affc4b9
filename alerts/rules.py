"""Alert rules as data: a TOML file parsed and validated into ``Rule`` and ``Channel`` objects.

Users change thresholds, groups and channels by editing ``alerts.toml``, never
code. The file is read once per job run and checked completely: every problem
is reported with the rule's name, its line and the field, so ``closewatch
alerts check`` can list them all in one pass (see docs/alerts.md for the
format, field by field).

Secrets (webhook URLs, apprise URLs with passwords, tokens) are never written
in the file: a channel names the environment variable that holds them
(``url_env``, ``headers_env``), and they are read only when a notification is
sent, so they never reach the database.
"""

from __future__ import annotations

import os
import re
import string
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import httpx

from closewatch import durations
from closewatch.alerts.errors import RulesInvalid
from closewatch.vocabulary import CATEGORIES, PATTERNS, RETRY_SAFE, SEVERITIES

DEFAULT_RULES = Path(__file__).with_name("default_rules.toml")
USER_RULES = "alerts.toml"

KINDS = ("pattern", "threshold", "sql", "absence")
#: Columns of ``closures`` a threshold or absence rule may group by.
GROUP_COLUMNS = (
    "client_id", "category", "severity", "close_code", "session_id", "source_format", "source_file",
    "era", "retry_safe", "close_reason",
)
#: Columns of ``detections`` a pattern rule may group by.
PATTERN_GROUP_COLUMNS = ("key", "pattern")
#: Keys of a ``where`` table, and the values each accepts (None: any text).
WHERE_KEYS: dict[str, tuple[str, ...] | None] = {
    "category": CATEGORIES,
    "severity": SEVERITIES,
    "close_code": None,
    "client_id": None,
    "source_format": None,
    "era": None,
    "retry_safe": RETRY_SAFE,
}
OPERATORS = (">=", ">", "<=", "<")
CHANNEL_TYPES = ("console", "log", "file", "webhook", "apprise")
BUILTIN_CHANNELS = ("console", "log")
#: Parameters a sql rule's query may use.
SQL_PARAMETERS = ("start", "end")
#: Placeholders every message template may use (plus the rule's group_by columns).
TEMPLATE_FIELDS = (
    "rule", "description", "severity", "status", "group", "headline", "value", "window",
    "window_start", "window_end", "top_reasons", "action", "runbook", "labels",
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_RULE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*rules[ \t]*\]\]", re.MULTILINE)
_CHANNEL_HEADER = re.compile(r"^[ \t]*\[[ \t]*channels\.\"?([^\]\"]+)\"?\s*\]", re.MULTILINE)

COMMON_FIELDS = {
    "name", "kind", "description", "severity", "group_by", "for", "keep_firing_for", "repeat_interval", "resolve",
    "labels", "channels", "message", "runbook", "action", "every", "enabled",
}
KIND_FIELDS = {
    "pattern": {"pattern", "window", "min_count", "min_findings", "detection_severity"},
    "threshold": {"where", "window", "metric", "op", "value", "min_total"},
    "sql": {"query", "window"},
    "absence": {"where", "window", "lookback", "expected"},
}
CHANNEL_FIELDS = {
    "console": {"type"},
    "log": {"type"},
    "file": {"type", "path"},
    "webhook": {"type", "url", "url_env", "timeout", "retries", "backoff", "headers", "headers_env"},
    "apprise": {"type", "url_env", "urls_env"},
}


@dataclass(frozen=True)
class Channel:
    """Where notifications go. Secrets are named (env vars), never held."""

    name: str
    type: str
    path: str | None = None
    url: str | None = None
    url_envs: tuple[str, ...] = ()
    timeout_s: float = 10.0
    retries: int = 2
    backoff_s: float = 0.5
    headers: dict[str, str] = field(default_factory=dict)
    headers_env: dict[str, str] = field(default_factory=dict)

    def missing_env(self) -> list[str]:
        """The environment variables this channel needs that are not set here."""
        names = list(self.url_envs) + list(self.headers_env.values())
        return [name for name in names if not os.environ.get(name)]

    def env_problems(self) -> list[str]:
        """Values set in the environment that this channel could not send with (a webhook's URL and headers)."""
        if self.type != "webhook":
            return []
        problems = []
        for env in self.url_envs:
            problem = url_problem(os.environ[env]) if os.environ.get(env) else None
            if problem:
                problems.append(f"channel '{self.name}': the URL in environment variable {env} {problem}; fix the variable")
        for header, env in self.headers_env.items():
            problem = header_problem(header, os.environ[env]) if os.environ.get(env) else None
            if problem:
                problems.append(f"channel '{self.name}': header {header!r} from environment variable {env} {problem}; fix the variable")
        return problems


@dataclass(frozen=True)
class Rule:
    """One alert rule; durations are seconds. Kind-specific fields are None where unused."""

    name: str
    kind: str
    severity: str = "warning"
    description: str = ""
    group_by: tuple[str, ...] = ()
    for_s: float = 0.0
    keep_firing_s: float = 0.0  # the condition must stay clear this long before a firing resolves
    repeat_s: float = 0.0  # 0: notify once per firing
    resolve: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    channels: tuple[str, ...] = ("console",)
    message: str = "{headline}"
    runbook: str = ""
    action: str = ""
    every_s: float = 60.0
    enabled: bool = True
    line: int | None = None
    # pattern
    pattern: str | None = None
    min_count: int = 1
    min_findings: int = 1
    detection_severity: tuple[str, ...] = ()
    # threshold / absence
    where: dict[str, tuple] = field(default_factory=dict)
    window_s: float = 0.0
    metric: str = "count"
    op: str = ">="
    value: float = 0.0
    min_total: int = 1
    lookback_s: float = 86400.0
    expected: tuple[str, ...] = ()
    # sql
    query: str | None = None
    query_params: tuple[str, ...] = ()


@dataclass
class RuleSet:
    """A parsed rules file: its rules, its channels, and the warnings worth showing."""

    path: Path
    rules: list[Rule]
    channels: dict[str, Channel]
    warnings: list[str] = field(default_factory=list)
    #: Channel settings from the environment that cannot work (`alerts check` fails on them; delivery says why per row).
    env_problems: list[str] = field(default_factory=list)

    def rule(self, name: str) -> Rule | None:
        return next((rule for rule in self.rules if rule.name == name), None)

    @property
    def enabled(self) -> list[Rule]:
        return [rule for rule in self.rules if rule.enabled]


# -- public ------------------------------------------------------------------


def resolve_rules_path(option: str | os.PathLike | None, section: dict[str, Any] | None = None,
                       config_dir: Path | None = None) -> Path:
    """--rules, else `rules` under [alerts] in the config, else ./alerts.toml, else the shipped defaults."""
    if option:
        return Path(option).expanduser()
    configured = (section or {}).get("rules")
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() or config_dir is None else config_dir / path
    if Path(USER_RULES).exists():
        return Path(USER_RULES)
    return DEFAULT_RULES


def load_rules(path: str | os.PathLike | None = None, default_every_s: float = 60.0) -> RuleSet:
    """Parse and validate a rules file; raises RulesInvalid naming the first problem (all are kept)."""
    ruleset, problems = check_rules(path, default_every_s)
    if problems:
        raise RulesInvalid(str(path or DEFAULT_RULES), problems)
    assert ruleset is not None
    return ruleset


def check_rules(path: str | os.PathLike | None = None, default_every_s: float = 60.0) -> tuple[RuleSet | None, list[str]]:
    """Every problem of a rules file, each one sentence naming rule, line and field."""
    path = Path(path) if path else DEFAULT_RULES
    if not path.exists():
        return None, ["the rules file does not exist; check the path (or run without --rules to use the defaults)"]
    if path.stat().st_size > MAX_RULES_BYTES:
        return None, [f"the file is larger than {MAX_RULES_BYTES >> 20} MiB; a rules file is small text, check the path"]
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        line = path.read_bytes()[:error.start].count(b"\n") + 1
        return None, [f"line {line} is not UTF-8 text (byte {error.object[error.start]:#04x}); save the file as UTF-8"]
    except OSError as error:
        return None, [f"cannot be read ({error.strerror or error}); check the path and its permissions"]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return None, [f"not valid TOML: {error}"]
    return _Parser(path, text, default_every_s).parse(data)


def parse_duration(value: Any) -> float | None:
    """Seconds from 90, "90s", "1h30m", "500ms", "1w"; None if not a duration (the core grammar, closewatch.durations)."""
    return durations.parse_duration(value)


def format_duration(seconds: float) -> str:
    """The short human form: 90 -> '1m30s' (closewatch.durations)."""
    return durations.format_duration(seconds)


#: Placeholder widths and precisions a message template may ask for ("{rule:>40}"); more is a mistake or an attack.
MAX_TEMPLATE_WIDTH = 200
#: A rules file larger than this is not a rules file.
MAX_RULES_BYTES = 1 << 20
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_FORMAT_SPEC = re.compile(r"^(?:.?[<>=^])?[+\- ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?[bcdeEfFgGnosxX%]?$")


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook URL (one phrase), or None when it is a plain http(s) URL."""
    if not isinstance(url, str) or not url:
        return "is empty"
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        return "contains a space or a control character"
    if len(url) > 4096:
        return "is longer than 4096 characters"
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError):
        return "is not a valid URL"
    if parsed.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parsed.host:
        return "names no host"
    return None


def header_problem(name: str, value: str) -> str | None:
    """Why a header cannot be sent (one phrase), or None. CR/LF would let a value add headers of its own."""
    if not _HEADER_NAME.match(name):
        return "has a name that is not a valid HTTP header name"
    if any(ch in value for ch in "\r\n\0"):
        return "contains a line break or NUL"
    if any(ord(ch) < 32 and ch != "\t" or ord(ch) == 127 for ch in value):
        return "contains a control character"
    if len(value) > 8192:
        return "is longer than 8192 characters"
    return None


def template_problems(template: str, allowed: set[str]) -> list[str]:
    """Every problem of a message template: unknown names, attribute or index access, nested or unbounded format specs."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        return [f"is not a valid template ({error}); write placeholders as {{rule}}, and braces as {{{{ }}}}"]
    problems = []
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name == "" or name.isdigit():
            problems.append("placeholders need a name, e.g. {group}")
        elif not name.isidentifier():
            problems.append(f"placeholder {{{name}}} reaches into a value; use the plain name ({name.split('.')[0].split('[')[0]})")
        elif name not in allowed:
            problems.append(f"unknown placeholder {{{name}}} (available: {', '.join(sorted(allowed))})")
        if conversion not in (None, "s", "r"):
            problems.append(f"placeholder {{{name}}} has an unknown conversion !{conversion} (use !s or !r)")
        if spec and ("{" in spec or "}" in spec):
            problems.append(f"placeholder {{{name}}} has a placeholder inside its format; write a fixed format like {{{name}:>20}}")
            continue
        match = _FORMAT_SPEC.match(spec or "")
        if match is None:
            problems.append(f"placeholder {{{name}}} has a format {spec!r} that is not a format spec (e.g. >20, .2f)")
            continue
        for part in ("width", "precision"):
            if match.group(part) and int(match.group(part)) > MAX_TEMPLATE_WIDTH:
                problems.append(f"placeholder {{{name}}} asks for a {part} of {int(match.group(part)):,}; at most {MAX_TEMPLATE_WIDTH}")
    return problems


# -- parsing -------------------------------------------------------------------


class _Parser:
    """Walks the TOML data once, collecting every problem instead of stopping at the first."""

    def __init__(self, path: Path, text: str, default_every_s: float):
        self.path = path
        self.default_every_s = default_every_s
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.rule_lines = [text.count("\n", 0, m.start()) + 1 for m in _RULE_HEADER.finditer(text)]
        self.channel_lines = {m.group(1).strip(): text.count("\n", 0, m.start()) + 1 for m in _CHANNEL_HEADER.finditer(text)}

    def parse(self, data: dict[str, Any]) -> tuple[RuleSet | None, list[str]]:
        for key in data:
            if key not in ("rules", "channels", "defaults"):
                self.problems.append(f"unknown top-level key '{key}' (expected rules, channels or defaults tables)")
        channels = self._channels(data.get("channels", {}))
        defaults = data.get("defaults", {})
        if not isinstance(defaults, dict):
            self.problems.append("defaults must be a table of rule fields")
            defaults = {}
        for key in defaults:
            if key not in COMMON_FIELDS - {"name", "kind"}:
                self.problems.append(f"defaults: '{key}' cannot have a default (allowed: {', '.join(sorted(COMMON_FIELDS - {'name', 'kind'}))})")
        raw_rules = data.get("rules", [])
        if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
            self.problems.append("rules must be written as tables headed rules in double brackets")
            raw_rules = []
        if not raw_rules:
            self.problems.append("the file defines no rules; add at least one rule table (headed rules in double brackets)")
        rules = []
        seen: set[str] = set()
        for index, raw in enumerate(raw_rules):
            rule = _RuleParser(self, index, {**defaults, **raw}, channels).parse()
            if rule is None:
                continue
            if rule.name in seen:
                self.problems.append(f"rule '{rule.name}' (line {rule.line}), field 'name': another rule has the same name; names must be unique")
            seen.add(rule.name)
            rules.append(rule)
        if self.problems:
            return None, self.problems
        env_problems = [problem for channel in channels.values() for problem in channel.env_problems()]
        return RuleSet(self.path, rules, channels, self.warnings + env_problems, env_problems), []

    def _channels(self, raw: Any) -> dict[str, Channel]:
        channels = {name: Channel(name, name) for name in BUILTIN_CHANNELS}
        if not isinstance(raw, dict):
            self.problems.append("channels must be tables like channels.oncall")
            return channels
        for name, spec in raw.items():
            channel = self._channel(name, spec)
            if channel is not None:
                channels[name] = channel
                missing = channel.missing_env()
                if missing:
                    self.warnings.append(
                        f"channel '{name}': environment variable {', '.join(missing)} is not set here; "
                        "notifications to it wait in the outbox until it is"
                    )
        return channels

    def _channel(self, name: str, spec: Any) -> Channel | None:
        where = f"channel '{name}' (line {self.channel_lines.get(name, '?')})"
        problems_before = len(self.problems)

        def bad(field_name: str, problem: str) -> None:
            self.problems.append(f"{where}, field '{field_name}': {problem}")

        if not isinstance(spec, dict):
            self.problems.append(f"{where}: must be a table with a 'type'")
            return None
        kind = spec.get("type")
        if kind not in CHANNEL_TYPES:
            bad("type", f"must be one of {', '.join(CHANNEL_TYPES)}, not {kind!r}")
            return None
        for key in spec:
            if key not in CHANNEL_FIELDS[kind]:
                bad(key, f"unknown field for a {kind} channel (allowed: {', '.join(sorted(CHANNEL_FIELDS[kind]))})")
        options: dict[str, Any] = {}
        if kind == "file":
            if not isinstance(spec.get("path"), str) or not spec.get("path"):
                bad("path", "a file channel needs path = \"alerts.jsonl\"")
            options["path"] = spec.get("path")
        if kind in ("webhook", "apprise"):
            envs = spec.get("urls_env", [])
            if isinstance(envs, str):
                envs = [envs]
            if "url_env" in spec:
                envs = [spec["url_env"], *envs]
            if not isinstance(envs, list) or not all(isinstance(e, str) and e for e in envs):
                bad("url_env", "must name an environment variable, e.g. url_env = \"SLACK_URL\"")
                envs = []
            if kind == "webhook" and "url" in spec:
                problem = url_problem(spec["url"]) if isinstance(spec["url"], str) else "is not text"
                if problem:
                    bad("url", f"{problem}; write an http:// or https:// URL (put secret URLs in an environment variable and use url_env)")
                options["url"] = spec.get("url")
            if not envs and not options.get("url"):
                bad("url_env", f"a {kind} channel needs url_env = \"VARIABLE\" naming the environment variable that holds its URL")
            if kind == "webhook" and len(envs) > 1:
                bad("url_env", "a webhook channel posts to one URL")
            options["url_envs"] = tuple(envs)
        if kind == "webhook":
            for key, default in (("timeout", 10.0), ("backoff", 0.5)):
                seconds = parse_duration(spec.get(key, default))
                if seconds is None or (key == "timeout" and not 0 < seconds <= 300) or seconds > 300:
                    bad(key, "must be a duration like \"5s\", at most 5m")
                options[f"{key}_s"] = seconds if seconds is not None else default
            retries = spec.get("retries", 2)
            if not isinstance(retries, int) or isinstance(retries, bool) or not 0 <= retries <= 10:
                bad("retries", "must be a whole number from 0 to 10")
                retries = 2
            options["retries"] = retries
            for key in ("headers", "headers_env"):
                value = spec.get(key, {})
                if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                    bad(key, "must be a table of header name = text")
                    value = {}
                options[key] = dict(value)
            for header, value in options["headers"].items():
                if header.lower() in ("authorization", "x-api-key"):
                    bad("headers", f"'{header}' is a secret; name its environment variable in headers_env instead")
                problem = header_problem(header, value)
                if problem:
                    bad("headers", f"header {header!r} {problem}")
            for header in options["headers_env"]:
                problem = header_problem(header, "")
                if problem:
                    bad("headers_env", f"header {header!r} {problem}")
        if len(self.problems) > problems_before:
            return None
        return Channel(name, kind, **options)


class _RuleParser:
    """Validates one [[rules]] table; reports through the file parser."""

    def __init__(self, parent: _Parser, index: int, raw: dict[str, Any], channels: dict[str, Channel]):
        self.parent = parent
        self.raw = raw
        self.channels = channels
        self.line = parent.rule_lines[index] if index < len(parent.rule_lines) else None
        name = raw.get("name")
        self.name = name if isinstance(name, str) and name else f"#{index + 1}"
        self.failed = False

    def bad(self, field_name: str, problem: str) -> None:
        line = f" (line {self.line})" if self.line else ""
        self.parent.problems.append(f"rule '{self.name}'{line}, field '{field_name}': {problem}")
        self.failed = True

    def parse(self) -> Rule | None:
        raw = self.raw
        if not isinstance(raw.get("name"), str) or not _NAME.match(raw.get("name", "")):
            self.bad("name", "every rule needs a name of letters, digits, '-', '_' or '.' (at most 80)")
        kind = raw.get("kind")
        if kind not in KINDS:
            self.bad("kind", f"must be one of {', '.join(KINDS)}, not {kind!r}")
            return None
        for key in raw:
            if key not in COMMON_FIELDS | KIND_FIELDS[kind]:
                self.bad(key, f"unknown field for a {kind} rule (allowed: {', '.join(sorted(COMMON_FIELDS | KIND_FIELDS[kind]))})")
        fields: dict[str, Any] = {"name": self.name, "kind": kind, "line": self.line}
        fields.update(self._common())
        fields.update(getattr(self, f"_{kind}")())
        if kind == "sql" and not fields["window_s"]:
            fields["window_s"] = fields["every_s"]
        elif fields.get("window_s") and not _multiple(fields["window_s"], fields["every_s"]):
            self.bad("window", f"must be a whole multiple of the evaluation step ({format_duration(fields['every_s'])}; set 'every' to change it)")
        self._check_template(fields.get("message", "{headline}"), fields.get("group_by", ()))
        return None if self.failed else Rule(**fields)

    # -- fields shared by every kind

    def _common(self) -> dict[str, Any]:
        raw = self.raw
        out: dict[str, Any] = {}
        severity = raw.get("severity", "warning")
        if severity not in SEVERITIES:
            self.bad("severity", f"must be one of {', '.join(SEVERITIES)}")
        out["severity"] = severity
        for key in ("description", "message", "runbook", "action"):
            if key in raw and not isinstance(raw[key], str):
                self.bad(key, "must be text")
            elif key in raw:
                out[key] = raw[key]
        out["for_s"] = self._duration("for", 0.0)
        out["keep_firing_s"] = self._duration("keep_firing_for", 0.0)
        out["repeat_s"] = self._duration("repeat_interval", 0.0)
        out["every_s"] = self._duration("every", self.parent.default_every_s, positive=True)
        for key in ("resolve", "enabled"):
            if key in raw and not isinstance(raw[key], bool):
                self.bad(key, "must be true or false")
            elif key in raw:
                out[key] = raw[key]
        labels = raw.get("labels", {})
        if not isinstance(labels, dict) or not all(isinstance(v, (str, int, float, bool)) for v in labels.values()):
            self.bad("labels", "must be a table of name = text, e.g. labels = { team = \"voice\" }")
            labels = {}
        out["labels"] = {str(k): str(v) for k, v in labels.items()}
        channels = raw.get("channels", ["console"])
        if isinstance(channels, str):
            channels = [channels]
        if not isinstance(channels, list) or not all(isinstance(c, str) for c in channels):
            self.bad("channels", "must be a list of channel names")
            channels = []
        for channel in channels:
            if channel not in self.channels:
                known = ", ".join(sorted(self.channels))
                self.bad("channels", f"no channel named '{channel}' (defined: {known}; define it in a channels.{channel} table)")
        out["channels"] = tuple(channels)
        return out

    def _group_by(self, allowed: tuple[str, ...], default: tuple[str, ...] = ()) -> tuple[str, ...]:
        value = self.raw.get("group_by", list(default))
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.bad("group_by", "must be a list of column names")
            return ()
        for column in value:
            if allowed and column not in allowed:
                self.bad("group_by", f"'{column}' is not a column this rule can group by (allowed: {', '.join(allowed)})")
        if len(set(value)) != len(value):
            self.bad("group_by", "lists a column twice")
        return tuple(value)

    # -- kinds

    def _pattern(self) -> dict[str, Any]:
        raw = self.raw
        pattern = raw.get("pattern")
        if not isinstance(pattern, str) or not pattern:
            self.bad("pattern", f"a pattern rule needs pattern = one of {', '.join(PATTERNS)}")
        elif pattern not in PATTERNS:
            self.parent.warnings.append(f"rule '{self.name}': pattern '{pattern}' is not one of the built-in detectors ({', '.join(PATTERNS)})")
        severities = raw.get("detection_severity", [])
        if isinstance(severities, str):
            severities = [severities]
        if not isinstance(severities, list) or any(s not in SEVERITIES for s in severities):
            self.bad("detection_severity", f"must list severities among {', '.join(SEVERITIES)}")
            severities = []
        return {
            "pattern": pattern,
            "group_by": self._group_by(PATTERN_GROUP_COLUMNS, ("key",)),
            "window_s": self._duration("window", 900.0, positive=True),
            "min_count": self._whole("min_count", 1),
            "min_findings": self._whole("min_findings", 1),
            "detection_severity": tuple(severities),
        }

    def _threshold(self) -> dict[str, Any]:
        raw = self.raw
        metric = raw.get("metric", "count")
        if metric not in ("count", "rate"):
            self.bad("metric", "must be \"count\" (closures in the window) or \"rate\" (share of the group's closures)")
        op = raw.get("op", ">=")
        if op not in OPERATORS:
            self.bad("op", f"must be one of {', '.join(OPERATORS)}")
        elif metric == "count" and op not in (">=", ">"):
            self.bad("op", "a count can only be compared with >= or >; for 'too few closures' use an absence rule")
        value = raw.get("value")
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            self.bad("value", "a threshold rule needs value = a number >= 0 to compare with")
            value = 0
        elif metric == "rate" and value > 1:
            self.bad("value", "a rate is a share between 0 and 1 (0.3 means 30 %)")
        if "window" not in raw:
            self.bad("window", "a threshold rule needs window = a duration like \"15m\"")
        return {
            "where": self._where(),
            "group_by": self._group_by(GROUP_COLUMNS),
            "window_s": self._duration("window", 900.0, positive=True),
            "metric": metric,
            "op": op,
            "value": float(value),
            "min_total": self._whole("min_total", 1),
        }

    def _absence(self) -> dict[str, Any]:
        raw = self.raw
        if "window" not in raw:
            self.bad("window", "an absence rule needs window = how long without closures, e.g. \"30m\"")
        window = self._duration("window", 1800.0, positive=True)
        lookback = self._duration("lookback", max(86400.0, 2 * window), positive=True)
        if lookback <= window:
            self.bad("lookback", "must be longer than window (groups seen within lookback are expected to keep reporting)")
        group_by = self._group_by(GROUP_COLUMNS)
        expected = raw.get("expected", [])
        if not isinstance(expected, list) or not all(isinstance(e, (str, int)) for e in expected):
            self.bad("expected", "must be a list of values of the group_by column")
            expected = []
        if expected and len(group_by) != 1:
            self.bad("expected", "needs exactly one group_by column, e.g. group_by = [\"client_id\"]")
        return {
            "where": self._where(),
            "group_by": group_by,
            "window_s": window,
            "lookback_s": lookback,
            "expected": tuple(str(e) for e in expected),
        }

    def _sql(self) -> dict[str, Any]:
        query = self.raw.get("query")
        params: tuple[str, ...] = ()
        if not isinstance(query, str) or not query.strip():
            self.bad("query", "a sql rule needs query = a SELECT whose rows are the firing groups")
        else:
            params = self._check_query(query)
        return {
            "query": query,
            "query_params": params,
            "group_by": self._group_by(()),
            "window_s": self._duration("window", 0.0, positive=True),  # 0: the evaluation step
        }

    def _check_query(self, query: str) -> tuple[str, ...]:
        try:
            statements = duckdb.extract_statements(query)
        except duckdb.Error as error:
            self.bad("query", f"is not valid SQL: {str(error).splitlines()[0]}")
            return ()
        if len(statements) != 1:
            self.bad("query", "must be exactly one statement")
            return ()
        statement = statements[0]
        if statement.type != duckdb.StatementType.SELECT:
            self.bad("query", "must be a SELECT (or WITH ... SELECT); rules only read")
            return ()
        unknown = set(statement.named_parameters) - set(SQL_PARAMETERS)
        if unknown:
            self.bad("query", f"uses unknown parameter(s) {', '.join('$' + p for p in sorted(unknown))} (available: $start, $end)")
        if any(name.isdigit() for name in statement.named_parameters) or "?" in _strip_strings(query):
            self.bad("query", "use the named parameters $start and $end, not ? placeholders")
        return tuple(sorted(set(statement.named_parameters) & set(SQL_PARAMETERS)))

    # -- small validators

    def _where(self) -> dict[str, tuple]:
        where = self.raw.get("where", {})
        if not isinstance(where, dict):
            self.bad("where", "must be a table, e.g. where = { category = [\"auth_failed\"] }")
            return {}
        out: dict[str, tuple] = {}
        for key, values in where.items():
            if key not in WHERE_KEYS:
                self.bad(f"where.{key}", f"unknown filter (allowed: {', '.join(WHERE_KEYS)})")
                continue
            if not isinstance(values, list):
                values = [values]
            if not values:
                self.bad(f"where.{key}", "lists no values")
                continue
            if key == "close_code":
                if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                    self.bad(f"where.{key}", "must be whole numbers, e.g. [1006, 1011]")
                    continue
            elif not all(isinstance(v, str) for v in values):
                self.bad(f"where.{key}", "must be text values")
                continue
            choices = WHERE_KEYS[key]
            for value in values:
                if choices is not None and value not in choices:
                    self.bad(f"where.{key}", f"'{value}' is not one of {', '.join(choices)}")
            out[key] = tuple(values)
        return out

    def _duration(self, key: str, default: float, positive: bool = False) -> float:
        if key not in self.raw:
            return default
        seconds = parse_duration(self.raw[key])
        if seconds is None or (positive and seconds <= 0):
            self.bad(key, f"must be a duration like \"90s\", \"15m\", \"2h\" or \"1d\", not {self.raw[key]!r}")
            return default
        return seconds

    def _whole(self, key: str, default: int) -> int:
        value = self.raw.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            self.bad(key, "must be a whole number >= 1")
            return default
        return value

    def _check_template(self, template: str, group_by: tuple[str, ...]) -> None:
        if isinstance(template, str):
            for problem in template_problems(template, set(TEMPLATE_FIELDS) | set(group_by)):
                self.bad("message", problem)


def _multiple(window: float, step: float) -> bool:
    ratio = window / step
    return abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1


def _strip_strings(query: str) -> str:
    """The query without its string literals, so a '?' inside text is not taken for a placeholder."""
    return re.sub(r"'(?:[^']|'')*'", "''", query)
