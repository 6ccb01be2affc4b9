"""Text logs as clients write them: detect, parse, and fold each session close into one event.

The per-client knowledge (format strings, roles, renderers) is data in
``ingest.clients``; this module is the engine that applies it to batches of
lines with polars expressions:

1. every line: strip colour codes, flag traceback/continuation lines (a
   traceback is skipped as part of the record it hangs under), and pre-filter
   with the literal anchors of the format's patterns (Aho-Corasick);
2. candidate lines only (a small share of a real log): read the envelope
   (timestamp, logger, thread) and the first pattern that matches; lines a
   client clearly meant as a close but that cannot be read become rejects;
3. at the end of the input, the sequential rules run as window expressions
   over the candidates: an error report folds into the close that follows it,
   an echo into the report before it, a Begin line lends its session id to
   the next close only when that is unambiguous.

Candidates are buffered until the end (they are a few per cent of the lines);
the cross-batch state of step 1 is two values.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import polars as pl
from closewatch.ingest import clients
from closewatch.ingest.clients import CLIENTS, GENERIC_CLIENT, Client, Pattern
from closewatch.ingest.formats import (
    Format,
    LineBatches,
    Parsed,
    ParseOptions,
    conform,
    empty_events,
    empty_rejects,
)
from closewatch.ingest.timestamps import parse_text

#: Lines of one close (error, echo, close) further apart than this are different closes.
FOLD_WINDOW_S = 10.0

# Envelopes: the part of a line before the message, tried in order (the first that matches wins).
_TS = r"\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?"
_LVL = r"DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL|FATAL|TRACE|SUCCESS"
_NAME = r"[A-Za-z_][\w.\-]*"
_SEP = r"(?:\s*[-|:]\s*|\s+)"
ENVELOPES: tuple[tuple[str, str], ...] = (
    # loguru's default: Delgan/loguru loguru/_defaults.py LOGURU_FORMAT
    ("loguru", r"^(?P<ts>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) \| (?P<level>[A-Z]+) *\| (?P<logger>[\w.]+):"),
    # logging.BASIC_FORMAT "%(levelname)s:%(name)s:%(message)s" (no timestamp)
    ("python-default", rf"^(?P<level>{_LVL}):(?P<logger>[^:\s]*):"),
    # "%(asctime)s [%(threadName)s] %(levelname)s %(name)s: %(message)s"
    ("python-thread", rf"^\[?(?P<ts>{_TS})\]?{_SEP}\[(?P<ctx>[^\]]+)\]{_SEP}\[?(?P<level>{_LVL})\]?{_SEP}(?P<logger>{_NAME})"),
    # asctime, level, name with spaces, brackets, dashes or pipes between (LiveKit's dev layout too)
    ("python-level-name", rf"^\[?(?P<ts>{_TS})\]?{_SEP}\[?(?P<level>{_LVL})\]?{_SEP}\[?(?P<logger>{_NAME})\]?(?:{_SEP}|:)"),
    # asctime, name, level ("%(asctime)s - %(name)s - %(levelname)s - %(message)s")
    ("python-name-level", rf"^\[?(?P<ts>{_TS})\]?{_SEP}\[?(?P<logger>{_NAME})\]?{_SEP}\[?(?P<level>{_LVL})\]?(?:{_SEP}|:)"),
    # anything else that starts with a timestamp (Node apps, browser exports)
    ("timestamp", rf"^\[?(?P<ts>{_TS})\]?(?:\s|$)"),
    # a JSON line in the middle of a text log: its time field, by the aliases structured logs use
    ("json", r'^\s*\{.*?"(?:ts|timestamp|time|@timestamp|asctime)"\s*:\s*"?(?P<ts>[^",}]+)'),
)
_ENVELOPE_FIELDS = ("ts", "level", "logger", "ctx")

_ANSI = r"\x1b\[[0-9;]*[A-Za-z]"
_TB_MARKERS = ("Traceback (most recent call last)", "During handling of the above exception",
               "The above exception was the direct cause")
_EXCEPTION_LINE = r"^[A-Za-z_][\w.]*(?::\s|$)"
_CLIENT_TOKEN = r"(?:(?:^|\s)(?:client(?:_id)?|tenant)=(?P<c1>[^\s,;\"]+)|\"client(?:_id)?\": \"(?P<c2>[^\"]+)\")"
_CLIENT_STRIP = r"\s+(?:client(?:_id)?|tenant)=[^\s,;\"]+"
_FIELDS = ("code", "reason", "session", "aud", "sdur", "http", "inst")
_KNOWN = "(?i)(?:" + "|".join(clients.STRONG_REASONS + clients.WEAK_REASONS + clients.NETWORK_TEXTS) + ")"
_DEFAULT_INSTANCE = r"^[A-Za-z]+#\d+$"
_CODE_WORD = r"(?i)\b(?:close[ _]?code|code|status)[\"']?\s*[=:]?\s*[\"']?(?:10(?:0[0-9]|1[0-5])|3\d{3}|4\d{3})\b"
_ROLE_RANK = {"C": 0, "E": 1, "A": 2, "G": 3, "T": 4, "B": 5}


# --------------------------------------------------------------------------
# A format's compiled view of its client table
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """What the engine needs from one format: its patterns in priority order and pre-filter literals."""

    name: str
    patterns: tuple[Pattern, ...]
    anchors: tuple[str, ...]
    phrases: tuple[str, ...] = ()  # case-insensitive pre-filter literals (generic fallback)
    signatures: tuple[str, ...] = ()
    own: int | None = None  # how many of ``patterns`` are the client's own (the rest, the fallback, do not sniff)

    @property
    def sniffing(self) -> tuple[Pattern, ...]:
        return self.patterns[: self.own] if self.own is not None else self.patterns


def _spec_of(client: Client) -> Spec:
    """The client's own patterns, then the generic fallback: a line of the application itself that names
    a close closewatch knows ("Connection closed: 1008 - Unauthorized ...", a JSON line in the middle)
    is read too, and folds into the client's report of the same close like any echo."""
    anchors = tuple(sorted({p.anchor for p in client.patterns if p.anchor}))
    return Spec(client.name, client.patterns + GENERIC_CLIENT.patterns, anchors,
                phrases=clients.STRONG_REASONS + clients.WEAK_REASONS, signatures=client.signatures, own=len(client.patterns))


