"""Reason templates: a close reason with its variable parts masked.

"Input duration violation: 1200 ms" and "... 1500 ms" are the same problem;
"Invalid JSON: {"type": ...}" differs only in the body the client sent. A
template masks numbers, ids and JSON bodies so that reasons group by what
they mean: the top-templates summary counts them, and ``new_reason`` reports
a template the store has never seen before.

Reasons repeat a lot (millions of closures, a few thousand distinct texts),
so templates are computed on distinct reasons and joined back, never per row.
"""

from __future__ import annotations

import polars as pl

MAX_TEMPLATE_CHARS = 200

# (pattern, replacement), applied in order; Rust regex syntax (polars). Word
# boundaries, word characters and spaces are ASCII-only, as in DuckDB's RE2,
# so the SQL twin in analysis/summaries.py gives the same templates.
_B = r"(?-u:\b)"
MASKS: tuple[tuple[str, str], ...] = (
    # What follows "Invalid Message Type:", "Invalid JSON:" or "Invalid Message:" is the client's own message.
    (r"(?i)^([\t\n\f\r ]*invalid (?:message type|json|message)[\t\n\f\r ]*:).*$", "${1} …"),
    # A JSON object runs to the end of the reason: the close frame cuts it anywhere.
    (r"\{.*$", "{…}"),
    # A JSON array: '[' followed by what can start a JSON value (not "[REDACTED]").
    (r"\[[\t\n\f\r ]*[\[\{\"0-9\]\-].*$", "[…]"),
    (r'"[^"]*"', '"…"'),
    # Single quotes only when they open a quote, not in "it's".
    (r"(?-u:\B)'[^']*'", "'…'"),
    (rf"(?i){_B}[0-9a-f]{{8}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{4}}-[0-9a-f]{{12}}{_B}", "<id>"),
    # Plain numbers, with decimals: durations, rates, counts, codes in text.
    (rf"{_B}[0-9]+(?:\.[0-9]+)?{_B}", "<n>"),
    # Any remaining word with a digit in it is an id: sess_9f8a7b, key-12ab, 0x1f.
    (rf"{_B}[A-Za-z0-9_\-]*[0-9][A-Za-z0-9_\-]*{_B}", "<id>"),
    (r"[\t\n\f\r ]+", " "),
)


def template_expr(reason: pl.Expr) -> pl.Expr:
    """The template of each reason; NULL for a NULL or blank reason (nothing to group)."""
    expr = reason
    for pattern, replacement in MASKS:
        expr = expr.str.replace_all(pattern, replacement, literal=False)
    expr = expr.str.strip_chars(" ").str.slice(0, MAX_TEMPLATE_CHARS)
    return pl.when(expr.str.len_chars() > 0).then(expr)


def templates_of(reasons: pl.Series | pl.LazyFrame | pl.DataFrame, column: str = "close_reason") -> pl.DataFrame:
    """A (close_reason, template) row for each distinct reason given."""
    if isinstance(reasons, pl.Series):
        frame = reasons.rename(column).to_frame().lazy()
    else:
        frame = reasons.lazy().select(column)
    return (
        frame.unique()
        .with_columns(template=template_expr(pl.col(column).cast(pl.String)))
        .collect()
    )
