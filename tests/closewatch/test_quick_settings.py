"""The quick commands' settings (info, sql) are those load_settings gives, built without pydantic when no
config file exists, and the full, validated settings when one does."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from closewatch.errors import ConfigError
from closewatch.quick_settings import IngestLimits, Limits, QuickSettings, quick_settings
from closewatch.settings import Settings, load_settings


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory without closewatch.toml, and no CLOSEWATCH_* variables."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    for name in ("CLOSEWATCH_DB", "CLOSEWATCH_CONFIG", "CLOSEWATCH_LAKE"):
        monkeypatch.delenv(name, raising=False)
    return cwd


def the_quick_part(settings: Settings | QuickSettings) -> tuple:
    return (settings.db, settings.lock_timeout_s, settings.store.lake, Limits.from_settings(settings), settings.catalog,
            settings.ingest_limits)


@pytest.mark.parametrize("options, environment", [
    ({}, {}),
    ({"db": "x.duckdb", "lock_timeout_s": 2.5, "lake": "~/lake"}, {}),
    ({}, {"CLOSEWATCH_DB": "~/env.duckdb", "CLOSEWATCH_LAKE": "/data/lake"}),
    ({"db": "option.duckdb", "lake": "/option/lake"}, {"CLOSEWATCH_DB": "env.duckdb", "CLOSEWATCH_LAKE": "/env/lake"}),
])
def test_without_a_config_file_they_equal_load_settings_and_need_no_pydantic(elsewhere, monkeypatch, options, environment):
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    quick = quick_settings(**options)
    assert isinstance(quick, QuickSettings)
    assert the_quick_part(quick) == the_quick_part(load_settings(**options))


def test_a_config_file_is_validated_in_full(elsewhere):
    (elsewhere / "closewatch.toml").write_text('[sql]\ntimeout = "5s"\nmax_rows = 7\n\n[store]\nlock_timeout_s = 3\n')
    settings = quick_settings(db="a.duckdb")
    assert isinstance(settings, Settings)
    assert (settings.sql.timeout_s, settings.sql.max_rows, settings.lock_timeout_s, settings.db) == (5.0, 7, 3.0, Path("a.duckdb"))
    (elsewhere / "closewatch.toml").write_text('[ingest]\nmax_line_length = "2KiB"\nmemory_limit = "128MiB"\nlatest_year = 2050\n\n'
                                               '[analysis]\ncatalog = "mine.toml"\n')
    settings = quick_settings()
    assert settings.ingest_limits == IngestLimits(max_line_length=2048, memory_limit=128 * 1024 * 1024, latest_year=2050)
    assert settings.ingest_limits.duckdb_memory_limit == "128MiB"
    assert settings.catalog == Path("mine.toml")  # relative to the config file, which is in the working directory
    (elsewhere / "closewatch.toml").write_text("[alerts]\nstep = 5\nno_such_key = 1\n")  # a section info and sql never read
    with pytest.raises(ConfigError, match=r"closewatch.toml: .*no_such_key"):
        quick_settings()


def test_a_named_config_file_that_is_missing_is_one_sentence(elsewhere, monkeypatch):
    with pytest.raises(ConfigError, match="Config file nowhere.toml does not exist"):
        quick_settings("nowhere.toml")
    monkeypatch.setenv("CLOSEWATCH_CONFIG", "gone.toml")
    with pytest.raises(ConfigError, match="unset CLOSEWATCH_CONFIG"):
        quick_settings()


def test_the_defaults_are_the_settings_models_defaults():
    assert Limits.from_settings(Settings()) == Limits()
    assert Settings().ingest_limits == IngestLimits() == QuickSettings(Path("x")).ingest_limits
    assert Settings().lock_timeout_s == QuickSettings(Path("x")).lock_timeout_s


def test_importing_it_imports_no_pydantic():
    code = "import sys, closewatch.quick_settings; print(sorted(m for m in ('pydantic', 'closewatch.settings') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