def _generic_spec() -> Spec:
    """Every client's patterns, then the fallback on known reason texts."""
    patterns = tuple(p for c in CLIENTS.values() for p in c.patterns) + GENERIC_CLIENT.patterns
    anchors = tuple(sorted({p.anchor for p in patterns if p.anchor}))
    return Spec("generic", patterns, anchors, phrases=clients.STRONG_REASONS + clients.WEAK_REASONS)


# --------------------------------------------------------------------------
# Step 1 and 2: per batch
# --------------------------------------------------------------------------


@dataclass
class _State:
    """What one batch hands the next: the kind of the last unindented line and the last record's line."""

    last_was_traceback: bool = False
    last_owner: int | None = None
    lines: int = 0
    candidates: list[pl.DataFrame] = field(default_factory=list)
    exceptions: list[pl.DataFrame] = field(default_factory=list)
    rejects: int = 0


def _clean_text(raw: pl.Series) -> pl.Series:
    """The line without colour codes and trailing whitespace; each pass only runs when a line needs it."""
    text = raw
    if raw.str.contains("\x1b", literal=True).any():  # colour codes are rare
        text = text.str.replace_all(_ANSI, "")
    if text.str.contains(r"\s$").any():  # so is trailing whitespace (line endings are already gone)
        text = text.str.strip_chars_end()
    return text.alias("text")


