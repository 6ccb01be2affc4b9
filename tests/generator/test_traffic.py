"""The log generator: same seed same bytes, a realistic traffic model, and a manifest that is true.

The manifest is the pattern detectors' ground truth, so it is checked the
hard way: the generated logs are loaded with the real ingest job into a real
DuckDB file, and every incident's events must be there, for its client, in
its window, with its category, and nowhere else.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest

from closewatch.analysis.catalog import classify, load_catalog
from closewatch.analysis.templates import template_expr
from closewatch import jobs
from closewatch.store import Store
from closewatch.generator import traffic as generator
from closewatch.ingest.errors import IngestError
from closewatch.generator.traffic import GeneratorConfig, generate, generate_closures_frame, write_jsonl
from closewatch.ingest.sources import expand_inputs

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_logs"
UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
PROTOCOL_VIOLATIONS = ("input_duration_violation", "audio_rate_exceeded", "invalid_message")

#: A week of every format with a quarter of the demo's traffic: big enough for every incident, quick to load.
WEEK = GeneratorConfig(days=7, sessions_per_day=700, seed=11)

def _formats_param() -> list:
    return [pytest.param(fmt, id=fmt) for fmt in generator.available_formats()]


# ---------------------------------------------------------------- fixtures: a generated week, loaded


@pytest.fixture(scope="module")
def week(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("generated") / "week"
    return out, generate(out, WEEK)


@pytest.fixture(scope="module")
def loaded(week, tmp_path_factory) -> tuple[Store, dict]:
    """The generated week ingested by the real job into a real DuckDB file; results by relative path."""
    out, _ = week
    store = Store(tmp_path_factory.mktemp("db") / "week.duckdb", lock_timeout_s=30)
    results = jobs.ingest(store, expand_inputs([str(out)]))
    return store, {Path(r.source).relative_to(out).as_posix(): r for r in results}


@pytest.fixture(scope="module")
def planned() -> pl.DataFrame:
    frame, _, _ = generator.plan(WEEK)
    return frame


# ---------------------------------------------------------------- determinism


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_writes_the_same_bytes_and_another_seed_does_not(tmp_path):
    config = GeneratorConfig(days=2, sessions_per_day=300, seed=5, gzip=True)
    generate(tmp_path / "a", config)
    generate(tmp_path / "b", config)
    generate(tmp_path / "c", GeneratorConfig(days=2, sessions_per_day=300, seed=6, gzip=True))
    first, second, other = _tree(tmp_path / "a"), _tree(tmp_path / "b"), _tree(tmp_path / "c")
    assert first == second
    assert len(first) > 10
    assert all(data[:2] == b"\x1f\x8b" for name, data in first.items() if name != "manifest.json")
    assert sum(first[name] != other.get(name) for name in first) >= len(first) - 1


def test_the_committed_demo_set_is_what_the_generator_writes(tmp_path):
    """sample_logs/demo is `make_structured_samples.py`'s output; a generator change must regenerate it."""
    maker = _load_sample_maker()
    generate(tmp_path / "demo", maker.demo_config())
    assert _tree(tmp_path / "demo") == _tree(SAMPLES / "demo"), "run python sample_logs/make_structured_samples.py"
    size = sum(len(data) for data in _tree(SAMPLES / "demo").values())
    assert size < 5_000_000


# ---------------------------------------------------------------- the manifest is true


@pytest.mark.parametrize("fmt", _formats_param())
def test_every_generated_file_loads_whole_with_its_format(week, loaded, fmt):
    _, manifest = week
    _, results = loaded
    files = [f for f in manifest["files"] if f["format"] == fmt]
    assert files, f"no generated file for format {fmt}"
    for entry in files:
        result = results[entry["path"]]
        assert (result.format, result.rejected, result.duplicates) == (fmt, 0, 0), entry["path"]
        assert result.accepted == entry["events"], entry["path"]


