"""The samples in sample_logs/ load beside the demo week without distorting it.

They are dated on the demo week's first morning (sample_logs/README.md says
why): in the first day of data, which the new_reason detector treats as its
learning period, so uploading a sample into the demo database keeps the
Overview to one week and adds no "never seen" reasons.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

SAMPLES = Path(__file__).resolve().parents[2] / "sample_logs"
DEMO = SAMPLES / "demo"
SAMPLE_FILES = sorted(  # every sample but the demo set and the scripts that write them
    path for path in SAMPLES.rglob("*")
    if path.is_file() and DEMO not in path.parents and path.suffix not in (".py", ".md") and "__pycache__" not in path.parts
)
UNDATED = {"assemblyai-js.log", "assemblyai-python-v2.log", "websocket-client.log"}  # their clients print no time


def demo_window() -> tuple[datetime, datetime]:
    manifest = json.loads((DEMO / "manifest.json").read_text(encoding="utf-8"))
    return datetime.fromisoformat(manifest["start"]), datetime.fromisoformat(manifest["end"])


def test_the_samples_are_found():
    names = {str(path.relative_to(SAMPLES)) for path in SAMPLE_FILES}
    assert {"closures.jsonl", "browser-js.log", "envelopes/docker-json.jsonl"} <= names, names


@pytest.mark.parametrize("sample", SAMPLE_FILES, ids=lambda path: str(path.relative_to(SAMPLES)))
def test_a_sample_is_dated_on_the_first_day_of_the_demo_week(sample, run):
    """Every timestamped closure of the sample; the clients that print no time have none to check."""
    start, end = demo_window()
    assert end - start == timedelta(days=7)
    result = run("ingest", str(sample))
    assert result.exit_code == 0, result.output
    dated, first, last = run.json("select count(ts) as dated, min(ts) as first, max(ts) as last from closures")[0].values()
    if sample.name in UNDATED:
        assert dated == 0, f"{sample.name} has timestamps now: remove it from UNDATED"
        return
    assert dated > 0
    first, last = datetime.fromisoformat(first), datetime.fromisoformat(last)
    assert start <= first and last < start + timedelta(days=1), (sample.name, first, last)


def test_loading_every_sample_beside_the_demo_adds_no_new_reasons_and_keeps_the_week(run):
    assert run("ingest", str(DEMO)).exit_code == 0

    def new_reasons() -> list[str]:
        result = run("analyze", "--format", "json")
        assert result.exit_code == 0, result.output
        return sorted(finding["key"] for finding in json.loads(result.stdout) if finding["pattern"] == "new_reason")

    demo_alone = new_reasons()
    assert demo_alone, "the demo's injected never-seen reason should be found"
    assert run("ingest", *map(str, SAMPLE_FILES)).exit_code == 0
    assert new_reasons() == demo_alone
    span = run.json("select min(ts) as first, max(ts) as last from closures")[0]
    start, end = demo_window()
    assert start <= datetime.fromisoformat(span["first"]) and datetime.fromisoformat(span["last"]) < end
