"""The analysis job is the one way detection runs: `closewatch analyze`, the scheduler and the
dashboard's "Run detection now" all honour the thresholds file named in closewatch.toml.

Each front end runs twice on its own copy of the same store: once with a config
that names no thresholds (the built-in ones find web-7's repeated violations),
once with a config whose `[analysis] thresholds` raises repeated_violation's
min_count out of reach (the finding is gone, the disconnect storm stays).
The config lives in another folder than the working directory, so the
thresholds path must be resolved relative to the config file.
"""

from __future__ import annotations

import html
import re

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from closewatch.store import Store
from tests.analysis.test_detection import write_closures
from tests.analysis.test_detectors import DAY, HOUR, T0, background, drops, violations

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"
VIOLATION = ("repeated_violation", "web-7")
STORM = ("frequent_disconnects", "call-center")


@pytest.fixture(scope="module")
def incidents(tmp_path_factory) -> Path:
    """Three quiet days, a chunk-violation episode on day 2 and a disconnect storm on day 3."""
    store = Store(tmp_path_factory.mktemp("incidents") / "incidents.duckdb")
    write_closures(store, background(days=3) + violations(T0 + DAY + 10 * HOUR, 12)
                   + drops(T0 + 2 * DAY + 5 * HOUR, 40, duration_s=5.0))
    return store.path


@pytest.fixture
def configs(tmp_path) -> dict[str, Path]:
    """Two config files in etc/: `builtin` names no thresholds, `quiet` names etc/quiet.toml by a relative path."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "quiet.toml").write_text("[repeated_violation]\nmin_count = 100\n")
    window = '[scheduler]\nanalyze_window = "7d"\n'  # the scheduler's window must reach back to day 2
    (etc / "builtin.toml").write_text(window)
    (etc / "quiet-closewatch.toml").write_text(window + '[analysis]\nthresholds = "quiet.toml"\n')
    (tmp_path / "work").mkdir()
    return {"builtin": etc / "builtin.toml", "quiet": etc / "quiet-closewatch.toml"}


def copy_of(incidents: Path, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.duckdb"
    shutil.copy(incidents, path)
    return path


def found(db: Path) -> set[tuple[str, str]]:
    return set(Store(db).query("SELECT pattern, key FROM detections").rows())


def closewatch(tmp_path: Path, config: Path, db: Path, *args: str) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess, from a working directory that is not the config file's folder."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CLOSEWATCH_")}
    env.update(CLOSEWATCH_CONFIG=str(config), CLOSEWATCH_DB=str(db))
    result = subprocess.run([sys.executable, "-m", "closewatch.cli", *args], capture_output=True, text=True,
                            cwd=tmp_path / "work", env=env, timeout=180)
    assert result.returncode == 0, result.stderr
    return result


def assert_thresholds_honoured(builtin: set, quiet: set) -> None:
    assert VIOLATION in builtin and STORM in builtin
    assert VIOLATION not in quiet and STORM in quiet


@pytest.mark.slow
def test_closewatch_analyze_honours_the_configured_thresholds(incidents, configs, tmp_path):
    results = {}
    for name, config in configs.items():
        db = copy_of(incidents, tmp_path, name)
        closewatch(tmp_path, config, db, "analyze", "--format", "json")
        results[name] = found(db)
    assert_thresholds_honoured(results["builtin"], results["quiet"])


@pytest.mark.slow
def test_the_scheduler_honours_the_configured_thresholds(incidents, configs, tmp_path):
    results = {}
    for name, config in configs.items():
        db = copy_of(incidents, tmp_path, name)
        closewatch(tmp_path, config, db, "scheduler", "--once")
        assert Store(db).query("SELECT outcome FROM job_runs WHERE job = 'analyze'").item() == "ok"
        results[name] = found(db)
    assert_thresholds_honoured(results["builtin"], results["quiet"])


@pytest.mark.slow
def test_run_detection_now_on_the_dashboard_honours_the_configured_thresholds(incidents, configs, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from closewatch.dashboard import ui

    monkeypatch.chdir(tmp_path / "work")
    results = {}
    for name, config in configs.items():
        db = copy_of(incidents, tmp_path, name)
        monkeypatch.setenv("CLOSEWATCH_DB", str(db))
        monkeypatch.setenv("CLOSEWATCH_CONFIG", str(config))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        at.switch_page(ui.PAGES["patterns"]).run()
        assert "No detections yet" in " ".join(i.value for i in at.info)
        at.button(key="run_detection").click().run()
        assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
        results[name] = found(db)
        shown = next(e.proto.body for e in at.get("html") if 'data-key="detections_table"' in e.proto.body)
        rows = re.findall(r'data-page-link>([^<]*)</a></td><td class="">([^<]*)</td>', shown)  # pattern (a link), key
        assert {(html.unescape(pattern), html.unescape(key)) for pattern, key in rows} == results[name]
    assert_thresholds_honoured(results["builtin"], results["quiet"])


def test_the_demo_load_of_up_honours_the_configured_thresholds(configs, tmp_path, monkeypatch):
    """`closewatch up` on an empty database loads the demo logs and runs the analysis job with the settings."""
    from rich.console import Console

    from closewatch.cli.dashboard import DEMO, _load_demo
    from closewatch.settings import load_settings

    if not DEMO.is_dir():
        pytest.skip("no demo logs in this checkout")
    (configs["quiet"].parent / "quiet.toml").write_text("[general]\nevidence_limit = 1\n")
    results = {}
    for name, config in configs.items():
        settings = load_settings(config, db=tmp_path / f"up-{name}.duckdb")
        _load_demo(settings, Store(settings.db), Console(file=open(os.devnull, "w")))
        results[name] = Store(settings.db).query("SELECT max(len(evidence)) FROM detections").item()
    assert results["builtin"] > 1 and results["quiet"] == 1