def test_every_incident_is_in_the_files_for_its_client_in_its_window_with_its_category(week, loaded):
    _, manifest = week
    store, _ = loaded
    required = [item for item in manifest["incidents"] if item["details"]["required"]]
    assert {item["kind"] for item in required} == set(generator.INCIDENT_KINDS)
    for item in manifest["incidents"]:
        details = item["details"]
        counts = store.query(
            """SELECT count(*) FILTER (WHERE ts >= ?::TIMESTAMPTZ AND ts < ?::TIMESTAMPTZ) AS inside, count(*) AS total
               FROM closures WHERE client_id = ? AND category = ?""",
            [item["start"], item["end"], item["client"], details["category"]],
        ).row(0, named=True)
        assert counts["inside"] == details["events"], item["kind"]
        if details.get("exclusive", True):
            assert counts["total"] == details["events"], item["kind"]
        else:  # the outage client also drops now and then outside the outage, as every client does
            assert counts["total"] - counts["inside"] <= 0.05 * counts["inside"], item["kind"]
        assert details["events"] >= 8, item["kind"]


def test_incidents_are_unambiguous(week):
    """Each required incident on a client of its own, with a UTC window and the pattern a detector should report."""
    _, manifest = week
    required = [item for item in manifest["incidents"] if item["details"]["required"]]
    assert len({item["client"] for item in required}) == len(required)
    patterns = {item["kind"]: item["expected_pattern"] for item in required}
    assert patterns == {
        "network_outage": "frequent_disconnects", "chunks_too_long": "repeated_violation",
        "faster_than_realtime": "repeated_violation", "concurrency_burst": "concurrency_saturation",
        "expiry_leak": "expiry_cost_leak", "revoked_key": "auth_failures", "new_reason": "new_reason",
    }
    period = (_utc(manifest["start"]), _utc(manifest["end"]))
    for item in manifest["incidents"]:
        assert set(item) == {"kind", "client", "start", "end", "expected_pattern", "details"}
        start, end = _utc(item["start"]), _utc(item["end"])
        assert period[0] < start < end <= period[1], item["kind"]  # history before every incident
    spikes = [item for item in manifest["incidents"] if item["kind"] == "error_spike"]
    assert {item["details"]["implied_by"] for item in spikes} == set(generator.INCIDENT_KINDS)
    assert not any(item["details"]["required"] for item in spikes)


def _utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text).astimezone(UTC)


def test_incident_numbers_are_the_ones_the_detectors_explain(week, loaded):
    store, _ = loaded
    _, manifest = week
    by_kind = {item["kind"]: item for item in manifest["incidents"] if item["details"]["required"]}

    def stats(kind: str) -> dict:
        item = by_kind[kind]
        return store.query(
            """SELECT median(chunk_ms) AS chunk_ms, min(audio_rate_ratio) AS low, max(audio_rate_ratio) AS high,
                      min(session_duration_s) AS shortest, max(session_duration_s) AS longest, any_value(close_reason) AS reason
               FROM closures WHERE client_id = ? AND category = ?""",
            [item["client"], item["details"]["category"]],
        ).row(0, named=True)

    assert stats("chunks_too_long")["chunk_ms"] == 1200
    rate = stats("faster_than_realtime")
    assert 2.0 <= rate["low"] <= rate["high"] <= 2.6
    leak = stats("expiry_leak")
    assert leak["shortest"] == leak["longest"] == 10800
    assert stats("new_reason")["reason"] == generator.NEW_REASON
    burst = by_kind["concurrency_burst"]["details"]
    assert burst["peak_minute_count"] >= 10


def test_background_stays_below_what_detectors_flag(week):
    """Rare categories stay rare and spread out; every incident stands far above its category's background."""
    _, manifest = week
    levels = manifest["background"]["by_category"]
    for category in (*PROTOCOL_VIOLATIONS, "concurrency_limit", "auth_failed", "account_issue", "unknown"):
        assert levels.get(category, {}).get("max_per_client_hour", 0) <= 2, category
    assert levels["network_abnormal"]["max_per_client_10min"] <= 3
    assert levels["session_expired"]["max_per_client_day"] <= 3
    for item in manifest["incidents"]:
        if not item["details"]["required"]:
            continue
        background = levels.get(item["details"]["category"], {})
        unit = "max_per_client_day" if item["kind"] == "expiry_leak" else "max_per_client_hour"
        assert item["details"]["events"] >= 3 * max(1, background.get(unit, 0)), item["kind"]


