"""The close-code catalog (data) and the polars classifier that applies it."""

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from closewatch.analysis.catalog import (
    CATEGORIES,
    Catalog,
    catalog_table,
    classify,
    load_catalog,
)
from closewatch.analysis.errors import CatalogError
from closewatch.errors import ClosewatchError


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def frame(*pairs, dtype=pl.Int32) -> pl.DataFrame:
    codes, reasons = zip(*pairs, strict=True) if pairs else ((), ())
    return pl.DataFrame(
        {"close_code": list(codes), "close_reason": list(reasons)},
        schema={"close_code": dtype, "close_reason": pl.String},
    )


def one(catalog, code, reason) -> dict:
    return classify(frame((code, reason)), catalog).row(0, named=True)


SEE_ERROR = "See Error message for details"

CASES = [
    # current v3
    (1000, None, "normal"),
    (1000, "", "normal"),
    (3005, "Session Cancelled: An error occurred", "server_error"),
    (3005, None, "server_error"),
    (3005, SEE_ERROR, "server_error"),
    (3006, "Invalid Message Type: Foo", "invalid_message"),
    (3006, 'Invalid JSON: {"type":', "invalid_message"),
    (3006, "Invalid Message: []", "invalid_message"),
    (3006, SEE_ERROR, "invalid_message"),
    (3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms", "input_duration_violation"),
    (3007, "Audio Transmission Rate Exceeded: Received 2.1 sec. audio in 1.0 sec", "audio_rate_exceeded"),
    (3008, "Session Expired: Maximum session duration exceeded", "session_expired"),
    (3008, SEE_ERROR, "session_expired"),
    (3009, "Unauthorized Connection: Too many concurrent sessions", "concurrency_limit"),
    (1008, "Unauthorized Connection: Missing Authorization header", "auth_failed"),
    (1008, "Unauthorized Connection: Invalid API key", "auth_failed"),
    (1008, "Unauthorized Connection: Invalid temporary token", "auth_failed"),
    (1008, "Unauthorized Connection: Insufficient balance", "account_issue"),
    (1008, "Unauthorized connection: account disabled", "account_issue"),
    # early v3: every error was 3005, told apart by reason text
    (3005, "Session Expired: Maximum session duration exceeded", "session_expired"),
    (3005, "Input duration violation: 20 ms. Expected between 50 and 1000 ms", "input_duration_violation"),
    (3005, "Invalid Message Type: Foo", "invalid_message"),
    (3005, "Invalid JSON: not json", "invalid_message"),
    (3005, "Invalid Message: []", "invalid_message"),
    (3005, "Audio Transmission Rate Exceeded: Received 3 sec. audio in 1 sec", "audio_rate_exceeded"),
    (1008, "Unauthorized Connection: Too many concurrent sessions", "concurrency_limit"),
    (1008, "Unauthorized connection: Too many concurrent sessions", "concurrency_limit"),
    # legacy v2
    (4000, "Sample rate must be a positive integer", "protocol_error"),
    (4001, "Not Authorized", "auth_failed"),
    (4002, "Insufficient Funds", "account_issue"),
    (4003, None, "account_issue"),
    (4004, "Session not found", "session_conflict"),
    (4008, "Session Expired", "session_expired"),
    (4010, "Session previously closed", "session_conflict"),
    (4029, "Client sent audio too fast", "audio_rate_exceeded"),
    (4030, None, "session_conflict"),
    (4031, "Session idle for too long", "idle_timeout"),
    (4032, "Audio duration is too short", "input_duration_violation"),
    (4033, "Audio duration is too long", "input_duration_violation"),
    (4034, "Audio too small to transcode", "input_duration_violation"),
    (4100, None, "invalid_message"),
    (4101, None, "invalid_message"),
    (4102, None, "concurrency_limit"),
    (4103, None, "session_conflict"),
    (4104, "Could not parse word boost parameter", "invalid_message"),
    # standard WebSocket codes
    (1001, None, "going_away"),
    (1002, None, "protocol_error"),
    (1003, None, "invalid_message"),
    (1004, None, "protocol_error"),
    (1005, None, "network_abnormal"),
    (1006, None, "network_abnormal"),
    (1007, None, "invalid_message"),
    (1008, SEE_ERROR, "auth_failed"),
    (1009, None, "protocol_error"),
    (1010, None, "protocol_error"),
    (1011, None, "server_error"),
    (1012, None, "going_away"),
    (1013, None, "concurrency_limit"),
    (1014, None, "server_error"),
    (1015, None, "network_abnormal"),
    # HTTP status of a failed upgrade
    (401, None, "auth_failed"),
    (403, None, "auth_failed"),
    (429, None, "concurrency_limit"),
    (500, None, "server_error"),
    (502, None, "server_error"),
    (503, None, "server_error"),
    (504, None, "server_error"),
    # no code at all
    (None, "[Errno 104] Connection reset by peer", "network_abnormal"),
    (None, "connection lost", "network_abnormal"),
    (None, "timed out", "network_abnormal"),
    (None, "EOF occurred in violation of protocol", "network_abnormal"),
    (None, "[Errno 101] Network is unreachable", "network_abnormal"),
    # unknown, never dropped
    (4999, "something new", "unknown"),
    (None, None, "unknown"),
    (None, "", "unknown"),
]


@pytest.mark.parametrize(("code", "reason", "category"), CASES)
def test_every_era_lands_in_its_contract_category(catalog, code, reason, category):
    assert one(catalog, code, reason)["category"] == category


@pytest.mark.parametrize(
    ("code", "reason", "era"),
    [
        (3008, None, "v3"),
        (3005, "Session Expired: Maximum session duration exceeded", "v3-early"),
        (4008, None, "v2"),
        (1006, None, "websocket"),
        (429, None, "http"),
        (4999, "something new", None),
    ],
)
def test_era_tells_which_api_version_sent_it(catalog, code, reason, era):
    assert one(catalog, code, reason)["era"] == era


def test_labels_follow_the_contract(catalog):
    expired = one(catalog, 3008, None)
    assert (expired["severity"], expired["retry_safe"]) == ("info", "yes")
    assert "Terminate" in expired["action"]
    chunks = one(catalog, 3007, "Input duration violation: 1200 ms. Expected between 50 and 1000 ms")
    assert (chunks["severity"], chunks["retry_safe"]) == ("error", "yes")
    assert "50 and 1000 ms" in chunks["action"]
    assert one(catalog, 3009, None)["retry_safe"] == "with_backoff"
    assert (one(catalog, 4001, None)["severity"], one(catalog, 4001, None)["retry_safe"]) == ("critical", "no")
    unknown = one(catalog, 4999, "x")
    assert (unknown["severity"], unknown["retry_safe"]) == ("warning", "with_backoff")
    assert "--catalog" in unknown["action"]


def test_network_drop_keeps_its_null_code(catalog):
    row = one(catalog, None, "[Errno 104] Connection reset by peer")
    assert row["close_code"] is None
    assert row["code_inferred"] is False


@pytest.mark.parametrize(
    ("reason", "code", "category"),
    [
        ("Session Expired: Maximum session duration exceeded", 3008, "session_expired"),
        ("Input duration violation: 20 ms. Expected between 50 and 1000 ms", 3007, "input_duration_violation"),
        ("Invalid JSON: nope", 3006, "invalid_message"),
        ("Unauthorized Connection: Too many concurrent sessions", 3009, "concurrency_limit"),
        ("Unauthorized Connection: Missing Authorization header", 1008, "auth_failed"),
        ("Session Cancelled: An error occurred", 3005, "server_error"),
    ],
)
def test_reason_alone_infers_the_current_code(catalog, reason, code, category):
    row = one(catalog, None, reason)
    assert (row["close_code"], row["code_inferred"], row["category"]) == (code, True, category)


def test_inference_never_replaces_a_logged_code(catalog):
    row = one(catalog, 4999, "Session Expired: Maximum session duration exceeded")
    assert (row["close_code"], row["code_inferred"], row["category"]) == (4999, False, "session_expired")


def test_rows_keep_count_order_and_other_columns(catalog):
    pairs = [(4999, "a"), (1000, None), (None, None), (4999, "a"), (3008, None), (12345, "zzz")]
    data = frame(*pairs).with_columns(row=pl.int_range(len(pairs)))
    out = classify(data, catalog)
    assert out.height == len(pairs)
    assert out["row"].to_list() == list(range(len(pairs)))
    assert out["category"].to_list() == ["unknown", "normal", "unknown", "unknown", "session_expired", "unknown"]


def test_existing_labels_are_overwritten_and_earlier_inference_kept(catalog):
    data = frame((1000, None), (3008, None)).with_columns(
        category=pl.lit("stale"), code_inferred=pl.Series([None, True], dtype=pl.Boolean)
    )
    out = classify(data, catalog)
    assert out["category"].to_list() == ["normal", "session_expired"]
    assert out["code_inferred"].to_list() == [False, True]
    assert out.columns.count("category") == 1


@pytest.mark.parametrize("dtype", [pl.Int32, pl.Int64])
def test_close_code_keeps_its_type(catalog, dtype):
    out = classify(frame((None, "Session Expired: x"), dtype=dtype), catalog)
    assert out.schema["close_code"] == dtype
    assert out["close_code"].to_list() == [3008]


@pytest.mark.parametrize(
    ("reason", "chunk_ms", "ratio"),
    [
        ("Input duration violation: 1200 ms. Expected between 50 and 1000 ms", 1200.0, None),
        ("Input duration violation: 20.5 ms. Expected between 50 and 1000 ms", 20.5, None),
        ("Audio Transmission Rate Exceeded: Received 2.1 sec. audio in 1.0 sec", None, 2.1),
        ("Audio Transmission Rate Exceeded: Received 6 sec. audio in 2 sec", None, 3.0),
        ("Audio Transmission Rate Exceeded: Received 2 sec. audio in 0 sec", None, None),
        ("Session Expired: Maximum session duration exceeded", None, None),
        (None, None, None),
    ],
)
def test_numbers_are_read_from_the_reason(catalog, reason, chunk_ms, ratio):
    row = one(catalog, 3007, reason)
    assert row["chunk_ms"] == chunk_ms
    assert row["audio_rate_ratio"] == (pytest.approx(ratio) if ratio is not None else None)


def test_lazy_in_lazy_out(catalog):
    data = frame((3008, None), (None, "Session Expired: x"), (4999, "?"))
    lazy = classify(data.lazy(), catalog)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(classify(data, catalog))


def test_empty_and_all_null_inputs(catalog):
    empty = classify(frame(), catalog)
    assert empty.height == 0 and "category" in empty.columns
    nulls = classify(pl.DataFrame({"close_code": [None], "close_reason": [None]}), catalog)
    assert nulls["category"].to_list() == ["unknown"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.none() | st.integers(min_value=-(2**63), max_value=2**63 - 1),
            st.none() | st.text(),
        ),
        max_size=20,
    )
)
def test_arbitrary_input_never_raises(pairs):
    out = classify(frame(*pairs, dtype=pl.Int64), load_catalog())
    assert out.height == len(pairs)
    assert set(out["category"].to_list()) <= set(CATEGORIES)


