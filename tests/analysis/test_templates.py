"""Reason templates: numbers, ids and client content masked, so reasons group by what they mean."""

import duckdb
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closewatch.summary_views import REASON_TEMPLATE_MACRO
from closewatch.analysis.templates import template_expr, templates_of

CASES = [
    ("Input duration violation: 1200 ms. Expected between 50 and 1000 ms", "Input duration violation: <n> ms. Expected between <n> and <n> ms"),
    ("Audio Transmission Rate Exceeded: Received 2.1 sec. audio in 1.0 sec", "Audio Transmission Rate Exceeded: Received <n> sec. audio in <n> sec"),
    ('Invalid JSON: {"type": "Termin', "Invalid JSON: …"),
    ("Invalid Message Type: KeepAlive", "Invalid Message Type: …"),
    ("Invalid Message: []", "Invalid Message: …"),
    ('Session failed: {"error": 12}', "Session failed: {…}"),
    ("rejected [1, 2, 3]", "rejected […]"),
    ("Unauthorized Connection: [REDACTED] is not valid", "Unauthorized Connection: [REDACTED] is not valid"),
    ("session 3f2a9c1e-1111-2222-3333-444455556666 expired", "session <id> expired"),
    ("key sk_live_abc123 revoked", "key <id> revoked"),
    ("model 'universal-streaming-beta' gone, it's 'over'", "model '…' gone, it's '…'"),
    ('model "x" gone', 'model "…" gone'),
    ("  lots   of\tspace\n", "lots of space"),
    ("Session Expired: Maximum session duration exceeded", "Session Expired: Maximum session duration exceeded"),
    ("", None),
    ("   ", None),
    (None, None),
]


@pytest.mark.parametrize(("reason", "template"), CASES)
def test_template(reason, template):
    frame = templates_of(pl.Series([reason], dtype=pl.String))
    assert frame.row(0, named=True) == {"close_reason": reason, "template": template}


def test_templates_of_computes_each_distinct_reason_once():
    reasons = pl.Series(["Input duration violation: 1200 ms"] * 1000 + ["Input duration violation: 1300 ms"] * 1000)
    frame = templates_of(reasons)
    assert frame.height == 2
    assert frame["template"].unique().to_list() == ["Input duration violation: <n> ms"]


@pytest.fixture(scope="module")
def sql():
    con = duckdb.connect()
    con.execute(REASON_TEMPLATE_MACRO)
    yield con
    con.close()


@pytest.mark.parametrize(("reason", "template"), CASES)
def test_the_sql_macro_gives_the_same_templates(sql, reason, template):
    assert sql.execute("SELECT reason_template(?)", [reason]).fetchone()[0] == template


reason_texts = st.text(alphabet=st.sampled_from(list("ab xyzIK019.:-_{}[]\"'\t\n\v\u00a0Üé")), max_size=40)


@settings(max_examples=200, deadline=None)
@given(reason_texts)
def test_polars_and_sql_agree_on_any_text(sql, reason):
    ours = templates_of(pl.Series([reason], dtype=pl.String))["template"][0]
    assert sql.execute("SELECT reason_template(?)", [reason]).fetchone()[0] == ours


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([c[0] for c in CASES if c[0]]), st.integers(0, 10**6), st.integers(0, 10**6))
def test_reasons_differing_only_in_numbers_share_a_template(reason, a, b):
    texts = [f"{reason} after {a} ms", f"{reason} after {b} ms"]
    assert pl.select(template_expr(pl.Series(texts))).to_series().n_unique() == 1