# ---------------------------------------------------------------- the traffic model


def test_traffic_has_a_diurnal_curve_and_quiet_weekends(planned):
    frame = planned.with_columns(hour=pl.col("ts").dt.hour(), weekday=pl.col("ts").dt.weekday())
    offsets = {spec.client_id: spec.utc_offset_h for spec in generator._unique_names(
        generator.build_roster(WEEK.clients, generator.resolve_formats(None)))}
    utc_clients = [client for client, offset in offsets.items() if offset == 0.0]
    local = frame.filter(pl.col("client_id").is_in(utc_clients) & pl.col("incident").is_null())
    day = local.filter(pl.col("hour").is_between(9, 16)).height / 8
    night = local.filter(pl.col("hour").is_between(0, 5)).height / 6
    assert day > 4 * night
    per_day = frame.group_by("weekday").len()
    weekdays = per_day.filter(pl.col("weekday") <= 5)["len"].mean()
    weekend = per_day.filter(pl.col("weekday") >= 6)["len"].mean()
    assert weekend < 0.7 * weekdays


def test_the_mix_is_production_like_across_three_eras(planned):
    background = planned.filter(pl.col("incident").is_null())
    shares = background.group_by("category").len().with_columns(share=pl.col("len") / background.height)
    share = dict(shares.select("category", "share").iter_rows())
    assert 0.88 <= share["normal"] <= 0.97
    assert 0.01 <= share["network_abnormal"] <= 0.06
    assert 0.0005 <= share["session_expired"] <= 0.01
    assert len(share) >= 12  # occasional everything else
    eras = {spec.era for spec in generator.build_roster(WEEK.clients, generator.resolve_formats(None))}
    assert eras == {"v3", "v3-early", "v2"}
    codes = set(planned["close_code"].drop_nulls().to_list())
    assert {1000, 1006, 3008, 3005, 4008, 4031} <= codes


def test_sessions_have_unique_v4_ids_and_plausible_durations(planned):
    ids = planned["session_id"]
    assert ids.n_unique() == planned.height
    assert ids.str.contains(UUID4.pattern).all()
    normal = planned.filter(pl.col("category") == "normal")
    assert normal["session_duration_s"].min() >= 2
    assert normal["session_duration_s"].max() < 10800
    assert (normal["audio_duration_s"] <= normal["session_duration_s"]).all()
    expired = planned.filter(pl.col("category") == "session_expired")
    assert (expired["session_duration_s"] == 10800).all()


def test_every_background_reason_template_occurs_on_the_first_day(planned):
    """So that a detector of never-seen reasons has history: only the injected reason is new later."""
    masked = planned.with_columns(template=template_expr(pl.col("close_reason")))
    start = planned["ts"].min()
    first = set(masked.filter(pl.col("ts") < start + pl.duration(days=1))["template"].drop_nulls().to_list())
    later = set(masked.filter(pl.col("incident").is_null())["template"].drop_nulls().to_list())
    assert later - first == set()
    assert planned.select(template_expr(pl.lit(generator.NEW_REASON))).item() not in first


def test_generated_reasons_classify_as_the_generator_meant(planned):
    classified = classify(planned.drop("category"), load_catalog())
    expected = planned["category"]
    assert (classified["category"] == expected).all()


# ---------------------------------------------------------------- small rosters, options


def test_fewer_clients_than_formats_still_writes_every_format_and_every_incident(tmp_path):
    manifest = generate(tmp_path / "few", GeneratorConfig(days=3, sessions_per_day=200, clients=3, seed=2))
    assert {f["format"] for f in manifest["files"]} == set(generator.available_formats())
    assert len(manifest["clients"]) == 3
    kinds = {item["kind"] for item in manifest["incidents"] if item["details"]["required"]}
    assert kinds == set(generator.INCIDENT_KINDS)


