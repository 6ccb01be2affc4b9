"""Secrets never reach the database: redaction of anything that looks like a key.

Every text that is stored or shown passes through here first: closures and
rejects at ingest, errors kept in ``job_runs``, messages a user reads. Each
pattern keeps the label (``token=``, ``Authorization:``) and replaces the
secret with ``[REDACTED]`` so a reader still sees what was there. Redacting
twice gives the same text as redacting once. Redaction runs on whole texts and
only then are they cut to a storage bound (``redact_then_cut``), so a cut can
never leave half a key behind.

The shapes come from what streaming clients and the apps around them print:
the SDKs send the API key (or a temporary token) in an ``Authorization``
header or a ``token=`` query parameter of the wss URL; handshake errors and
debug traces print them back (websocket-client ``enableTrace``, websockets'
``> Authorization: ...``, aiohttp's header reprs, Node's ``headers: {...}``);
apps dump their environment and config (``ASSEMBLYAI_API_KEY=...``,
``password: ...``, ``{"secret_key": "..."}``), signed URLs carry ``sig=`` or
``X-Amz-Signature=``, and alerting code logs its Slack, Discord or Teams
webhook URL. docs/security.md lists every shape for users.

The patterns are written for both regex engines that apply them: polars' Rust
``regex`` (replacement) and DuckDB's RE2 (``ANY_SECRET`` as a filter). Neither
has look-around, so boundaries are captured groups put back by the replacement.
"""

from __future__ import annotations

import polars as pl

MASK = "[REDACTED]"

_VALUE = r"[A-Za-z0-9._~+/=\-]{8,}"  # 8+: long enough for keys, too long for "Bearer" or "None"
_LABELS = r"(?:authorization|proxy-authorization|x-api-key|x-auth-token|api[ _-]?key|apikey|api[_-]?token|access[_-]?token)"

#: Names whose value is secret whatever its length (password=x is still a password),
#: alone or inside a longer name: client_secret, secret_key, aws_secret_access_key, db_password.
_ALWAYS_SECRET = r"(?:[a-z0-9]+[_-])*(?:password|passwd|pwd|passphrase|secret)(?:[_-][a-z0-9]+)*"
#: Names whose value is secret when it is long enough to be a credential: "token=None",
#: "sort_key=asc" and "max_tokens=100" are not, "sig=Zm9vYmFy" and "X-Amz-Signature=..." are.
_SECRET_IF_LONG = r"(?:[a-z0-9]+[_-])*(?:token|key|apikey|signature|sig|credentials?|auth)"
#: A quote after the name, possibly escaped inside a JSON string (\").
_Q = r"(?:\\?[\"'])?"
#: Characters that end an unquoted value (URL and list separators, quotes, brackets).
_UNQUOTED_END = r"\s&\"',;)}<>\[\]\\"


def _name_value(name: str, quoted: int, equals: int, colon: int) -> list[tuple[str, str]]:
    """"name": "value", name=value and name: value for one family of names, each with its shortest secret.

    Quoted values may hold spaces and end at the closing quote (an escaped one
    inside JSON text too); unquoted ones end at a separator. "name: value" in
    prose needs the longest value, so "Invalid token: expired" stays readable.
    """
    label = rf"(?i)(\b{name}{_Q}\s*"
    first = r"[^\"'\\\[\s]"
    return [
        (label + r"[:=]\s*\\?[\"'])" + first + r"(?:\\[^\"']|[^\"'\\])" + f"{{{quoted - 1},}}", "${1}" + MASK),
        (label + r"=\s*)" + f"[^{_UNQUOTED_END}]{{{equals},}}", "${1}" + MASK),
        (label + r":\s*)" + f"[^{_UNQUOTED_END}]{{{colon},}}", "${1}" + MASK),
    ]