def _flag_lines(batch: pl.DataFrame, spec: Spec, state: _State) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The batch's candidate lines (source_line, text) and its traceback exception lines (owner, text).

    A record's own lines are unindented and not empty; the rest (indented
    lines, traceback markers, and the exception line that ends a traceback)
    continue the record before them. Only the first record line after a
    marker can be an exception line, so the costly tests run on those few
    rows, located with numpy over the batch's flags.
    """
    text = _clean_text(batch["raw"])
    lines = batch["source_line"].to_numpy()
    indented = (text.str.starts_with(" ") | text.str.starts_with("\t")).to_numpy()
    empty = (text.str.len_bytes() == 0).to_numpy()
    marker = np.zeros(text.len(), dtype=bool)
    for m in _TB_MARKERS:
        marker |= text.str.starts_with(m).to_numpy()
    own = np.flatnonzero(~empty & ~indented)  # record lines: markers, exception lines and records proper
    kinds = marker[own]
    after_tb = np.empty(own.size, dtype=bool)
    if own.size:
        after_tb[0] = state.last_was_traceback
        after_tb[1:] = kinds[:-1]
        state.last_was_traceback = bool(kinds[-1])
    maybe = own[after_tb & ~kinds]
    exception = np.zeros(text.len(), dtype=bool)
    if maybe.size:
        hits = text.gather(maybe).str.contains(_EXCEPTION_LINE).to_numpy()
        exception[maybe[hits]] = True
    record = ~empty & ~indented & ~marker & ~exception
    exc_rows = _owned(lines, record, np.flatnonzero(exception), text, state)
    records = np.flatnonzero(record)
    if records.size:
        state.last_owner = int(lines[records[-1]])
    if spec.phrases:  # one Aho-Corasick pass for the anchors and the reason phrases
        hit = text.str.contains_any(list(spec.anchors + spec.phrases), ascii_case_insensitive=True)
    elif spec.anchors:
        hit = text.str.contains_any(list(spec.anchors))
    else:
        hit = pl.Series([False] * text.len())
    chosen = hit.to_numpy() & record
    cands = pl.DataFrame({"source_line": batch["source_line"], "text": text}).filter(pl.Series(chosen))
    return cands, exc_rows


def _owned(lines: np.ndarray, record: np.ndarray, exceptions: np.ndarray, text: pl.Series, state: _State) -> pl.DataFrame:
    """Exception lines with the record line they hang under (the last record line before them)."""
    if exceptions.size == 0:
        return pl.DataFrame(schema={"owner": pl.Int64, "text": pl.String})
    records = np.flatnonzero(record)
    before = np.searchsorted(records, exceptions) - 1
    owners = [int(lines[records[i]]) if i >= 0 else state.last_owner for i in before]
    return pl.DataFrame({"owner": owners, "text": text.gather(exceptions)}, schema={"owner": pl.Int64, "text": pl.String})


def _wrap(regex: str) -> str:
    """An outer group that is non-null exactly when the regex matched."""
    return f"(?P<m>{regex})"


def _first_match(frame: pl.DataFrame, regexes: list[str], fields: tuple[str, ...],
                 masks: list[pl.Series] | None = None) -> pl.DataFrame:
    """For rows of ``frame`` (source_line, text): the index of the first regex that matches, and its fields.

    A regex only runs on the rows no earlier regex took (and, given ``masks``,
    on the rows its mask allows), so a row pays for few of them. Rows nothing
    matches are left out.
    """
    taken = pl.Series([False] * frame.height)
    rows = frame.select("source_line", "text").with_row_index("_row")
    parts = []
    for index, regex in enumerate(regexes):
        mask = ~taken if masks is None else masks[index] & ~taken
        if not mask.any():
            continue
        got = rows.filter(mask).select("_row", "source_line", g=pl.col("text").str.extract_groups(_wrap(regex)))
        got = got.filter(pl.col("g").struct.field("m").is_not_null())
        if got.height == 0:
            continue
        taken = taken.scatter(got["_row"], True)
        parts.append(got.select(
            "source_line", pl.lit(index, pl.Int32).alias("index"),
            *[(pl.col("g").struct.field(name) if f"(?P<{name}>" in regex else pl.lit(None, pl.String)).alias(name)
              for name in fields],
        ))
    if not parts:
        return pl.DataFrame(schema={"source_line": pl.Int64, "index": pl.Int32, **{n: pl.String for n in fields}})
    return pl.concat(parts)


def _match_patterns(clean: pl.DataFrame, spec: Spec) -> pl.DataFrame:
    """The first pattern (in priority order) each candidate matches, and its fields; a pattern only
    looks at the rows that contain its anchor literal (found for all anchors in one pass)."""
    text = clean["text"]
    anchors = sorted({p.anchor for p in spec.patterns if p.anchor})
    found = _anchor_bits(text, anchors)
    masks: dict[str, pl.Series] = {}
    for pattern in spec.patterns:
        if pattern.anchor not in masks:
            masks[pattern.anchor] = (
                pl.Series(found & (1 << anchors.index(pattern.anchor)) != 0) if pattern.anchor
                else text.str.contains_any(list(clients.STRONG_REASONS + clients.WEAK_REASONS), ascii_case_insensitive=True)
            )
    matched = _first_match(clean, [p.regex for p in spec.patterns], _FIELDS, [masks[p.anchor] for p in spec.patterns])
    return matched.rename({"index": "pid"})


def _anchor_bits(text: pl.Series, anchors: list[str]) -> np.ndarray:
    """Per row, which anchors it contains, as bits (anchor i is bit i): one Aho-Corasick pass, and then a
    pattern's mask is one integer test instead of a search of each row's list of anchors."""
    if not anchors or text.len() == 0:
        return np.zeros(text.len(), dtype=np.int64)
    assert len(anchors) < 63, "anchors are bits of an int64"
    found = text.str.extract_many(anchors, overlapping=True)
    flat = found.explode(empty_as_null=False).replace_strict(
        {a: 1 << i for i, a in enumerate(anchors)}, return_dtype=pl.Int64).to_numpy()
    counts = found.list.len().to_numpy().astype(np.int64)
    bits = np.zeros(counts.size, dtype=np.int64)
    some = counts > 0
    if some.any():  # each row's anchors are a run of ``flat``; OR each run (rows without any keep 0)
        starts = np.cumsum(counts) - counts
        bits[some] = np.bitwise_or.reduceat(flat, starts[some])
    return bits


def _client_tokens(cands: pl.DataFrame) -> pl.DataFrame:
    """``client`` from a ``client=``/``tenant=`` token an app added to its line, and the text without it
    (so the client's own format strings still match). Only the few lines that have one pay for it."""
    has = cands["text"].str.contains_any(["client=", "client_id=", "tenant=", '"client'])
    plain = cands.filter(~has).with_columns(client=pl.lit(None, pl.String))
    tagged = cands.filter(has)
    if tagged.height == 0:
        return plain
    tagged = tagged.with_columns(
        tok=pl.col("text").str.extract_groups(_CLIENT_TOKEN),
        text=pl.col("text").str.replace_all(_CLIENT_STRIP, ""),
    ).with_columns(
        client=pl.coalesce(pl.col("tok").struct.field("c1"), pl.col("tok").struct.field("c2")),
    ).drop("tok")
    return pl.concat([plain, tagged]).sort("source_line")


def _read_candidates(cands: pl.DataFrame, spec: Spec, options: ParseOptions) -> pl.DataFrame:
    """Envelope and pattern fields of candidate lines (source_line, text) that match a pattern or a reject marker."""
    if cands.height == 0:
        return cands
    clean = _client_tokens(cands)
    rows = clean.join(_match_patterns(clean, spec), on="source_line", how="left")
    markers = [p.marker for p in spec.patterns if p.marker]
    marked = pl.any_horizontal([pl.col("text").str.contains(m) for m in markers]) if markers else pl.lit(False)
    unmatched = rows.filter(pl.col("pid").is_null())
    unmatched = unmatched.with_columns(marked=marked).filter("marked")
    rows = pl.concat([rows.filter(pl.col("pid").is_not_null()).with_columns(marked=pl.lit(False)), unmatched])
    if rows.height == 0:
        return rows
    rows = rows.sort("source_line")
    envelope = _first_match(rows, [rx for _, rx in ENVELOPES], _ENVELOPE_FIELDS).drop("index")
    rows = rows.join(envelope.rename({"ts": "ts_text"}), on="source_line", how="left")
    return _attributes(rows, spec, options)


def _pattern_table(spec: Spec) -> pl.DataFrame:
    """The patterns' static attributes as a frame, joined to rows by pattern index."""
    pats = spec.patterns
    return pl.DataFrame({
        "pid": list(range(len(pats))),
        "role": [p.role for p in pats],
        "pattern": [f"{spec.name}:{p.name}" for p in pats],
        "standalone": [p.standalone for p in pats],
        "forward": [p.forward for p in pats],
        "fixed_code": [p.code for p in pats],
        "default_code": [p.default_code for p in pats],
        "quality": [p.quality for p in pats],
    }, schema={"pid": pl.Int32, "role": pl.String, "pattern": pl.String, "standalone": pl.String, "forward": pl.Boolean,
               "fixed_code": pl.Int64, "default_code": pl.Int64, "quality": pl.Int64})


def _attributes(rows: pl.DataFrame, spec: Spec, options: ParseOptions) -> pl.DataFrame:
    """Typed fields, the pattern's static attributes, and why a row is a reject (null if it is not)."""
    rows = rows.join(_pattern_table(spec), on="pid", how="left")
    rows = _fallback_fields(_timestamps(rows, options.tz))
    rows = _codes(_reasons(rows))
    return rows.with_columns(
        ts=pl.col("_ts"),
        session=pl.when(pl.col("session").is_in(["None", "null", "undefined"])).then(None).otherwise(pl.col("session")),
        client=pl.coalesce("client", pl.when(~pl.col("inst").str.contains(_DEFAULT_INSTANCE)).then(pl.col("inst"))),
        aud=pl.col("aud").cast(pl.Float64, strict=False),
        sdur=pl.col("sdur").cast(pl.Float64, strict=False),
    ).select(
        "source_line", "text", "ts", pl.col("ctx"), "logger", "role", "pattern", "standalone", "forward",
        "default_code", "close_code", "close_reason", "q", "session", "client", "aud", "sdur", "text_head", "reject",
    )


def _reasons(rows: pl.DataFrame) -> pl.DataFrame:
    """The reason as logged (unquoted); a client's stand-in for "no reason" is NULL, and a reason that only
    points elsewhere ("See Error message for details") gets the lowest quality."""
    reason = pl.col("reason").str.strip_chars().str.replace(r'^"(.*)"$', "$1").str.replace(r"^'(.*)'$", "$1")
    rows = rows.with_columns(reason=reason.str.replace_all(r"\\n\s*", " "))
    return rows.with_columns(
        close_reason=pl.when(pl.col("reason").str.contains(clients.PLACEHOLDER_REASONS)).then(None).otherwise("reason"),
        q=pl.when(pl.col("reason").str.contains(clients.POOR_REASONS)).then(0).otherwise("quality"),
    )


def _codes(rows: pl.DataFrame) -> pl.DataFrame:
    """``close_code`` from the pattern's own code, the logged code or an HTTP status; ``reject`` says why
    a line that is clearly a close cannot be read (no layout match, a code that is not a number)."""
    text = pl.col("code").str.strip_chars()
    number = text.cast(pl.Int64, strict=False)
    null_word = text.is_null() | text.is_in(list(clients.NULL_CODES))
    bad = ~null_word & number.is_null()
    out_of_range = ~null_word & number.is_not_null() & ((number < 100) | (number > 4999))
    return rows.with_columns(
        close_code=pl.coalesce("fixed_code", pl.when(~bad & ~out_of_range).then(number), pl.col("http").cast(pl.Int64, strict=False)),
        reject=pl.when(pl.col("pid").is_null())
        .then(pl.lit("looks like a close line of this client, but its layout does not match the client's format"))
        .when(bad).then(pl.format("close code '{}' is not a number", text))
        .when(out_of_range).then(pl.format("close code {} is outside the WebSocket and HTTP ranges", number)),
    )


def _fallback_fields(rows: pl.DataFrame) -> pl.DataFrame:
    """Fallback (G) lines: the code and session written near the reason, and ``text_head``, what the line
    says before its reason (it tells an SDK line from an app's echo of it). Only those rows pay for it."""
    is_g = pl.col("role") == "G"
    others = rows.filter(~is_g.fill_null(False)).with_columns(text_head=pl.lit(None, pl.String))
    fallback = rows.filter(is_g.fill_null(False))
    if fallback.height == 0:
        return others
    fallback = fallback.with_columns(
        code=pl.coalesce("code", pl.col("text").str.extract(clients.GENERIC_CODE, 1)),
        session=pl.coalesce("session", pl.col("text").str.extract(clients.GENERIC_SESSION, 1)),
        text_head=pl.col("text").str.slice(0, pl.col("text").str.find(pl.col("reason"), literal=True))
        .str.replace_all(r"[0-9a-fA-F-]{8,}|\d+", "#"),
    )
    return pl.concat([others, fallback]).sort("source_line")


_PLAIN_TS = r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d{1,6})?Z?$"