# ---------------------------------------------------------------- the catalog itself


def test_builtin_catalog_covers_every_category(catalog):
    used = set(catalog.entries["category"].to_list())
    assert used == set(CATEGORIES) - {"unknown"}
    assert set(catalog.entries["origin"].to_list()) == {"builtin"}


def test_the_builtin_catalog_is_valid_and_loads_as_validated():
    """load_catalog takes the built-in file's rows without pydantic; validated entry by entry, they are the same rows."""
    from closewatch.analysis.catalog import _ENTRY_DEFAULTS, BUILTIN_PATH, _read_entries
    from closewatch.analysis.catalog_entry import CatalogEntry

    assert _read_entries(BUILTIN_PATH, "builtin", checked=True) == _read_entries(BUILTIN_PATH, "builtin")
    assert _ENTRY_DEFAULTS == {name: field.default for name, field in CatalogEntry.model_fields.items() if not field.is_required()}


def test_catalog_table_is_readable(catalog):
    table = catalog_table(catalog)
    assert table.height == catalog.entries.height
    assert table.columns == ["codes", "reason", "category", "severity", "retry_safe", "action", "era", "docs"]
    texts = set(table["codes"].to_list())
    assert {"4030, 4103", "no code", "any code", "3008"} <= texts
    assert "any reason" in table["reason"].to_list()