# (pattern, replacement); Rust regex syntax as polars uses it. Order matters: the
# labelled forms run first so the label survives, the bare shapes catch the rest.
# A masked value starts with "[", which no value pattern accepts, so redacting is idempotent.
PATTERNS: list[tuple[str, str]] = [
    # Header-like and field-like labels, any quoting: Authorization: <key>, 'Authorization': 'Bearer <jwt>',
    # "x-api-key": "<key>", apiKey: '<key>', api_key='<key>' (pydantic reprs), Invalid API key: <key>.
    (rf"(?i)({_LABELS}[\"']?\s*[:=]\s*[\"']?(?:bearer\s+|basic\s+|token\s+)?){_VALUE}", "${1}" + MASK),
    # name-value pairs in text, JSON, env dumps and URLs: password: hunter2, {"secret_key": "..."},
    # client_secret=..., LIVEKIT_API_SECRET=..., ?token=..., &sig=..., X-Amz-Signature=...
    *_name_value(_ALWAYS_SECRET, quoted=1, equals=1, colon=1),
    *_name_value(_SECRET_IF_LONG, quoted=6, equals=6, colon=8),
    # Cookies carry sessions.
    (r"(?i)\b((?:set-)?cookie\s*:\s*)[^\r\n]+", "${1}" + MASK),
    # Bearer tokens anywhere.
    (r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}", "${1}" + MASK),
    # Webhook URLs are credentials in their path: Slack, Discord, Microsoft Teams.
    (r"(?i)(hooks\.slack\.com/(?:services|workflows|triggers)/)[^\s\"'<>\[\]]+", "${1}" + MASK),
    (r"(?i)(discord(?:app)?\.com/api/webhooks/)[^\s\"'<>\[\]]+", "${1}" + MASK),
    (r"(?i)(\.webhook\.office\.com/webhookb2/)[^\s\"'<>\[\]]+", "${1}" + MASK),
    # JSON Web Tokens (LiveKit tokens, temporary tokens).
    (r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}", MASK),
    # 32+ hex-character keys (AssemblyAI API keys are 32 hex characters; session ids are dashed UUIDs).
    # Only the start needs a boundary: a key glued to the next word ("...b1a0expired") is still a key.
    (r"(^|[^0-9A-Za-z])[0-9a-fA-F]{32,}", "${1}" + MASK),
    # Common vendor key prefixes (OpenAI, Stripe, Slack, GitHub, AWS access key ids, Google API keys).
    (r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}", MASK),
    (r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}", MASK),
    (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", MASK),
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}", MASK),
    (r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", MASK),
    (r"\bAIza[0-9A-Za-z_-]{35}\b", MASK),
    # A bare AWS secret access key: exactly 40 characters of base64 (letters, digits, / and +)
    # standing alone (git-secrets' rule, its look-around written as captured neighbours).
    (r"(^|[^A-Za-z0-9/+=])[A-Za-z0-9/+]{40}([^A-Za-z0-9/+=]|$)", "${1}" + MASK + "${2}"),
    # Credentials inside URLs: scheme://user:password@host
    (r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", "${1}" + MASK + "@"),
]

def redact_secrets(text: pl.Expr) -> pl.Expr:
    """The same strings with every secret-looking part replaced by [REDACTED]."""
    for pattern, replacement in PATTERNS:
        text = text.str.replace_all(pattern, replacement)
    return text


#: One regex that matches wherever any pattern would: a cheap first pass, so the
#: replacement chain runs only on the few values that hold something secret-looking.
ANY_SECRET = "|".join(f"(?:{pattern})" for pattern, _ in PATTERNS)


def redact_series(values: pl.Series) -> pl.Series:
    """redact_secrets for a whole column, fast when (as usual) almost nothing matches."""
    flagged = values.str.contains(ANY_SECRET).fill_null(False)
    if not flagged.any():
        return values
    positions = flagged.arg_true()
    cleaned = values.gather(positions).to_frame("v").select(redact_secrets(pl.col("v"))).to_series()
    return values.scatter(positions, cleaned)


def redact_text(text: str) -> str:
    """One Python string redacted: for error messages, job_runs rows, anything built outside a frame."""
    return redact_series(pl.Series([text], dtype=pl.String)).item()


def redact_then_cut(values: pl.Series, limit: int) -> pl.Series:
    """Redact whole texts, then cut them to ``limit`` characters: never the other way round."""
    return redact_series(values).str.slice(0, limit)
