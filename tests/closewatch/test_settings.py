"""The one settings object: options over environment over the config file over defaults; paths
relative to whatever named them; every mistake one sentence naming the file, section and key."""

from pathlib import Path

import pytest

from closewatch.errors import ConfigError
from closewatch.settings import Settings, load_settings

FULL = """
[store]
lock_timeout_s = 2.5

[analysis]
catalog = "codes/mine.toml"
thresholds = "/abs/strict.toml"

[alerts]
rules = "alerts.toml"
step = "2m"
lateness = 0
retry_base = "500ms"

[scheduler]
watch = "~/incoming"
analyze_window = "1w"

[dashboard]
alerts_refresh = "30s"
"""


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory that is not the config file's folder, and no CLOSEWATCH_* variables."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("CLOSEWATCH_DB", raising=False)
    monkeypatch.delenv("CLOSEWATCH_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return cwd


def write_config(tmp_path, text: str) -> Path:
    path = tmp_path / "etc" / "closewatch.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    return path


def test_no_config_file_means_the_defaults(elsewhere):
    settings = load_settings()
    assert settings == Settings(db=Path("closewatch.duckdb"))
    assert (settings.path, settings.lock_timeout_s, settings.catalog, settings.analysis.thresholds) == (None, 30.0, None, None)
    assert settings.scheduler.ingest_every_s == 30 and settings.alerts.step_s == 60


def test_every_section_is_typed_and_paths_are_relative_to_the_config_file(elsewhere, tmp_path):
    config = write_config(tmp_path, FULL)
    settings = load_settings(config)
    etc = tmp_path / "etc"
    assert settings.path == config
    assert settings.lock_timeout_s == 2.5
    assert settings.catalog == etc / "codes" / "mine.toml"
    assert settings.analysis.thresholds == Path("/abs/strict.toml")
    assert settings.alerts.rules == etc / "alerts.toml"
    assert (settings.alerts.step_s, settings.alerts.lateness_s, settings.alerts.retry_base_s) == (120, 0, 0.5)
    assert settings.scheduler.watch == tmp_path / "home" / "incoming"
    assert settings.scheduler.analyze_window_s == 7 * 86400
    assert settings.dashboard.alerts_refresh_s == 30


def test_options_beat_the_environment_which_beats_the_file(elsewhere, tmp_path, monkeypatch):
    config = write_config(tmp_path, FULL)
    monkeypatch.setenv("CLOSEWATCH_CONFIG", str(config))
    monkeypatch.setenv("CLOSEWATCH_DB", "from-env.duckdb")
    from_env = load_settings()
    assert (from_env.path, from_env.db, from_env.lock_timeout_s) == (config, Path("from-env.duckdb"), 2.5)
    from_options = load_settings(config, db="from-option.duckdb", lock_timeout_s=0)
    assert (from_options.db, from_options.lock_timeout_s) == (Path("from-option.duckdb"), 0)
    watched = from_options.overriding("scheduler", watch=Path("/data/in"), format=None)
    assert watched.scheduler.watch == Path("/data/in") and watched.scheduler.format is None
    assert from_options.scheduler.watch == tmp_path / "home" / "incoming"  # the original is unchanged


def test_a_closewatch_toml_in_the_working_directory_is_read(elsewhere):
    (elsewhere / "closewatch.toml").write_text('[analysis]\nthresholds = "t.toml"\n')
    assert load_settings().analysis.thresholds == Path("t.toml")


@pytest.mark.parametrize("text, words", [
    ("[store]\nlock_timeout_s = 'soon'\n", "[store] lock_timeout_s must be a number of seconds >= 0"),
    ("[store]\nlock_timeout = 3\n", "[store] has no setting 'lock_timeout' (known: lock_timeout_s, lake)"),
    ("[analysis]\nthreshold = 'x.toml'\n", "[analysis] has no setting 'threshold' (known: catalog, thresholds)"),
    ("[analysis]\ncatalog = 3\n", "[analysis] catalog must be a file path"),
    ("[alerts]\nstep = '0s'\n", "[alerts] step must be a duration longer than 0"),
    ("[alerts]\nlateness = 'later'\n", "[alerts] lateness must be a duration like \"30s\", not 'later'"),
    ("[dashboard]\nalerts_refresh = 'often'\n", "[dashboard] alerts_refresh must be a duration"),
    ("[stores]\nlock_timeout_s = 3\n", "there is no [stores] section (the sections are store, analysis, alerts, scheduler, dashboard, sql, spark, ingest, follow)"),
    ("analysis = 3\n", "[analysis] must be a table"),
])
def test_a_mistake_is_one_sentence_naming_the_file_section_and_key(elsewhere, tmp_path, text, words):
    config = write_config(tmp_path, text)
    with pytest.raises(ConfigError) as error:
        load_settings(config)
    message = str(error.value)
    assert message.startswith(f"{config}: ") and words in message, message
    assert message.endswith("fix the config file.") and "\n" not in message


def test_a_missing_or_broken_config_file_is_named(elsewhere, tmp_path):
    with pytest.raises(ConfigError, match="nothere.toml does not exist"):
        load_settings(tmp_path / "nothere.toml")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(write_config(tmp_path, "[store\n"))
