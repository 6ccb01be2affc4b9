"""Secrets never reach the database: redaction of anything that looks like a key.

Applied to every text column before it is stored (closures and rejects alike).
Each pattern keeps the label (``token=``, ``Authorization:``) and replaces the
secret with ``[REDACTED]`` so a reader still sees what was there. Redacting
twice gives the same text as redacting once.

The shapes come from what streaming clients print: the SDKs send the API key
(or a temporary token) in an ``Authorization`` header or a ``token=`` query
parameter of the wss URL; handshake errors and debug traces (websocket-client
``enableTrace``, websockets' ``> Authorization: ...``, aiohttp's header
reprs, Node's ``headers: { Authorization: '...' }``) print them back, and
apps dump their environment (``ASSEMBLYAI_API_KEY=...``, ``LIVEKIT_API_SECRET=...``).
"""

from __future__ import annotations

import polars as pl

MASK = "[REDACTED]"

_VALUE = r"[A-Za-z0-9._~+/=\-]{8,}"  # 8+: long enough for keys, too long for "Bearer" or "None"
_LABELS = r"(?:authorization|proxy-authorization|x-api-key|x-auth-token|api[ _-]?key|apikey|api[_-]?token|access[_-]?token)"

# (pattern, replacement); Rust regex syntax as polars uses it. Order matters: the
# labelled forms run first so the label survives, the bare shapes catch the rest.
PATTERNS: list[tuple[str, str]] = [
    # Header-like and field-like labels, any quoting: Authorization: <key>, 'Authorization': 'Bearer <jwt>',
    # "x-api-key": "<key>", apiKey: '<key>', api_key='<key>' (pydantic reprs), Invalid API key: <key>.
    (rf"(?i)({_LABELS}[\"']?\s*[:=]\s*[\"']?(?:bearer\s+|basic\s+|token\s+)?){_VALUE}", "${1}" + MASK),
    # name=value pairs in URLs, env dumps and key=value logs: token=, access_token=, temp_token=,
    # key=, secret=, password=, ASSEMBLYAI_API_KEY=, LIVEKIT_API_SECRET=, client_secret= ...
    # (a value never starts with "[", so an already masked value is left alone)
    (r"(?i)\b((?:[a-z0-9]+_)*(?:token|key|credentials?))=[^\s&\"',;)}\[\]]{6,}", "${1}=" + MASK),
    (r"(?i)\b((?:[a-z0-9]+_)*(?:secret|password|passwd|pwd))=[^\s&\"',;)}\[\]]+", "${1}=" + MASK),
    # JSON / JS object fields: "token": "...", secret: '...', "password": "..."
    (r"(?i)([\"']?(?:[a-z0-9]+_)*(?:token|secret|password)[\"']?\s*:\s*[\"'])[^\"'\[][^\"']{3,}", "${1}" + MASK),
    # Cookies carry sessions.
    (r"(?i)\b((?:set-)?cookie\s*:\s*)[^\r\n]+", "${1}" + MASK),
    # Bearer tokens anywhere.
    (r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}", "${1}" + MASK),
    # JSON Web Tokens (LiveKit tokens, temporary tokens).
    (r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{4,}", MASK),
    # 32+ hex-character keys (AssemblyAI API keys are 32 hex characters; session ids are dashed UUIDs).
    (r"\b[0-9a-fA-F]{32,}\b", MASK),
    # Common vendor key prefixes (OpenAI, Stripe, Slack, GitHub, AWS access key ids, Google API keys).
    (r"\b(?:sk|pk|rk)-[A-Za-z0-9_-]{16,}", MASK),
    (r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}", MASK),
    (r"\bxox[abprs]-[A-Za-z0-9-]{10,}", MASK),
    (r"\bgh[pousr]_[A-Za-z0-9]{30,}", MASK),
    (r"\bAKIA[0-9A-Z]{16}\b", MASK),
    (r"\bAIza[0-9A-Za-z_-]{35}\b", MASK),
    # Credentials inside URLs: scheme://user:password@host
    (r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]+:)[^/\s@]+@", "${1}" + MASK + "@"),
]


def redact_secrets(text: pl.Expr) -> pl.Expr:
    """The same strings with every secret-looking part replaced by [REDACTED]."""
    for pattern, replacement in PATTERNS:
        text = text.str.replace_all(pattern, replacement)
    return text


def redact_string(text: str) -> str:
    """redact_secrets for one Python string (for messages built outside a frame)."""
    return pl.select(redact_secrets(pl.lit(text, pl.String))).item()


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