def _timestamps(rows: pl.DataFrame, tz: str) -> pl.DataFrame:
    """``_ts`` from ``ts_text``: the layouts' own shapes parsed directly (they are nearly all of them),
    anything else through ``ingest.timestamps.parse_text``, which is exhaustive but slower per row."""
    text = pl.col("ts_text")
    plain = text.str.contains(_PLAIN_TS).fill_null(False)
    utc = text.str.ends_with("Z")
    naive = text.str.strip_suffix("Z").str.replace(",", ".", literal=True).str.replace("T", " ", literal=True)
    parsed = naive.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
    fast = (
        pl.when(~plain).then(None)
        .when(utc).then(parsed.dt.replace_time_zone("UTC"))
        .otherwise(parsed.dt.replace_time_zone(tz, ambiguous="earliest", non_existent="null").dt.convert_time_zone("UTC"))
    )
    rows = rows.with_columns(_ts=fast.cast(pl.Datetime("us", "UTC")), _plain=plain)
    slow = rows.filter(~pl.col("_plain") & text.is_not_null())
    if slow.height:
        parsed_slow = slow.select("source_line", _slow=parse_text(text, tz))
        rows = rows.join(parsed_slow, on="source_line", how="left").with_columns(_ts=pl.coalesce("_ts", "_slow")).drop("_slow")
    return rows.drop("_plain")