def test_unknown_format_and_bad_numbers_are_refused_with_one_sentence():
    with pytest.raises(IngestError, match="Unknown format 'nope' in --formats; use some of: jsonl"):
        generator.resolve_formats(["jsonl", "nope"])
    with pytest.raises(IngestError, match="--days must be at least 1"):
        GeneratorConfig(days=0).check()
    with pytest.raises(IngestError, match="--clients must be at least 1"):
        GeneratorConfig(clients=0).check()


# ---------------------------------------------------------------- the fast path


def test_fast_path_gives_exactly_n_canonical_closures_deterministically():
    frame = generate_closures_frame(20_000, seed=5, truth=True)
    assert frame.height == 20_000
    assert frame.columns[:7] == generator.CANONICAL_COLUMNS
    assert frame.equals(generate_closures_frame(20_000, seed=5, truth=True))
    assert not frame.equals(generate_closures_frame(20_000, seed=6, truth=True))
    assert frame["ts"].is_sorted()
    assert frame["session_id"].n_unique() == 20_000
    classified = classify(frame.select("close_code", "close_reason"), load_catalog())
    assert (classified["category"] == frame["expected_category"]).all()
    assert set(frame["incident"].drop_nulls().unique()) == set(generator.INCIDENT_KINDS)
    assert generate_closures_frame(3, seed=1).height == 3


def test_write_jsonl_loads_back_through_the_real_ingest(tmp_path):
    frame = generate_closures_frame(3_000, seed=9, truth=True)
    path = write_jsonl(frame.select(generator.CANONICAL_COLUMNS), tmp_path / "closures.jsonl.gz")
    with gzip.open(path, "rt") as handle:
        first = json.loads(handle.readline())
    assert first["ts"].endswith("Z") and set(first) == set(generator.CANONICAL_COLUMNS)
    store = Store(tmp_path / "fast.duckdb")
    (result,) = jobs.ingest(store, expand_inputs([str(path)]))
    assert (result.format, result.accepted, result.rejected) == ("jsonl", 3_000, 0)
    stored = store.query("SELECT session_id, category FROM closures").sort("session_id")
    truth = frame.select("session_id", pl.col("expected_category").alias("category")).sort("session_id")
    assert stored.equals(truth)


# ---------------------------------------------------------------- the CLI


def test_cli_generate_writes_files_and_manifest(run, tmp_path):
    out = tmp_path / "cli"
    result = run("generate", str(out), "--days", "2", "--sessions-per-day", "150", "--formats", "jsonl,csv",
                 "--formats", "api-messages", "--seed", "4", "--start", "2026-03-02", db=False)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["formats"] == ["jsonl", "csv", "api-messages"]
    assert manifest["start"] == "2026-03-02T00:00:00Z" and manifest["seed"] == 4
    assert all((out / f["path"]).is_file() for f in manifest["files"])
    assert "Injected incidents" in result.output and "expiry_leak" in result.output


def test_cli_generate_refuses_bad_options_with_one_line(run, tmp_path):
    result = run("generate", str(tmp_path / "x"), "--formats", "jsonl,nope", db=False)
    assert result.exit_code == 1
    assert "Unknown format 'nope'" in result.output and "Traceback" not in result.output
    result = run("generate", str(tmp_path / "x"), "--days", "0", db=False)
    assert result.exit_code == 1 and "--days must be at least 1" in result.output
    assert not (tmp_path / "x").exists()


def test_cli_generate_help_has_an_example(run):
    result = run("generate", "--help", db=False)
    assert result.exit_code == 0 and "Example:" in result.output and "--sessions-per-day" in result.output


def _listed_formats(run) -> list[str]:
    result = run("formats", db=False)
    assert result.exit_code == 0
    formats_part = result.output.split("Envelopes", 1)[0]  # the envelopes follow the formats
    return re.findall(r"^([a-z0-9-]+): ", formats_part, flags=re.MULTILINE)


