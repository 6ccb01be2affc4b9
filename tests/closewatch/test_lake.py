"""The lake as the store reads it and as writers commit to it, without Spark (plain Parquet files).

Spark itself is exercised in tests/jobs/test_spark.py (marker spark).
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest

from closewatch import lake as lakes
from closewatch.errors import ReadOnlyQuery
from closewatch.store import Store


def write_partition(folder: Path, rows: list[tuple[str, str | None, str]], name: str = "part-0.parquet") -> None:
    """Closures (event_id, ts, category) as one Parquet file, the way the Spark job stages them."""
    folder.mkdir(parents=True, exist_ok=True)
    values = ", ".join(f"('{e}', {'NULL' if ts is None else repr(ts)}::TIMESTAMPTZ, '{c}')" for e, ts, c in rows)
    duckdb.sql(f"COPY (SELECT * FROM (VALUES {values}) AS t(event_id, ts, category)) TO '{folder / name}' (FORMAT parquet)")


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    write_partition(root / "closures" / "date=2024-05-01", [("lake-1", "2024-05-01 10:00:00+00", "normal"),
                                                           ("both", "2024-05-01 11:00:00+00", "normal")])
    write_partition(root / "closures" / f"date={lakes.NO_DATE}", [("lake-2", None, "auth_failed")])
    return root


@pytest.fixture
def local(store: Store) -> Store:
    with store.transaction() as con:
        con.execute("INSERT INTO closures (event_id, ts, category) VALUES ('own', '2024-05-02 09:00:00+00', 'session_expired'), "
                    "('both', '2024-05-01 11:00:00+00', 'reclassified')")
    return store


def test_closures_are_the_union_and_a_local_row_wins(local: Store, lake: Path):
    with_lake = Store(local.path, lake=lake)
    rows = with_lake.query("SELECT event_id, category FROM closures ORDER BY event_id").rows()
    assert rows == [("both", "reclassified"), ("lake-1", "normal"), ("lake-2", "auth_failed"), ("own", "session_expired")]
    daily = with_lake.query("SELECT sum(closures)::BIGINT FROM closures_daily").item()
    assert daily == 4  # the file's own views read the union too
    assert local.query("SELECT count(*) FROM closures").item() == 2  # without a lake: the file alone


def test_date_filters_reach_the_lake_scan(local: Store, lake: Path):
    with Store(local.path, lake=lake).connect(read_only=True) as con:
        plan = "\n".join(row[1] for row in con.execute("EXPLAIN SELECT count(*) FROM closures WHERE ts >= '2024-05-02'").fetchall())
    assert "ARROW_SCAN" in plan
    assert "Filters" in plan and "ts>=" in plan.replace(" ", "")


def test_user_queries_read_the_lake_but_still_cannot_touch_files(local: Store, lake: Path):
    with_lake = Store(local.path, lake=lake)
    assert with_lake.user_query("SELECT count(*) FROM closures").item() == 4
    with pytest.raises(ReadOnlyQuery):
        with_lake.user_query(f"COPY (SELECT 1) TO '{lake / 'closures' / 'x.csv'}'")
    assert not (lake / "closures" / "x.csv").exists()


def test_writers_of_closures_still_reach_the_table(local: Store, lake: Path):
    with_lake = Store(local.path, lake=lake)
    with pytest.raises(duckdb.Error), with_lake.transaction() as con:
        con.execute("INSERT INTO closures (event_id) VALUES ('x')")
    with with_lake.transaction(lake=False) as con:
        con.execute("INSERT INTO closures (event_id) VALUES ('x')")
    assert with_lake.query("SELECT count(*) FROM closures").item() == 5


def test_a_missing_lake_is_one_sentence(tmp_path: Path):
    with pytest.raises(lakes.LakeError, match="is not a folder"):
        Store(tmp_path / "db.duckdb", lake=tmp_path / "nowhere")


def stage_job(root: Path, rows: list[tuple[str, str | None, str]]) -> Path:
    with lakes.writing(root):
        _, folder = lakes.new_job(root)
    write_partition(folder / "closures" / "date=2024-05-01", rows, name="part-new.parquet")
    return folder


def test_commit_swaps_whole_partitions_keeping_their_files(lake: Path):
    folder = stage_job(lake, [("lake-3", "2024-05-01 12:00:00+00", "normal")])
    swapped = lakes.commit(lake, folder, {"job": "j1", "inputs": []})
    assert swapped == [("closures", "date=2024-05-01")]
    names = sorted(p.name for p in (lake / "closures" / "date=2024-05-01").iterdir())
    assert names == ["part-0.parquet", "part-new.parquet"]
    assert not folder.exists()
    assert [job["job"] for job in json.loads((lake / lakes.MANIFEST).read_text())["jobs"]] == ["j1"]


def test_an_uncommitted_job_is_cleared_and_a_committed_one_rolled_forward(lake: Path):
    before = sorted(p.name for p in (lake / "closures" / "date=2024-05-01").iterdir())
    killed = stage_job(lake, [("lost", "2024-05-01 12:00:00+00", "normal")])
    with lakes.writing(lake):
        pass
    assert not killed.exists()
    assert sorted(p.name for p in (lake / "closures" / "date=2024-05-01").iterdir()) == before

    committed = stage_job(lake, [("kept", "2024-05-01 13:00:00+00", "normal")])
    lakes._complete(lake / "closures" / "date=2024-05-01", committed / "closures" / "date=2024-05-01")
    (committed / lakes.COMMIT).write_text(json.dumps({"swaps": [["closures", "date=2024-05-01"]], "entry": {"job": "j2"}}))
    (lake / "closures" / "date=2024-05-01").rename(lake / "half-swapped")  # killed between the two renames
    with lakes.writing(lake):
        pass
    ids = Store(lake.parent / "db.duckdb", lake=lake).query("SELECT event_id FROM closures ORDER BY 1")["event_id"].to_list()
    assert ids == ["both", "kept", "lake-1", "lake-2"]


def test_one_writer_at_a_time(lake: Path):
    with lakes.writing(lake), pytest.raises(lakes.LakeBusy, match="being written by PID"), lakes.writing(lake):
        pass


def test_retention_drops_whole_old_partitions(lake: Path):
    write_partition(lake / "closures" / "date=2024-06-01", [("june", "2024-06-01 10:00:00+00", "normal")])
    assert lakes.drop_partitions_before(lake, "2024-05-15") == ["closures/date=2024-05-01"]
    ids = Store(lake.parent / "db.duckdb", lake=lake).query("SELECT event_id FROM closures ORDER BY 1")["event_id"].to_list()
    assert ids == ["june", "lake-2"]


def test_the_lake_and_spark_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from closewatch.settings import load_settings

    config = tmp_path / "closewatch.toml"
    config.write_text('[store]\nlake = "cw-lake"\n[spark]\nmaster = "local[2]"\n[spark.conf]\n"spark.sql.shuffle.partitions" = 2\n')
    monkeypatch.delenv("CLOSEWATCH_LAKE", raising=False)
    settings = load_settings(config)
    assert settings.store.lake == tmp_path / "cw-lake"  # relative to the config file
    assert (settings.spark.master, settings.spark.conf) == ("local[2]", {"spark.sql.shuffle.partitions": 2})
    monkeypatch.setenv("CLOSEWATCH_LAKE", "/elsewhere")
    assert load_settings(config).store.lake == Path("/elsewhere")
    assert load_settings(config, lake="given").store.lake == Path("given")


def test_lake_drop_from_the_command_line(lake: Path, run):
    result = run("--lake", str(lake), "lake", "drop", "--before", "2024-05-15")
    assert result.exit_code == 0, result.output
    assert "Dropped 1 partitions: closures/date=2024-05-01." in result.output
    assert not (lake / "closures" / "date=2024-05-01").exists() and (lake / "closures" / f"date={lakes.NO_DATE}").exists()
    missing = run("--lake", str(lake.parent / "nowhere"), "lake", "drop", "--before", "2024-05-15")
    assert missing.exit_code == 1 and "is not a folder" in missing.output


def test_closewatch_sql_and_info_read_the_lake(local: Store, lake: Path, run):
    """`closewatch sql` runs in its own process on the snapshot (closewatch/sandbox.py run_here): the lake is read there too."""
    answer = run("--lake", str(lake), "sql", "SELECT count(*) AS n FROM closures", "--format", "json")
    assert answer.exit_code == 0, answer.output
    assert json.loads(answer.stdout) == [{"n": 4}]
    refused = run("--lake", str(lake), "sql", f"COPY (SELECT 1) TO '{lake / 'closures' / 'x.csv'}'")
    assert refused.exit_code == 1 and "cannot read or write files" in refused.stderr and not (lake / "closures" / "x.csv").exists()
    assert "closures: 4" in run("--lake", str(lake), "info").stdout
