"""closewatch generate --envelope: the same traffic, shipped as a collector ships it, loads to the same closures."""

from __future__ import annotations

from datetime import date

import pytest
from closewatch.generator import traffic
from closewatch.ingest.errors import IngestError
from closewatch.ingest.sources import expand_inputs

from closewatch import jobs
from closewatch.store import Store

FORMATS = ("websocket-client", "assemblyai-python-v3", "jsonl")


def _generate(folder, envelope):
    config = traffic.GeneratorConfig(days=1, sessions_per_day=150, clients=3, seed=5, formats=FORMATS,
                                     start=date(2026, 11, 16), incidents=False, envelope=envelope)
    config.check()
    return traffic.generate(folder, config)


def _closures(store_path, folder):
    store = Store(store_path)
    results = jobs.ingest(store, expand_inputs([str(folder)]))
    assert all(r.rejected == 0 for r in results), [(r.source, r.first_rejects) for r in results]
    rows = store.query("SELECT ts, session_id, close_code, close_reason, client_id, labels, source_format FROM closures "
                       "ORDER BY ts, session_id, close_code, close_reason")
    return rows, results


@pytest.mark.parametrize("envelope", ["cri", "journald", "gcp-logging", "otlp-json"])
def test_generated_envelope_loads_the_same_closures_as_the_plain_files(tmp_path, envelope):
    plain_manifest = _generate(tmp_path / "plain", None)
    wrapped_manifest = _generate(tmp_path / "wrapped", envelope)
    assert plain_manifest["events"] == wrapped_manifest["events"]
    assert all(f["path"].startswith(f"{envelope}/") for f in wrapped_manifest["files"])

    plain, _ = _closures(tmp_path / "plain.duckdb", tmp_path / "plain")
    wrapped, results = _closures(tmp_path / "wrapped.duckdb", tmp_path / "wrapped")
    assert {r.format.split("/")[0] for r in results} == {envelope}
    key = ["session_id", "close_code", "close_reason"]
    assert wrapped.select(key).sort(key).rows() == plain.select(key).sort(key).rows()
    # every close has a time (the plain websocket-client prints have none of their own)
    assert wrapped["ts"].null_count() == 0
    if envelope != "cri":  # a CRI line carries no labels (the pod is in the file's path)
        # labels name the client where the line does not
        assert wrapped["labels"].null_count() == 0 and wrapped["client_id"].null_count() == 0


def test_an_unknown_envelope_is_refused_by_name():
    with pytest.raises(IngestError, match="Unknown envelope 'dockr'"):
        traffic.GeneratorConfig(envelope="dockr").check()
