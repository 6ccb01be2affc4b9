"""Alert rules as data: a TOML file validated by pydantic models into ``Rule`` and ``Channel`` objects.

Users change thresholds, groups and channels by editing ``alerts.toml``, never
code. The file is read once per job run and checked completely: every problem
is reported with the rule's name, its line and the field, so ``closewatch
alerts check`` can list them all in one pass (see docs/alerts.md for the
format, field by field).

The file's shape is a set of pydantic models with ``extra="forbid"``: one per
rule kind (``PatternRuleSpec``, ``ThresholdRuleSpec``, ``SqlRuleSpec``,
``AbsenceRuleSpec``, discriminated by ``kind``) and one per channel type
(discriminated by ``type``). Their field names are the ``Rule`` and
``Channel`` attributes (seconds, tuples); their aliases are the TOML keys. A
validated spec becomes a frozen ``Rule`` or ``Channel``, the plain records the
engine and the channels read, so the rest of alerts/ does not depend on
pydantic.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import duckdb
import httpx
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from closewatch import durations
from closewatch.alerts.errors import RulesInvalid
from closewatch.validation import describe
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
#: What a threshold rule measures per group and window (docs/alerts.md): matching closures; their share of the
#: group's closures; matching closures per 1,000 sessions of the group; clients with matching closures.
METRICS = ("count", "rate", "per_1k_sessions", "clients")
CHANNEL_TYPES = ("console", "log", "file", "webhook", "apprise")
BUILTIN_CHANNELS = ("console", "log")
#: Parameters a sql rule's query may use.
SQL_PARAMETERS = ("start", "end")
#: Placeholders every message template may use (plus the rule's group_by columns).
TEMPLATE_FIELDS = (
    "rule", "description", "severity", "status", "group", "headline", "value", "window",
    "window_start", "window_end", "top_reasons", "action", "runbook", "labels",
)
TOP_LEVEL = ("rules", "channels", "defaults", "inhibit")
#: Keys an inhibit entry's matchers may name besides the group_by columns and labels of the rules: the where keys.
MATCH_KEYS = tuple(WHERE_KEYS)

#: Placeholder widths and precisions a message template may ask for ("{rule:>40}"); more is a mistake or an attack.
MAX_TEMPLATE_WIDTH = 200
#: A rules file larger than this is not a rules file.
MAX_RULES_BYTES = 1 << 20

#: What to write for a required key that is missing or empty (shown by the models' ``needs``).
_NEEDS = {
    "pattern": f"a pattern rule needs pattern = one of {', '.join(PATTERNS)}",
    "path": "a file channel needs path = \"alerts.jsonl\"",
}

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
_RULE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*rules[ \t]*\]\]", re.MULTILINE)
_INHIBIT_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*inhibit[ \t]*\]\]", re.MULTILINE)
_CHANNEL_HEADER = re.compile(r"^[ \t]*\[[ \t]*channels\.\"?([^\]\"]+)\"?\s*\]", re.MULTILINE)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,100}$")
_FORMAT_SPEC = re.compile(r"^(?:.?[<>=^])?[+\- ]?z?#?0?(?P<width>\d*)[,_]?(?:\.(?P<precision>\d+))?[bcdeEfFgGnosxX%]?$")


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
    min_sessions: int = 1  # per_1k_sessions: groups with fewer sessions in the window are not judged
    min_per_client: int = 1  # clients: a client counts with at least this many matching closures
    lookback_s: float = 86400.0
    expected: tuple[str, ...] = ()
    # sql
    query: str | None = None
    query_params: tuple[str, ...] = ()


@dataclass(frozen=True)
class Inhibit:
    """One [[inhibit]] entry: while a group of ``source`` fires, groups of the ``target`` rules that match are held back.

    Matchers and ``equal`` read a group's labels (alerts/inhibition.py): its
    group_by values, the rule's ``labels`` and its ``where`` filters.
    """

    source: str
    target: tuple[str, ...]
    source_match: dict[str, tuple[str, ...]] = field(default_factory=dict)
    target_match: dict[str, tuple[str, ...]] = field(default_factory=dict)
    equal: tuple[str, ...] = ()
    line: int | None = None


@dataclass
class RuleSet:
    """A parsed rules file: its rules, its channels, and the warnings worth showing."""

    path: Path
    rules: list[Rule]
    channels: dict[str, Channel]
    warnings: list[str] = field(default_factory=list)
    #: Channel settings from the environment that cannot work (`alerts check` fails on them; delivery says why per row).
    env_problems: list[str] = field(default_factory=list)
    #: The [[inhibit]] entries, in file order.
    inhibit: list[Inhibit] = field(default_factory=list)

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
        raw = path.read_bytes()
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        return None, [f"line {line} is not UTF-8 text (byte {error.object[error.start]:#04x}); save the file as UTF-8"]
    except OSError as error:
        return None, [f"cannot be read ({error.strerror or error}); check the path and its permissions"]
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        return None, [f"not valid TOML: {error}"]
    return _FileChecker(path, text, default_every_s).check(data)


def parse_duration(value: Any) -> float | None:
    """Seconds from 90, "90s", "1h30m", "500ms", "1w"; None if not a duration (the core grammar, closewatch.durations)."""
    return durations.parse_duration(value)


def format_duration(seconds: float) -> str:
    """The short human form: 90 -> '1m30s' (closewatch.durations)."""
    return durations.format_duration(seconds)


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


# -- value checks: each raises Problems with the words the user sees -------------------


class Problems(ValueError):
    """What is wrong with one value, as one or more phrases; ``field`` names another key when the fault is there.

    pydantic keeps the exception in the error's context, so a validator can
    report several problems of one field (every unknown placeholder of a
    message) and a model validator can name the field at fault.
    """

    def __init__(self, texts: str | list[str], field: str | None = None):
        self.texts = [texts] if isinstance(texts, str) else texts
        self.field = field
        super().__init__("; ".join(self.texts))


def _fail_if(problems: list[str], field_name: str | None = None) -> None:
    if problems:
        raise Problems(problems, field_name)


def _as_list(value: Any) -> Any:
    """One value where a list is expected means a list of one (channels = "oncall")."""
    return [value] if isinstance(value, (str, int)) and not isinstance(value, bool) else value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise Problems("must be text")
    return value


def _required_text(key: str) -> Callable[[Any], str]:
    """A key that must be non-empty text; anything else gets the same sentence as leaving it out (the model's ``needs``)."""

    def check(value: Any) -> str:
        if not isinstance(value, str) or not value:
            raise Problems(_NEEDS[key])
        return value

    return check


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Problems("must be true or false")
    return value


def _whole(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise Problems("must be a whole number >= 1")
    return value


def _one_of(choices: Iterable[str], words: str) -> Callable[[Any], str]:
    allowed = tuple(choices)

    def check(value: Any) -> str:
        if value not in allowed:
            raise Problems(words.format(choices=", ".join(allowed), value=value))
        return value

    return check


def _seconds(positive: bool) -> Callable[[Any], float | None]:
    def check(value: Any) -> float | None:
        if value is None:  # not written: the field's validator fills in the default
            return None
        seconds = parse_duration(value)
        if seconds is None or (positive and seconds <= 0):
            raise Problems(f"must be a duration like \"90s\", \"15m\", \"2h\" or \"1d\", not {value!r}")
        return seconds

    return check


def _rule_name(value: Any) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise Problems("every rule needs a name of letters, digits, '-', '_' or '.' (at most 80)")
    return value


def _labels(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, (str, int, float, bool)) for v in value.values()):
        raise Problems("must be a table of name = text, e.g. labels = { team = \"voice\" }")
    return {str(k): str(v) for k, v in value.items()}


def _names(words: str) -> Callable[[Any], tuple[str, ...]]:
    def check(value: Any) -> tuple[str, ...]:
        value = _as_list(value)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Problems(words)
        return tuple(value)

    return check


def _severities(value: Any) -> tuple[str, ...]:
    value = _as_list(value)
    if not isinstance(value, list) or any(s not in SEVERITIES for s in value):
        raise Problems(f"must list severities among {', '.join(SEVERITIES)}")
    return tuple(value)


def _expected(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(e, (str, int)) and not isinstance(e, bool) for e in value):
        raise Problems("must be a list of values of the group_by column")
    return tuple(str(e) for e in value)


def _threshold_value(value: Any) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
        raise Problems("a threshold rule needs value = a number >= 0 to compare with")
    return float(value)


def _filter(choices: tuple[str, ...] | None, codes: bool = False) -> Callable[[Any], tuple]:
    """One key of a ``where`` table: a value or a list of them, each among ``choices`` when the set is closed."""

    def check(values: Any) -> tuple:
        values = values if isinstance(values, list) else [values]
        if not values:
            raise Problems("lists no values")
        if codes and not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise Problems("must be whole numbers, e.g. [1006, 1011]")
        if not codes and not all(isinstance(v, str) for v in values):
            raise Problems("must be text values")
        _fail_if([f"'{v}' is not one of {', '.join(choices)}" for v in values if choices is not None and v not in choices])
        return tuple(values)

    return check


def _table(words: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, dict):
            raise Problems(words)
        return value

    return check


def _multiple(window: float, step: float) -> bool:
    ratio = window / step
    return abs(ratio - round(ratio)) < 1e-9 and round(ratio) >= 1


def _strip_strings(query: str) -> str:
    """The query without its string literals, so a '?' inside text is not taken for a placeholder."""
    return re.sub(r"'(?:[^']|'')*'", "''", query)


def query_parameters(query: str) -> tuple[str, ...]:
    """The named parameters ($start, $end) a rule's SELECT uses; raises Problems when it is not one read-only SELECT."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as error:
        raise Problems(f"is not valid SQL: {str(error).splitlines()[0]}") from None
    if len(statements) != 1:
        raise Problems("must be exactly one statement")
    statement = statements[0]
    if statement.type != duckdb.StatementType.SELECT:
        raise Problems("must be a SELECT (or WITH ... SELECT); rules only read")
    problems = []
    unknown = set(statement.named_parameters) - set(SQL_PARAMETERS)
    if unknown:
        problems.append(f"uses unknown parameter(s) {', '.join('$' + p for p in sorted(unknown))} (available: $start, $end)")
    if any(name.isdigit() for name in statement.named_parameters) or "?" in _strip_strings(query):
        problems.append("use the named parameters $start and $end, not ? placeholders")
    _fail_if(problems)
    return tuple(sorted(set(statement.named_parameters) & set(SQL_PARAMETERS)))


def _sql_query(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Problems("a sql rule needs query = a SELECT whose rows are the firing groups")
    query_parameters(value)
    return value


Text = Annotated[str, BeforeValidator(_text)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Whole = Annotated[int, BeforeValidator(_whole)]
Duration = Annotated[float | None, BeforeValidator(_seconds(positive=False))]
PositiveDuration = Annotated[float | None, BeforeValidator(_seconds(positive=True))]


# -- the file's shape: pydantic models --------------------------------------------------


class Spec(BaseModel):
    """A table of the rules file: unknown keys are errors; ``needs`` says what to write for a missing key."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    #: For required keys: the sentence shown when the key is missing (by TOML key).
    needs: ClassVar[dict[str, str]] = {}


class Where(Spec):
    """A ``where`` table: closures must match every key, and one of the values listed for it."""

    category: Annotated[tuple, BeforeValidator(_filter(CATEGORIES))] | None = None
    severity: Annotated[tuple, BeforeValidator(_filter(SEVERITIES))] | None = None
    close_code: Annotated[tuple, BeforeValidator(_filter(None, codes=True))] | None = None
    client_id: Annotated[tuple, BeforeValidator(_filter(None))] | None = None
    source_format: Annotated[tuple, BeforeValidator(_filter(None))] | None = None
    era: Annotated[tuple, BeforeValidator(_filter(None))] | None = None
    retry_safe: Annotated[tuple, BeforeValidator(_filter(RETRY_SAFE))] | None = None


WhereTable = Annotated[Where, BeforeValidator(_table("must be a table, e.g. where = { category = [\"auth_failed\"] }"))]


class RuleSpec(Spec):
    """The fields every rule has, in the order they are checked (later checks read earlier fields)."""

    #: Columns ``group_by`` may name (empty: any, for sql rules), and its default.
    group_columns: ClassVar[tuple[str, ...]] = GROUP_COLUMNS
    group_default: ClassVar[tuple[str, ...]] = ()

    name: Annotated[str, BeforeValidator(_rule_name)]
    kind: str
    severity: Annotated[str, BeforeValidator(_one_of(SEVERITIES, "must be one of {choices}"))] = "warning"
    description: Text = ""
    runbook: Text = ""
    action: Text = ""
    resolve: Flag = False
    enabled: Flag = True
    labels: Annotated[dict[str, str], BeforeValidator(_labels)] = {}
    channels: Annotated[tuple[str, ...], BeforeValidator(_names("must be a list of channel names"))] = ("console",)
    for_s: Duration = Field(0.0, alias="for")
    keep_firing_s: Duration = Field(0.0, alias="keep_firing_for")
    repeat_s: Duration = Field(0.0, alias="repeat_interval")
    every_s: PositiveDuration = Field(None, alias="every", validate_default=True)
    group_by: Annotated[tuple[str, ...], BeforeValidator(_names("must be a list of column names"))] | None = Field(
        None, validate_default=True)
    message: Text = Field("{headline}", validate_default=True)

    @field_validator("channels")
    @classmethod
    def _channels_defined(cls, channels: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        defined = (info.context or {}).get("channels", BUILTIN_CHANNELS)
        _fail_if([f"no channel named '{c}' (defined: {', '.join(sorted(defined))}; define it in a channels.{c} table)"
                  for c in channels if c not in defined])
        return channels

    @field_validator("every_s")
    @classmethod
    def _default_step(cls, seconds: float | None, info: ValidationInfo) -> float:
        return seconds if seconds is not None else (info.context or {}).get("default_every_s", 60.0)

    @field_validator("group_by")
    @classmethod
    def _groupable(cls, columns: tuple[str, ...] | None) -> tuple[str, ...]:
        columns = cls.group_default if columns is None else columns
        allowed = cls.group_columns
        problems = [f"'{c}' is not a column this rule can group by (allowed: {', '.join(allowed)})"
                    for c in columns if allowed and c not in allowed]
        if len(set(columns)) != len(columns):
            problems.append("lists a column twice")
        _fail_if(problems)
        return columns

    @field_validator("message")
    @classmethod
    def _template(cls, template: str, info: ValidationInfo) -> str:
        _fail_if(template_problems(template, set(TEMPLATE_FIELDS) | set(info.data.get("group_by") or ())))
        return template

    @classmethod
    def _window(cls, seconds: float | None, info: ValidationInfo, default: float) -> float:
        """A window is a whole number of evaluation steps, so every evaluation sees whole windows."""
        seconds = default if seconds is None else seconds
        step = info.data.get("every_s")
        if step and seconds and not _multiple(seconds, step):
            raise Problems(f"must be a whole multiple of the evaluation step ({format_duration(step)}; set 'every' to change it)")
        return seconds


class PatternRuleSpec(RuleSpec):
    """kind = "pattern": fires on the pattern detectors' findings."""

    group_columns: ClassVar[tuple[str, ...]] = PATTERN_GROUP_COLUMNS
    group_default: ClassVar[tuple[str, ...]] = ("key",)
    needs: ClassVar[dict[str, str]] = {"pattern": _NEEDS["pattern"]}

    kind: Literal["pattern"]
    pattern: Annotated[str, BeforeValidator(_required_text("pattern"))]
    window_s: PositiveDuration = Field(None, alias="window", validate_default=True)
    min_count: Whole = 1
    min_findings: Whole = 1
    detection_severity: Annotated[tuple[str, ...], BeforeValidator(_severities)] = ()

    @field_validator("window_s")
    @classmethod
    def _steps(cls, seconds: float | None, info: ValidationInfo) -> float:
        return cls._window(seconds, info, 900.0)


class ThresholdRuleSpec(RuleSpec):
    """kind = "threshold": how many closures match (or which share of the group's), per group, in a window."""

    needs: ClassVar[dict[str, str]] = {
        "window": "a threshold rule needs window = a duration like \"15m\"",
        "value": "a threshold rule needs value = a number >= 0 to compare with",
    }

    kind: Literal["threshold"]
    where: WhereTable = Where()
    window_s: PositiveDuration = Field(alias="window")
    metric: Annotated[str, BeforeValidator(_one_of(
        METRICS, "must be \"count\" (closures in the window), \"rate\" (share of the group's closures), "
                 "\"per_1k_sessions\" (closures per 1,000 sessions of the group) or \"clients\" (clients with closures)"))] = "count"
    op: Annotated[str, BeforeValidator(_one_of(OPERATORS, "must be one of {choices}"))] = ">="
    value: Annotated[float, BeforeValidator(_threshold_value)]
    min_total: Whole = 1
    min_sessions: Whole = 1
    min_per_client: Whole = 1

    #: The metric each of these keys belongs to (elsewhere it would be ignored, so it is an error).
    metric_keys: ClassVar[dict[str, str]] = {"min_sessions": "per_1k_sessions", "min_per_client": "clients"}

    @field_validator("window_s")
    @classmethod
    def _steps(cls, seconds: float | None, info: ValidationInfo) -> float:
        return cls._window(seconds, info, 900.0)

    @field_validator("metric")
    @classmethod
    def _metric_fits(cls, metric: str, info: ValidationInfo) -> str:
        if metric == "clients" and "client_id" in (info.data.get("group_by") or ()):
            raise Problems("counts clients, so group_by cannot list client_id (group by category, say)")
        return metric

    @field_validator("op")
    @classmethod
    def _op_fits(cls, op: str, info: ValidationInfo) -> str:
        if info.data.get("metric") in ("count", "clients") and op not in (">=", ">"):
            what = "count" if info.data["metric"] == "count" else "number of clients"
            raise Problems(f"a {what} can only be compared with >= or >; for 'too few closures' use an absence rule")
        return op

    @field_validator("value")
    @classmethod
    def _value_fits(cls, value: float, info: ValidationInfo) -> float:
        if info.data.get("metric") == "rate" and value > 1:
            raise Problems("a rate is a share between 0 and 1 (0.3 means 30 %)")
        if info.data.get("metric") == "per_1k_sessions" and value > 1000:
            raise Problems("closures per 1,000 sessions are at most 1000 (every session closed that way)")
        return value

    @field_validator("min_sessions", "min_per_client")
    @classmethod
    def _for_its_metric(cls, number: int, info: ValidationInfo) -> int:
        wanted = cls.metric_keys[info.field_name or ""]
        if "metric" in info.data and info.data["metric"] != wanted:
            raise Problems(f"applies to metric = \"{wanted}\" only; remove it or set that metric")
        return number


class AbsenceRuleSpec(RuleSpec):
    """kind = "absence": fires when a group seen within ``lookback`` sends no closures for ``window``."""

    needs: ClassVar[dict[str, str]] = {"window": "an absence rule needs window = how long without closures, e.g. \"30m\""}

    kind: Literal["absence"]
    where: WhereTable = Where()
    window_s: PositiveDuration = Field(alias="window")
    lookback_s: PositiveDuration = Field(None, alias="lookback", validate_default=True)
    expected: Annotated[tuple[str, ...], BeforeValidator(_expected)] = ()

    @field_validator("window_s")
    @classmethod
    def _steps(cls, seconds: float | None, info: ValidationInfo) -> float:
        return cls._window(seconds, info, 1800.0)

    @field_validator("lookback_s")
    @classmethod
    def _longer(cls, seconds: float | None, info: ValidationInfo) -> float | None:
        window = info.data.get("window_s")
        if seconds is None:
            return max(86400.0, 2 * window) if window else None
        if window and seconds <= window:
            raise Problems("must be longer than window (groups seen within lookback are expected to keep reporting)")
        return seconds

    @field_validator("expected")
    @classmethod
    def _one_column(cls, expected: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if expected and len(info.data.get("group_by") or ()) != 1:
            raise Problems("needs exactly one group_by column, e.g. group_by = [\"client_id\"]")
        return expected


class SqlRuleSpec(RuleSpec):
    """kind = "sql": the rows of your SELECT over ($start, $end] are the firing groups."""

    group_columns: ClassVar[tuple[str, ...]] = ()  # any column the query returns
    needs: ClassVar[dict[str, str]] = {"query": "a sql rule needs query = a SELECT whose rows are the firing groups"}

    kind: Literal["sql"]
    query: Annotated[str, BeforeValidator(_sql_query)]
    window_s: PositiveDuration = Field(None, alias="window", validate_default=True)

    @field_validator("window_s")
    @classmethod
    def _one_step(cls, seconds: float | None, info: ValidationInfo) -> float | None:
        return seconds if seconds is not None else info.data.get("every_s")  # 0: the evaluation step


ANY_RULE = Annotated[PatternRuleSpec | ThresholdRuleSpec | AbsenceRuleSpec | SqlRuleSpec, Field(discriminator="kind")]
RULE_SPECS: dict[str, type[RuleSpec]] = {
    "pattern": PatternRuleSpec, "threshold": ThresholdRuleSpec, "sql": SqlRuleSpec, "absence": AbsenceRuleSpec,
}
_RULE: TypeAdapter[RuleSpec] = TypeAdapter(ANY_RULE)


# -- channels


def _env_names(value: Any) -> tuple[str, ...]:
    value = _as_list(value)
    if not isinstance(value, list) or not all(isinstance(e, str) and e for e in value):
        raise Problems("must name an environment variable, e.g. url_env = \"SLACK_URL\"")
    return tuple(value)


def _webhook_seconds(key: str) -> Callable[[Any], float]:
    def check(value: Any) -> float:
        seconds = parse_duration(value)
        if seconds is None or (key == "timeout" and not 0 < seconds <= 300) or seconds > 300:
            raise Problems("must be a duration like \"5s\", at most 5m")
        return seconds

    return check


def _retries(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10:
        raise Problems("must be a whole number from 0 to 10")
    return value


def _header_table(value: Any) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise Problems("must be a table of header name = text")
    return dict(value)


def _literal_headers(headers: dict[str, str]) -> dict[str, str]:
    problems = [f"'{name}' is a secret; name its environment variable in headers_env instead"
                for name in headers if name.lower() in ("authorization", "x-api-key")]
    problems += [f"header {name!r} {problem}" for name, value in headers.items() if (problem := header_problem(name, value))]
    _fail_if(problems)
    return headers


def _env_headers(headers: dict[str, str]) -> dict[str, str]:
    _fail_if([f"header {name!r} {problem}" for name in headers if (problem := header_problem(name, ""))])
    return headers


def _webhook_url(value: Any) -> str:
    problem = url_problem(value) if isinstance(value, str) else "is not text"
    if problem:
        raise Problems(f"{problem}; write an http:// or https:// URL (put secret URLs in an environment variable and use url_env)")
    return value


class ChannelSpec(Spec):
    """A [channels.NAME] table; ``type`` says which fields it has."""

    type: str

    def channel(self, name: str) -> Channel:
        return Channel(name, self.type)


class ConsoleChannelSpec(ChannelSpec):
    type: Literal["console"]


class LogChannelSpec(ChannelSpec):
    type: Literal["log"]


class FileChannelSpec(ChannelSpec):
    needs: ClassVar[dict[str, str]] = {"path": _NEEDS["path"]}

    type: Literal["file"]
    path: Annotated[str, BeforeValidator(_required_text("path"))]

    def channel(self, name: str) -> Channel:
        return Channel(name, self.type, path=self.path)


class _UrlChannelSpec(ChannelSpec):
    """A channel that sends to URLs held in environment variables."""

    url_env: Annotated[tuple[str, ...], BeforeValidator(_env_names)] = ()
    urls_env: Annotated[tuple[str, ...], BeforeValidator(_env_names)] = ()

    @property
    def url_envs(self) -> tuple[str, ...]:
        return self.url_env + self.urls_env

    def _needs_a_url(self, url: str | None) -> None:
        if not self.url_envs and not url:
            raise Problems(f"a {self.type} channel needs url_env = \"VARIABLE\" naming the environment variable that holds its URL",
                           "url_env")


class AppriseChannelSpec(_UrlChannelSpec):
    type: Literal["apprise"]

    @model_validator(mode="after")
    def _has_url(self) -> AppriseChannelSpec:
        self._needs_a_url(None)
        return self

    def channel(self, name: str) -> Channel:
        return Channel(name, self.type, url_envs=self.url_envs)


class WebhookChannelSpec(_UrlChannelSpec):
    type: Literal["webhook"]
    url: Annotated[str, BeforeValidator(_webhook_url)] | None = None
    timeout_s: Annotated[float, BeforeValidator(_webhook_seconds("timeout"))] = Field(10.0, alias="timeout")
    retries: Annotated[int, BeforeValidator(_retries)] = 2
    backoff_s: Annotated[float, BeforeValidator(_webhook_seconds("backoff"))] = Field(0.5, alias="backoff")
    headers: Annotated[dict[str, str], BeforeValidator(_header_table), AfterValidator(_literal_headers)] = {}
    headers_env: Annotated[dict[str, str], BeforeValidator(_header_table), AfterValidator(_env_headers)] = {}

    @model_validator(mode="after")
    def _one_url(self) -> WebhookChannelSpec:
        self._needs_a_url(self.url)
        if len(self.url_envs) > 1:
            raise Problems("a webhook channel posts to one URL", "url_env")
        return self

    def channel(self, name: str) -> Channel:
        return Channel(name, self.type, url=self.url, url_envs=self.url_envs, timeout_s=self.timeout_s,
                       retries=self.retries, backoff_s=self.backoff_s, headers=self.headers, headers_env=self.headers_env)


ANY_CHANNEL = Annotated[ConsoleChannelSpec | LogChannelSpec | FileChannelSpec | WebhookChannelSpec | AppriseChannelSpec,
                        Field(discriminator="type")]
CHANNEL_SPECS: dict[str, type[ChannelSpec]] = {
    "console": ConsoleChannelSpec, "log": LogChannelSpec, "file": FileChannelSpec,
    "webhook": WebhookChannelSpec, "apprise": AppriseChannelSpec,
}
_CHANNEL: TypeAdapter[ChannelSpec] = TypeAdapter(ANY_CHANNEL)


def _rule_tables(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise Problems("rules must be written as tables headed rules in double brackets")
    return value


def _inhibit_tables(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
        raise Problems("inhibit must be written as tables headed inhibit in double brackets")
    return value


def _matchers(value: Any) -> dict[str, tuple[str, ...]]:
    """label = value or [values]: a group matches when its label has one of the values."""
    words = "must be a table of label = text or list of texts, e.g. { category = [\"network_abnormal\"] }"
    if not isinstance(value, dict):
        raise Problems(words)
    out = {}
    for key, values in value.items():
        values = _as_list(values)
        if not isinstance(values, list) or not values or not all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in values):
            raise Problems(words)
        out[str(key)] = tuple(str(v) for v in values)
    return out


class InhibitSpec(Spec):
    """An [[inhibit]] table (as Alertmanager's inhibit_rules): source rule and matchers, target rules, equal labels."""

    needs: ClassVar[dict[str, str]] = {
        "source": "an inhibit entry needs source = the name of the rule whose firing holds others back",
        "target": "an inhibit entry needs target = [the names of the rules it holds back]",
    }

    source: Annotated[str, BeforeValidator(_text)]
    source_match: Annotated[dict[str, tuple[str, ...]], BeforeValidator(_matchers)] = {}
    target: Annotated[tuple[str, ...], BeforeValidator(_names("must be a list of rule names"))]
    target_match: Annotated[dict[str, tuple[str, ...]], BeforeValidator(_matchers)] = {}
    equal: Annotated[tuple[str, ...], BeforeValidator(_names("must be a list of label names, e.g. [\"category\"]"))] = ()

    @field_validator("target")
    @classmethod
    def _not_itself(cls, target: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if not target:
            raise Problems(cls.needs["target"])
        if info.data.get("source") in target:
            raise Problems("lists the source rule itself; a rule cannot hold back its own groups")
        return target


_INHIBIT: TypeAdapter[InhibitSpec] = TypeAdapter(InhibitSpec)


def _defaults(value: Any) -> Any:
    if not isinstance(value, dict):
        raise Problems("defaults must be a table of rule fields")
    allowed = sorted(aliases(RuleSpec) - {"name", "kind"})
    _fail_if([f"defaults: '{key}' cannot have a default (allowed: {', '.join(allowed)})" for key in value if key not in allowed])
    return value


class RulesFile(Spec):
    """The top level of the file: [[rules]] tables, [channels.NAME] tables and one [defaults] table."""

    rules: Annotated[list[dict[str, Any]], BeforeValidator(_rule_tables)] = []
    channels: Annotated[dict[str, Any], BeforeValidator(_table("channels must be tables like channels.oncall"))] = {}
    defaults: Annotated[dict[str, Any], BeforeValidator(_defaults)] = {}
    inhibit: Annotated[list[dict[str, Any]], BeforeValidator(_inhibit_tables)] = []


def aliases(model: type[BaseModel]) -> set[str]:
    """The TOML keys a model accepts."""
    return {info.alias or name for name, info in model.model_fields.items()}


#: The keys each kind of rule and each type of channel accepts (docs/alerts.md lists them).
COMMON_FIELDS = aliases(RuleSpec)
KIND_FIELDS = {kind: aliases(spec) - COMMON_FIELDS for kind, spec in RULE_SPECS.items()}
CHANNEL_FIELDS = {kind: aliases(spec) for kind, spec in CHANNEL_SPECS.items()}


# -- checking a whole file -------------------------------------------------------------


def _phrases(error: ValidationError, needs: dict[str, str], unknown: Callable[[str], str],
             tag: str | None = None) -> list[tuple[str, str]]:
    """(field, phrase) for every error of one table; ``unknown`` words a key the table does not have.

    A discriminated union puts its ``tag`` (the rule's kind) first in every
    error's location; the user wrote no such key, so it is left out.
    """
    out = []
    for detail in error.errors(include_url=False):
        parts = detail["loc"][1:] if tag is not None and detail["loc"][:1] == (tag,) else detail["loc"]
        loc = [str(part) for part in parts if not isinstance(part, int)]
        key = ".".join(loc)
        cause = (detail.get("ctx") or {}).get("error")
        if isinstance(cause, Problems):
            out += [(cause.field or key, text) for text in cause.texts]
        elif detail["type"] == "extra_forbidden":
            out.append((key, unknown(key)))
        elif detail["type"] == "missing":
            out.append((key, needs.get(key, "is missing")))
        else:
            out.append((key, describe(detail)))
    return out


class _FileChecker:
    """Walks the file once, collecting every problem instead of stopping at the first."""

    def __init__(self, path: Path, text: str, default_every_s: float):
        self.path = path
        self.default_every_s = default_every_s
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.rule_lines = [line for line, _ in _headers(_RULE_HEADER, text)]
        self.inhibit_lines = [line for line, _ in _headers(_INHIBIT_HEADER, text)]
        self.channel_lines = {match.group(1).strip(): line for line, match in _headers(_CHANNEL_HEADER, text)}

    def check(self, data: dict[str, Any]) -> tuple[RuleSet | None, list[str]]:
        sections = self._top_level(data)
        channels = self._channels(sections.get("channels", {}))
        raw_rules = sections.get("rules", [])
        if not raw_rules:
            self.problems.append("the file defines no rules; add at least one rule table (headed rules in double brackets)")
        rules: list[Rule] = []
        for index, raw in enumerate(raw_rules):
            rule = self._rule(index, {**sections.get("defaults", {}), **raw}, channels)
            if rule is None:
                continue
            if any(other.name == rule.name for other in rules):
                self.problems.append(f"rule '{rule.name}' (line {rule.line}), field 'name': another rule has the same name; names must be unique")
            rules.append(rule)
        inhibit = [entry for index, raw in enumerate(sections.get("inhibit", []))
                   if (entry := self._inhibit(index, raw, rules)) is not None]
        self._acyclic(inhibit)
        if self.problems:
            return None, self.problems
        env_problems = [problem for channel in channels.values() for problem in channel.env_problems()]
        return RuleSet(self.path, rules, channels, self.warnings + env_problems, env_problems, inhibit), []

    def _inhibit(self, index: int, raw: dict[str, Any], rules: list[Rule]) -> Inhibit | None:
        line = self.inhibit_lines[index] if index < len(self.inhibit_lines) else None
        label = f"inhibit #{index + 1}" + (f" (line {line})" if line else "")
        try:
            spec = _INHIBIT.validate_python(raw)
        except ValidationError as error:
            unknown = f"unknown field of an inhibit entry (allowed: {', '.join(sorted(aliases(InhibitSpec)))})"
            for key, text in _phrases(error, InhibitSpec.needs, lambda _: unknown):
                self.problems.append(f"{label}, field '{key}': {text}")
            return None
        names = [rule.name for rule in rules]
        before = len(self.problems)
        for key, wanted in (("source", (spec.source,)), ("target", spec.target)):
            for name in wanted:
                if name not in names:
                    self.problems.append(f"{label}, field '{key}': no rule named '{name}' (rules: {', '.join(names)})")
        if len(self.problems) > before:
            return None
        by_name = {rule.name: rule for rule in rules}
        checks: list[tuple[str, tuple[str, ...], list[str]]] = [
            ("source_match", (spec.source,), list(spec.source_match)), ("target_match", spec.target, list(spec.target_match)),
            ("equal", (spec.source, *spec.target), list(spec.equal))]
        for key, named, labels in checks:
            for name in named:
                have = label_names(by_name[name])
                missing = [one for one in labels if have is not None and one not in have]
                if missing:
                    self.warnings.append(f"{label}, field '{key}': rule '{name}' has no label {', '.join(missing)} "
                                         f"(its labels: {', '.join(sorted(have or ()))}), so this entry never holds back its groups")
        return Inhibit(spec.source, spec.target, spec.source_match, spec.target_match, spec.equal, line)

    def _acyclic(self, entries: list[Inhibit]) -> None:
        """Sources are evaluated before their targets, so no rule may (through others) hold back a rule that holds it back."""
        targets: dict[str, set[str]] = {}
        for entry in entries:
            targets.setdefault(entry.source, set()).update(entry.target)
        for entry in entries:
            seen: set[str] = set()
            todo = list(entry.target)
            while todo:
                name = todo.pop()
                if name == entry.source:
                    where = f" (line {entry.line})" if entry.line else ""
                    self.problems.append(f"inhibit entries{where}: rule '{entry.source}' holds back a rule that holds it back; "
                                         "remove one of the entries")
                    return
                if name not in seen:
                    seen.add(name)
                    todo.extend(targets.get(name, ()))

    def _top_level(self, data: dict[str, Any]) -> dict[str, Any]:
        """The sections that have the right shape (the others are reported and left out)."""
        try:
            RulesFile.model_validate(data)
            return data
        except ValidationError as error:
            unknown = "unknown top-level key '{}' (expected rules, channels, defaults or inhibit tables)".format
            phrases = _phrases(error, {}, unknown)
            self.problems += [text for _, text in phrases]
            return {key: value for key, value in data.items() if key in TOP_LEVEL and key not in {f.split(".")[0] for f, _ in phrases}}

    def _channels(self, raw: dict[str, Any]) -> dict[str, Channel]:
        channels = {name: Channel(name, name) for name in BUILTIN_CHANNELS}
        for name, spec in raw.items():
            channel = self._channel(name, spec)
            if channel is None:
                continue
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
        if not isinstance(spec, dict):
            self.problems.append(f"{where}: must be a table with a 'type'")
            return None
        kind = spec.get("type")
        if kind not in CHANNEL_TYPES:
            self.problems.append(f"{where}, field 'type': must be one of {', '.join(CHANNEL_TYPES)}, not {kind!r}")
            return None
        try:
            return _CHANNEL.validate_python(spec).channel(name)
        except ValidationError as error:
            model = CHANNEL_SPECS[kind]
            unknown = f"unknown field for a {kind} channel (allowed: {', '.join(sorted(aliases(model)))})"
            for key, text in _phrases(error, model.needs, lambda _: unknown, kind):
                self.problems.append(f"{where}, field '{key}': {text}")
            return None

    def _rule(self, index: int, raw: dict[str, Any], channels: dict[str, Channel]) -> Rule | None:
        line = self.rule_lines[index] if index < len(self.rule_lines) else None
        name = raw.get("name")
        label = f"rule '{name if isinstance(name, str) and name else f'#{index + 1}'}'" + (f" (line {line})" if line else "")
        kind = raw.get("kind")
        if kind not in KINDS:  # the discriminator: without it no other field can be checked
            try:
                _rule_name(name)
            except Problems as problem:
                self.problems.append(f"{label}, field 'name': {problem}")
            self.problems.append(f"{label}, field 'kind': must be one of {', '.join(KINDS)}, not {kind!r}")
            return None
        context = {"channels": tuple(channels), "default_every_s": self.default_every_s}
        try:
            spec = _RULE.validate_python(raw, context=context)
        except ValidationError as error:
            model = RULE_SPECS[kind]
            for key, text in _phrases(error, model.needs, lambda key: _unknown_rule_key(kind, key), kind):
                self.problems.append(f"{label}, field '{key}': {text}")
            return None
        if isinstance(spec, PatternRuleSpec) and spec.pattern not in PATTERNS:
            self.warnings.append(f"rule '{spec.name}': pattern '{spec.pattern}' is not one of the built-in detectors ({', '.join(PATTERNS)})")
        return to_rule(spec, line)


def _headers(pattern: re.Pattern[str], text: str) -> Iterable[tuple[int, re.Match[str]]]:
    """(line number, match) of each table header, counting lines once through the text."""
    line, position = 1, 0
    for match in pattern.finditer(text):
        line += text.count("\n", position, match.start())
        position = match.start()
        yield line, match


def label_names(rule: Rule) -> set[str] | None:
    """The labels a rule's groups carry (alerts/inhibition.py); None for a sql rule, whose columns are its query's."""
    if rule.kind == "sql" and not rule.group_by:
        return None
    return set(rule.labels) | set(rule.where) | set(rule.group_by) | {"rule"}


def _unknown_rule_key(kind: str, key: str) -> str:
    if key.startswith("where."):
        return f"unknown filter (allowed: {', '.join(WHERE_KEYS)})"
    return f"unknown field for a {kind} rule (allowed: {', '.join(sorted(COMMON_FIELDS | KIND_FIELDS[kind]))})"


def to_rule(spec: RuleSpec, line: int | None = None) -> Rule:
    """The engine's record of a validated rule (field names are the same, durations in seconds)."""
    fields = spec.model_dump(exclude={"where"})
    where = getattr(spec, "where", None)
    if where is not None:
        fields["where"] = where.model_dump(exclude_none=True)
    if isinstance(spec, SqlRuleSpec):
        fields["query_params"] = query_parameters(spec.query)
    return Rule(**fields, line=line)