def test_every_format_closewatch_lists_has_a_generated_file_and_a_sample(run, week, sample_results):
    listed = _listed_formats(run)
    assert set(listed) == set(generator.available_formats()) and len(listed) >= 3
    _, manifest = week
    assert set(listed) <= {f["format"] for f in manifest["files"]}
    top_level = {r.format for name, r in sample_results.items() if "/" not in name}
    assert set(listed) <= top_level


# ---------------------------------------------------------------- sample_logs/


@pytest.fixture(scope="module")
def sample_results(tmp_path_factory) -> dict:
    """`closewatch ingest sample_logs/` with the real job: results by path relative to sample_logs/."""
    store = Store(tmp_path_factory.mktemp("samples") / "samples.duckdb", lock_timeout_s=30)
    results = jobs.ingest(store, expand_inputs([str(SAMPLES)]))
    return {Path(r.source).relative_to(SAMPLES).as_posix(): r for r in results}


def _load_sample_maker():
    spec = importlib.util.spec_from_file_location("make_structured_samples", SAMPLES / "make_structured_samples.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_structured_samples_are_current():
    maker = _load_sample_maker()
    for name, build in maker.SAMPLES.items():
        assert (SAMPLES / name).read_text(encoding="utf-8") == "\n".join(build()) + "\n", name


def test_structured_samples_reject_exactly_their_deliberate_bad_lines(sample_results):
    maker = _load_sample_maker()
    expected_format = {"closures.jsonl": "jsonl", "aliases.jsonl": "jsonl", "api-messages.jsonl": "api-messages",
                       "closures.csv": "csv", "closures.tsv": "csv"}
    for name, reasons in maker.BAD_LINES.items():
        result = sample_results[name]
        assert result.format == expected_format[name], name
        assert result.rejected == len(reasons), (name, result.first_rejects)
        assert all(fragment in why for (_, why), fragment in zip(result.first_rejects, reasons, strict=True)), name
        assert result.accepted >= 30, name


def test_text_samples_load_with_at_most_their_garbled_line_rejected(sample_results):
    text = {name: r for name, r in sample_results.items() if "/" not in name and name.endswith(".log")}
    assert len(text) >= 8
    for name, result in text.items():
        assert result.accepted >= 10 and result.rejected <= 1, (name, result.first_rejects)


@pytest.mark.parametrize("fmt", _formats_param())
def test_demo_set_loads_whole(sample_results, fmt):
    manifest = json.loads((SAMPLES / "demo" / "manifest.json").read_text())
    files = [f for f in manifest["files"] if f["format"] == fmt]
    assert files
    for entry in files:
        result = sample_results[f"demo/{entry['path']}"]
        assert (result.format, result.accepted, result.rejected) == (fmt, entry["events"], 0), entry["path"]


def test_a_platform_outage_hits_every_client_at_once_and_is_in_the_manifest(tmp_path):
    manifest = generate(tmp_path, GeneratorConfig(days=7, formats=("jsonl",), platform_outage="server_error"))
    [outage] = [item for item in manifest["incidents"] if item["kind"] == "platform_outage"]
    assert outage["client"] == "*" and outage["details"]["category"] == "server_error"
    clients = outage["details"]["clients"]
    assert len(clients) == len(manifest["clients"]) == len(outage["details"]["events_per_client"])
    assert all(count >= 20 for count in outage["details"]["events_per_client"].values())  # reconnect loops, not one drop
    begins, ends = datetime.fromisoformat(outage["start"]), datetime.fromisoformat(outage["end"])
    assert (ends - begins).total_seconds() == 30 * 60
    assert [item["kind"] for item in manifest["incidents"] if item["kind"] != "platform_outage"] == [
        item["kind"] for item in generate(tmp_path / "plain", GeneratorConfig(days=7, formats=("jsonl",)))["incidents"]]
    with pytest.raises(IngestError, match="--platform-outage must be one of"):
        GeneratorConfig(platform_outage="asteroid").check()