def _exception_rows(rows: pl.DataFrame) -> pl.DataFrame:
    """Traceback exception lines (owner, text) that name a status, keyed by the record they hang under."""
    if rows.height == 0:
        return pl.DataFrame(schema={"owner": pl.Int64, "exc_code": pl.Int64, "exc_reason": pl.String})
    found = rows.with_columns(g=pl.col("text").str.extract_groups(clients.EXCEPTION_CODE_REGEX))
    code = pl.coalesce([pl.col("g").struct.field(n) for n in ("http1", "http2", "http3", "code1", "code2")])
    code = code.cast(pl.Int64, strict=False)
    return found.select(
        "owner",
        exc_code=pl.when((code >= 100) & (code <= 4999)).then(code),
        # an APIStatusError only wraps the close its record already logged
        exc_reason=pl.when(pl.col("g").struct.field("code1").is_null()).then(pl.col("text").str.replace(r"^[\w.]+:\s*", "")),
    ).filter(pl.col("owner").is_not_null())


def _scan(batch: pl.DataFrame, spec: Spec, options: ParseOptions, state: _State) -> pl.DataFrame:
    """Read one batch; keep its candidates in ``state``; return its rejects."""
    cands, exceptions = _flag_lines(batch, spec, state)
    state.lines += batch.height
    state.exceptions.append(_exception_rows(exceptions))
    rows = _read_candidates(cands, spec, options)
    if rows.height == 0:
        return empty_rejects()
    rejects = rows.filter(pl.col("reject").is_not_null())
    state.candidates.append(rows.filter(pl.col("reject").is_null()).drop("text", "reject"))
    state.rejects += rejects.height
    raw = batch.join(rejects.select("source_line", "reject"), on="source_line", how="inner")
    sentence = pl.col("reject").str.slice(0, 1).str.to_uppercase() + pl.col("reject").str.slice(1)
    return raw.select(
        pl.col("source_line").cast(pl.Int64),
        pl.col("raw"),  # whole: the pipeline redacts, then cuts
        pl.format("{} (format {}).", sentence, pl.lit(spec.name)).alias("reason"),
    )


# --------------------------------------------------------------------------
# Step 3: fold the candidates into events
# --------------------------------------------------------------------------


def _compatible(a: str, b: str) -> pl.Expr:
    """Two lines can describe one close: codes agree (or one is missing, or a 1006 after an HTTP refusal),
    sessions agree, and they are close in time."""
    ca, cb = pl.col(f"close_code{a}"), pl.col(f"close_code{b}")
    sa, sb = pl.col(f"session{a}"), pl.col(f"session{b}")
    ta, tb = pl.col(f"ts{a}"), pl.col(f"ts{b}")
    codes = (ca.is_null() | cb.is_null() | (ca == cb)
             | (ca.is_in([1005, 1006]) & (cb < 1000)) | (cb.is_in([1005, 1006]) & (ca < 1000)))
    sessions = sa.is_null() | sb.is_null() | (sa == sb)
    near = ta.is_null() | tb.is_null() | ((ta - tb).abs() <= pl.duration(seconds=FOLD_WINDOW_S))
    return codes & sessions & near