VALID = """
[[entry]]
codes = [1000]
category = "normal"
severity = "info"
retry_safe = "yes"
action = "Nothing to do."
era = "websocket"
docs = "rfc6455"
"""


def write(tmp_path, text, name="my.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_user_entries_override_builtin(tmp_path):
    path = write(
        tmp_path,
        """
[[entry]]
codes = [3008]
category = "server_error"
severity = "critical"
retry_safe = "no"
action = "Page the on-call engineer."
era = "v3"
docs = "internal/runbook"
""",
    )
    catalog = load_catalog(path)
    row = one(catalog, 3008, "Session Expired: Maximum session duration exceeded")
    assert (row["category"], row["severity"]) == ("server_error", "critical")
    assert catalog.entries.row(0, named=True)["origin"] == str(path)
    assert one(catalog, 4008, None)["category"] == "session_expired"


# Each case changes the second entry of an otherwise valid file: (field = TOML
# value, or None to drop the field), and names the field the message must blame.
BAD_ENTRIES = [
    ({"colour": '"red"'}, "colour"),
    ({"severity": '"bad"'}, "severity"),
    ({"retry_safe": '"maybe"'}, "retry_safe"),
    ({"era": '"v9"'}, "era"),
    ({"category": '"my_new_class"'}, "category"),
    ({"action": '""'}, "action"),
    ({"docs": "3"}, "docs"),
    ({"reason": "'(?<=x)a'"}, "reason"),
    ({"reason": "'('"}, "reason"),
    ({"codes": "[]"}, "codes"),
    ({"codes": '["3008"]'}, "codes"),
    ({"codes": "[true]"}, "codes"),
    ({"codes": "[70000]"}, "codes"),
    ({"code_is_null": '"yes"'}, "code_is_null"),
    ({"code_is_null": "true"}, "code_is_null"),
    ({"infer_code": "3008", "reason": "'x'"}, "infer_code"),
    ({"infer_code": "3008", "codes": None}, "infer_code"),
    ({"infer_code": "-1", "codes": None, "reason": "'x'"}, "infer_code"),
]


def entry_text(changes: dict) -> str:
    fields = dict(line.split(" = ", 1) for line in VALID.strip().splitlines()[1:])
    fields.update(changes)
    return "[[entry]]\n" + "\n".join(f"{key} = {value}" for key, value in fields.items() if value is not None)


@pytest.mark.parametrize(("changes", "field"), BAD_ENTRIES)
def test_bad_entry_names_file_entry_and_field(tmp_path, changes, field):
    path = write(tmp_path, VALID + "\n" + entry_text(changes))
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    message = str(caught.value)
    assert message.startswith(f"{path} entry 2: {field} ")
    assert message.endswith("; fix the entry and run again.")
    assert "\n" not in message


def test_valid_variants_of_the_test_entry_load(tmp_path):
    """The helper itself can produce a good entry, so the failures above are the changes'."""
    path = write(tmp_path, VALID + "\n" + entry_text({"codes": None, "reason": "'x'", "infer_code": "3008"}))
    assert load_catalog(path).entries["origin"].to_list()[:2] == [str(path), str(path)]


@pytest.mark.parametrize("field", ["category", "severity", "retry_safe", "action", "era", "docs"])
def test_missing_field_is_named(tmp_path, field):
    text = "\n".join(ln for ln in VALID.splitlines() if not ln.startswith(f"{field} ="))
    with pytest.raises(CatalogError, match=rf"entry 1: {field} is missing"):
        load_catalog(write(tmp_path, text))


def test_severity_message_reads_as_one_sentence(tmp_path):
    path = write(tmp_path, VALID.replace('severity = "info"', 'severity = "bad"'))
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(caught.value) == (
        f"{path} entry 1: severity 'bad' is not one of info, warning, error, critical; fix the entry and run again."
    )


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (None, "does not exist"),
        ("[[entry]\n", "not valid TOML"),
        ("", "no [[entry]] tables"),
        ("title = 'x'\n" + VALID, "top-level key 'title'"),
        ("entry = [1]\n", "entry 1 is not a table"),
    ],
)
def test_bad_file_is_named(tmp_path, text, words):
    path = tmp_path / "my.toml" if text is None else write(tmp_path, text)
    with pytest.raises(CatalogError, match=r"my\.toml") as caught:
        load_catalog(path)
    assert words in str(caught.value)
    assert isinstance(caught.value, ClosewatchError)
