"""Detection thresholds: documented defaults, a user file overriding them, one-sentence errors."""

from datetime import timedelta

import pytest

from closewatch.analysis.errors import AnalysisError
from closewatch.analysis.thresholds import BUILTIN_PATH, load_thresholds
from closewatch.errors import ClosewatchError


def user_file(tmp_path, text: str):
    path = tmp_path / "thresholds.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_with_durations_as_timedeltas():
    thresholds = load_thresholds()
    assert thresholds.origin == "builtin"
    assert thresholds["repeated_violation"].window == timedelta(minutes=10)
    assert thresholds["error_spike"].k == 6.0
    assert "input_duration_violation" in thresholds["repeated_violation"].categories
    assert set(thresholds.sections()) >= {
        "general", "repeated_violation", "frequent_disconnects", "concurrency_saturation",
        "auth_failures", "expiry_cost_leak", "error_spike", "new_reason",
    }


def test_every_default_is_documented_by_a_comment_above_it():
    lines = BUILTIN_PATH.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            block = lines[max(0, number - 12):number]
            assert any(previous.startswith("#") for previous in block), f"{line!r} has no comment above it"


def test_a_user_file_overrides_only_the_keys_it_sets(tmp_path):
    thresholds = load_thresholds(user_file(tmp_path, '[repeated_violation]\nmin_count = 3\nwindow = "90s"\n[error_spike]\nk = 4\n'))
    assert thresholds["repeated_violation"].min_count == 3
    assert thresholds["repeated_violation"].window == timedelta(seconds=90)
    assert thresholds["repeated_violation"].merge_gap == timedelta(minutes=30)  # default kept
    assert thresholds["error_spike"].k == 4.0 and isinstance(thresholds["error_spike"].k, float)
    assert thresholds.origin.endswith("thresholds.toml")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[repeated_violaton]\nmin_count = 3\n", "[repeated_violaton] is not a thresholds section"),
        ("[repeated_violation]\nmin_cont = 3\n", "[repeated_violation] min_cont is not a threshold"),
        ("[repeated_violation]\nmin_count = 0\n", "[repeated_violation] min_count 0 must be a whole number of at least 1"),
        ("[repeated_violation]\nmin_count = 2.5\n", "min_count 2.5 must be a whole number"),
        ("[repeated_violation]\nmin_count = true\n", "min_count True must be a whole number"),
        ('[repeated_violation]\nwindow = "10 minutes"\n', "[repeated_violation] window '10 minutes' must be a positive duration"),
        ('[repeated_violation]\nwindow = "0s"\n', "window '0s' must be a positive duration"),
        ('[repeated_violation]\ncategories = ["input_duration_violation", "chunky"]\n', "names unknown category 'chunky'"),
        ("[repeated_violation]\ncategories = []\n", "must be a non-empty list of category names"),
        ("[frequent_disconnects]\nmin_share = 50\n", "[frequent_disconnects] min_share 50 is a share and must be at most 1"),
        ("[error_spike]\nk = -1\n", "[error_spike] k -1 must be a number greater than 0"),
        ("error_spike = 3\n", "error_spike must be a [error_spike] table"),
        ("[error_spike\nk = 1\n", "is not valid TOML"),
    ],
)
def test_bad_files_fail_with_one_sentence_naming_section_and_key(tmp_path, text, message):
    with pytest.raises(AnalysisError) as error:
        load_thresholds(user_file(tmp_path, text))
    assert message in str(error.value)
    assert str(error.value).endswith("run again.")
    assert isinstance(error.value, ClosewatchError)
    assert "\n" not in str(error.value).strip()


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(AnalysisError, match="nothere.toml does not exist"):
        load_thresholds(tmp_path / "nothere.toml")


def test_durations_use_the_one_grammar(tmp_path):
    """The thresholds file reads durations like every other file: "1h30m", "500ms", "1w", or seconds."""
    thresholds = load_thresholds(user_file(tmp_path, '[repeated_violation]\nwindow = "1h30m"\nmerge_gap = 90\n[new_reason]\nlearning = "1w"\n'))
    assert thresholds["repeated_violation"].window == timedelta(hours=1, minutes=30)
    assert thresholds["repeated_violation"].merge_gap == timedelta(seconds=90)
    assert thresholds["new_reason"].learning == timedelta(weeks=1)