def _neighbours(cand: pl.DataFrame) -> pl.DataFrame:
    """Each line's next close-or-begin line and previous report line within its thread."""
    k = pl.col("ctx").fill_null("")
    line = pl.col("source_line")
    cand = cand.sort("source_line").with_columns(
        nxt=pl.when(pl.col("role").is_in(["C", "B"])).then(line).shift(-1).backward_fill().over(k),
        prv=pl.when(pl.col("role").is_in(["E", "C", "B", "T"])).then(line).shift(1).forward_fill().over(k),
    )
    info = cand.select(line, "role", "close_code", "session", "ts")
    cand = cand.join(info, left_on="nxt", right_on="source_line", how="left", suffix="_n")
    cand = cand.join(info, left_on="prv", right_on="source_line", how="left", suffix="_p")
    return cand.sort("source_line")


def _targets(cand: pl.DataFrame) -> pl.DataFrame:
    """The line each candidate folds into (itself when it stands alone; null for Begin lines)."""
    role, line = pl.col("role"), pl.col("source_line")
    # a Termination message is followed only by a normal close
    normal_next = (role != "T") | pl.col("close_code_n").is_null() | (pl.col("close_code_n") == 1000)
    fwd_ok = (pl.col("role_n") == "C") & pl.col("forward").fill_null(True) & normal_next & _compatible("", "_n")
    bwd_ok = pl.col("role_p").is_in(["E", "C"]) & _compatible("", "_p")
    first = cand.with_columns(
        target=pl.when(role == "C").then(line)
        .when(role.is_in(["E", "T"]) & fwd_ok).then(pl.col("nxt"))
        .when(role.is_in(["E", "T"])).then(line),
        bwd_ok=bwd_ok, fwd_ok=fwd_ok,
    )
    resolved = first.select(pl.col("source_line").alias("prv"), pl.col("target").alias("prv_target"))
    second = first.join(resolved, on="prv", how="left").with_columns(
        target=pl.when(role.is_in(["A", "G"]) & pl.col("bwd_ok")).then(pl.col("prv_target"))
        .when(role.is_in(["A", "G"]) & pl.col("fwd_ok")).then(pl.col("nxt"))
        .when(role.is_in(["A", "G"])).then(line)
        .otherwise(pl.col("target")),
    ).sort("source_line")
    return _pair_generic_echoes(_one_echo_per_report(second))


def _one_echo_per_report(cand: pl.DataFrame) -> pl.DataFrame:
    """A client echoes a report once ("Closing Session" once per session): a second echo of the same
    shape folded into the same close belongs to another session, so it stands on its own."""
    echo = pl.col("role").is_in(["A", "G"]) & (pl.col("target") != pl.col("source_line"))
    seen = pl.col("source_line").cum_count().over("target", "pattern")
    return cand.with_columns(
        target=pl.when(echo & (seen > 1)).then(pl.col("source_line")).otherwise(pl.col("target"))
    )


def _pair_generic_echoes(cand: pl.DataFrame) -> pl.DataFrame:
    """Fallback lines that found no report: a line and the next one saying the same thing from another
    logger are one close (an SDK line and the app's echo); pairs, never longer chains."""
    if not (cand["role"] == "G").any():
        return cand
    k = pl.col("ctx").fill_null("")
    free = (pl.col("role") == "G") & (pl.col("target") == pl.col("source_line"))
    emitter = pl.col("logger").fill_null("") + "|" + pl.col("text_head").fill_null("")
    frame = cand.with_columns(
        free=free,
        rkey=pl.col("close_reason").str.to_lowercase().str.slice(0, 48),
        emitter=emitter,
    )
    prev = lambda c: pl.col(c).shift(1).over(k)
    link = (
        pl.col("free") & prev("free").fill_null(False) & (pl.col("rkey") == prev("rkey"))
        & (pl.col("emitter") != prev("emitter"))
        & (pl.col("session").is_null() | prev("session").is_null() | (pl.col("session") == prev("session")))
        & (pl.col("close_code").is_null() | prev("close_code").is_null() | (pl.col("close_code") == prev("close_code")))
        & (pl.col("ts").is_null() | prev("ts").is_null()
           | ((pl.col("ts") - prev("ts")).abs() <= pl.duration(seconds=FOLD_WINDOW_S)))
    ).fill_null(False)
    # position of each link in its run of consecutive links: count so far minus the count at the run's start
    count = pl.col("link").cast(pl.Int32).cum_sum().over(k)
    frame = frame.with_columns(link=link).with_columns(count=count).with_columns(
        pos=pl.col("count") - pl.when(~pl.col("link")).then(pl.col("count")).forward_fill().over(k).fill_null(0),
    )
    joined = pl.col("link") & (pl.col("pos") % 2 == 1)
    return frame.with_columns(
        target=pl.when(joined).then(pl.col("source_line").shift(1).over(k)).otherwise(pl.col("target"))
    ).drop("free", "rkey", "emitter", "link", "count", "pos")


def _events(cand: pl.DataFrame) -> pl.DataFrame:
    """One row per close: the close line's place and time, the best code and reason of its group."""
    known = pl.col("close_reason").str.contains(_KNOWN).fill_null(False)
    can_stand = (pl.col("standalone") == "always") | (
        (pl.col("standalone") == "known") & (pl.col("close_code").is_not_null() | known)
    )
    members = cand.filter(pl.col("target").is_not_null()).with_columns(
        can_stand=can_stand,
        rank=pl.col("role").replace_strict(_ROLE_RANK, default=9, return_dtype=pl.Int32),
        qq=pl.when(pl.col("close_reason").is_not_null()).then(pl.col("q")).otherwise(-1),
    )
    heads = members.filter(pl.col("source_line") == pl.col("target")).select(
        pl.col("source_line").alias("target"), pl.col("ts").alias("head_ts"), pl.col("ctx").alias("head_ctx"),
    )
    members = members.with_columns(
        c_only=pl.when(pl.col("role") == "C").then(pl.col("close_code")),
        not_c=pl.when(pl.col("role") != "C").then(pl.col("close_code")),
    )
    # members are in line order, so "first" is the earliest line; the keys make ties go to it too
    shift = 1 << 40
    reason_key = pl.col("qq").cast(pl.Int64) * shift - pl.col("source_line")
    code_key = pl.when(pl.col("not_c").is_not_null()).then(pl.col("rank").cast(pl.Int64) * shift + pl.col("source_line"))
    members = members.sort("source_line").with_columns(reason_key=reason_key, code_key=code_key.fill_null(1 << 62))
    grouped = members.group_by("target").agg(
        is_event=(pl.col("role") == "C").any() | pl.col("can_stand").any(),
        c_code=pl.col("c_only").first(ignore_nulls=True),
        other_code=pl.col("not_c").min_by("code_key"),
        default_code=pl.col("default_code").first(ignore_nulls=True),
        close_reason=pl.col("close_reason").max_by("reason_key"),
        session_id=pl.col("session").first(ignore_nulls=True),
        client_id=pl.col("client").first(ignore_nulls=True),
        audio_duration_s=pl.col("aud").first(ignore_nulls=True),
        session_duration_s=pl.col("sdur").first(ignore_nulls=True),
        last_ts=pl.col("ts").max(),
    ).filter("is_event")
    code = (
        pl.when(pl.col("c_code").is_in([1005, 1006]) & (pl.col("other_code") < 1000)).then(pl.col("other_code"))
        .otherwise(pl.coalesce("c_code", "other_code", "default_code"))
    )
    events = grouped.join(heads, on="target", how="left").with_columns(
        close_code=code.cast(pl.Int32),
        ts=pl.coalesce("head_ts", "last_ts"),
    )
    return events.rename({"target": "source_line", "head_ctx": "ctx"}).sort("source_line")


def _attach_sessions(events: pl.DataFrame, cand: pl.DataFrame) -> pl.DataFrame:
    """A Begin line's session id (and client) goes to the next close of its thread only when exactly one
    session began since the previous close there: anything else is ambiguous and stays null."""
    none = "\x00"  # a Begin line without a client must not inherit the previous one's
    begins = cand.filter(pl.col("role") == "B").select(
        "source_line", "ctx", pl.col("session").fill_null(none).alias("b_session"),
        pl.col("client").fill_null(none).alias("b_client"), is_begin=pl.lit(True),
    )
    stream = pl.concat([
        begins,
        events.select("source_line", "ctx", b_session=pl.lit(None, pl.String), b_client=pl.lit(None, pl.String),
                      is_begin=pl.lit(False)),
    ]).sort("source_line")
    k = pl.col("ctx").fill_null("")
    stream = stream.with_columns(
        begun=pl.col("is_begin").cast(pl.Int32).cum_sum().over(k),
        last_session=pl.col("b_session").forward_fill().over(k),
        last_client=pl.col("b_client").forward_fill().over(k),
    ).filter(~pl.col("is_begin")).with_columns(
        since=(pl.col("begun") - pl.col("begun").shift(1).over(k).fill_null(0)),
    )
    found = stream.select(
        "source_line",
        b_session=pl.when((pl.col("since") == 1) & (pl.col("last_session") != none)).then(pl.col("last_session")),
        b_client=pl.when((pl.col("since") == 1) & (pl.col("last_client") != none)).then(pl.col("last_client")),
    )
    return events.join(found, on="source_line", how="left").with_columns(
        session_id=pl.coalesce("session_id", "b_session"),
        client_id=pl.coalesce("client_id", "b_client"),
    )


def _enrich_from_tracebacks(cand: pl.DataFrame, exceptions: pl.DataFrame) -> pl.DataFrame:
    """A record whose traceback ends in a status (a refused handshake) gets that code and text."""
    if exceptions.height == 0:
        return cand
    per_owner = exceptions.group_by("owner").agg(pl.col("exc_code").drop_nulls().first(), pl.col("exc_reason").last())
    cand = cand.join(per_owner, left_on="source_line", right_on="owner", how="left")
    return cand.with_columns(
        close_code=pl.coalesce("close_code", "exc_code"),
        close_reason=pl.coalesce("close_reason", "exc_reason"),
        q=pl.when(pl.col("close_reason").is_null() & pl.col("exc_reason").is_not_null()).then(0).otherwise(pl.col("q")),
    ).drop("exc_code", "exc_reason")


def fold(candidates: pl.DataFrame, exceptions: pl.DataFrame | None = None) -> pl.DataFrame:
    """Candidates (rows of ``_read_candidates``) to events in EVENT_SCHEMA."""
    if candidates.height == 0:
        return empty_events()
    cand = candidates
    if exceptions is not None:
        cand = _enrich_from_tracebacks(cand, exceptions)
    cand = _targets(_neighbours(cand))
    events = _events(cand)
    if events.height == 0:
        return empty_events()
    events = _attach_sessions(events, cand)
    return conform(events)


# --------------------------------------------------------------------------
# Format entry points
# --------------------------------------------------------------------------


def parse_with(spec: Spec, batches: LineBatches, options: ParseOptions) -> Iterator[Parsed]:
    """Rejects batch by batch as they are found; the events, folded, once the input is read.

    Every line is counted once: ``skipped`` is what became neither an event nor
    a reject (unrelated lines, traceback and continuation lines, and the echo,
    Begin and Termination lines folded into an event), so
    lines = events + rejects + skipped.
    """
    state = _State()
    for batch in batches:
        rejects = _scan(batch, spec, options, state)
        if rejects.height:
            yield Parsed(empty_events(), rejects, 0)
    candidates = [c for c in state.candidates if c.height]
    cand = pl.concat(candidates, how="vertical_relaxed") if candidates else pl.DataFrame()
    exceptions = pl.concat(state.exceptions, how="vertical_relaxed") if state.exceptions else None
    events = fold(cand, exceptions) if cand.height else empty_events()
    skipped = max(0, state.lines - events.height - state.rejects)
    yield Parsed(events, empty_rejects(), skipped)


#: The highest score ``sniff_with`` gives the generic fallback and a client's format (Format.best_sniff).
GENERIC_BEST, CLIENT_BEST = 0.3, 0.85


def sniff_with(spec: Spec, head: list[str]) -> float:
    """How well the first lines fit: a share of lines in this client's shapes, kept below 0.9."""
    lines = [line for line in head if line.strip()]
    if not lines:
        return 0.0
    frame = pl.DataFrame({"text": lines}, schema={"text": pl.String}).with_columns(
        pl.col("text").str.replace_all(_ANSI, "").str.replace_all(_CLIENT_STRIP, "").str.strip_chars_end()
    )
    # a line in a shape several clients share (the docs' Begin and Termination prints) counts for each in part
    hits = frame.select(
        n=pl.max_horizontal([
            pl.col("text").str.contains(p.regex).cast(pl.Float64) / _SHARED.get(p.regex, 1) for p in spec.sniffing
        ]).sum(),
        s=(pl.any_horizontal([pl.col("text").str.contains(sig, literal=True) for sig in spec.signatures]).sum()
           if spec.signatures else pl.lit(0)),
        j=pl.col("text").str.strip_chars_start().str.starts_with("{").sum(),
    ).row(0, named=True)
    if spec.name == "generic":  # a close code named as such counts for the fallback too
        hits["n"] = max(hits["n"], frame.select(pl.col("text").str.contains(_CODE_WORD).sum()).item())
    weight = hits["n"] + 0.5 * hits["s"]
    if weight == 0:
        return 0.0
    if spec.name == "generic":
        score = 0.1 + 0.2 * weight / (weight + 3)
    else:
        score = 0.5 + 0.35 * weight / (weight + 2)
    # weight / (weight + k) < 1: at most GENERIC_BEST and CLIENT_BEST, even rounded
    if hits["j"] > len(lines) / 2:
        score *= 0.5
    return round(score, 4)


def _make_format(client: Client, spec: Spec) -> Format:
    def sniff(head: list[str]) -> float:
        return sniff_with(spec, head)

    def parse(batches: LineBatches, options: ParseOptions) -> Iterator[Parsed]:
        return parse_with(spec, batches, options)

    sniff.__doc__ = f"Score how much the first lines look like a {client.name} log."
    parse.__doc__ = f"Parse a {client.name} log into session-close events."
    return Format(
        name=client.name, description=client.description, example=client.example,
        sniff=sniff, parse=parse, source=client.source, best_sniff=GENERIC_BEST if spec.name == "generic" else CLIENT_BEST,
    )


#: How many clients print each line shape.
_SHARED = Counter(p.regex for client in CLIENTS.values() for p in client.patterns)
SPECS: dict[str, Spec] = {name: _spec_of(client) for name, client in CLIENTS.items()}
SPECS["generic"] = _generic_spec()
FORMATS: dict[str, Format] = {
    name: _make_format(CLIENTS.get(name, GENERIC_CLIENT), spec) for name, spec in SPECS.items()
}

#: format name -> render(event, layout=None) -> list of log lines, with the same format strings the parser reads.
#: A rendered close parses back to its code, reason and session, except where the client itself
#: loses them (see each renderer: e.g. websocket-client reports a lost connection as Status=None,
#: an empty reason comes back as the SDK's own stand-in text).
RENDERERS = {name: clients._untimed(fn) for name, fn in clients.RENDERERS_TIMED.items()}
RENDERERS_TIMED = clients.RENDERERS_TIMED

