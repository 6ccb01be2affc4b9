"""The Parquet lake that ``ingest --engine spark`` writes: its layout, how readers see it, how writers commit.

Layout (docs/spark.md has it for other readers)::

    DIR/closures/date=YYYY-MM-DD/part-*.parquet   the UTC day of ts (date=__HIVE_DEFAULT_PARTITION__: no ts)
    DIR/rejects/date=YYYY-MM-DD/part-*.parquet    the UTC day of the job that read them
    DIR/_manifest.json                            every job: its inputs with sha256 and counts
    DIR/_staging/JOB/                             a job's work in progress (readers skip names with _ or .)
    DIR/_lock                                     held by the one job that writes

Readers: ``attach`` gives a store connection a TEMP VIEW ``closures`` over the
file's own table UNION ALL BY NAME the lake (a local row wins over a lake row
with the same event_id), so every query, view, detector, alert rule and
dashboard page reads both without knowing. The lake is scanned through a
pyarrow dataset, which also works on the locked-down connections of users'
ad-hoc queries (no file-system access there), and which receives DuckDB's
filters on ts so row groups outside a window are skipped by their statistics.

Writers: a job stages every partition it changes in full under
``_staging/JOB`` (new files, plus hard links to the partition's current
files), then writes ``COMMIT.json`` (the commit point) and swaps each staged
partition in with two renames. A job killed before the commit point leaves
the lake as it was (its staging is removed by the next job); one killed after
it is rolled forward by the next job. Readers never see half a partition.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from closewatch.errors import StoreError

TABLES = ("closures", "rejects")
MANIFEST = "_manifest.json"
STAGING = "_staging"
LOCK = "_lock"
COMMIT = "COMMIT.json"
NO_DATE = "__HIVE_DEFAULT_PARTITION__"  # Spark's and Hive's name for a null partition value
MANIFEST_FORMAT = 1


class LakeError(StoreError):
    """The lake cannot be read or written as asked."""


class LakeBusy(LakeError):
    """Another job is writing to the lake."""


# -- reading -----------------------------------------------------------------------


def check_lake(root: str | os.PathLike) -> Path:
    """The lake folder a user named; it must exist (a new lake is made by the first Spark ingest)."""
    path = Path(root).expanduser().resolve()
    if not path.is_dir():
        raise LakeError(f"Lake {path} is not a folder; check --lake (or [store] lake), or create it with closewatch ingest --engine spark --lake {path}.")
    return path


def has_closures(root: Path) -> bool:
    folder = root / "closures"
    return folder.is_dir() and any(folder.glob("date=*/*.parquet"))


def attach(con: duckdb.DuckDBPyConnection, root: Path) -> None:
    """Make ``closures`` on this connection the union of the file's table and the lake's closures.

    Temporary objects shadow the file's own: the TEMP VIEW is found first by
    every query and by the file's views (closures_daily, ...), while the
    table stays reachable by its full name, database.main.closures. Writes to
    ``closures`` fail on such a connection, so writers ask the store for one
    without the lake.
    """
    if not has_closures(root):
        return
    import pyarrow as pa
    import pyarrow.dataset as ds

    partitioning = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    dataset = ds.dataset(root / "closures", format="parquet", partitioning=partitioning)
    con.register("closewatch_lake_closures", dataset)
    database = str(con.execute("SELECT current_database()").fetchone()[0]).replace('"', '""')  # type: ignore[index]  # always one row
    local = f'"{database}".main.closures'
    con.execute(f"""
        CREATE OR REPLACE TEMP VIEW closures AS
        SELECT * FROM {local}
        UNION ALL BY NAME
        SELECT * EXCLUDE (date) FROM closewatch_lake_closures AS lake
        WHERE NOT EXISTS (SELECT 1 FROM {local} AS own WHERE own.event_id = lake.event_id)
    """)


def read_manifest(root: Path) -> dict[str, Any]:
    path = root / MANIFEST
    if not path.exists():
        return {"format": MANIFEST_FORMAT, "jobs": []}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise LakeError(f"{path} cannot be read ({error}); restore it from a backup or move it away.") from None


def loaded_sha256s(manifest: dict[str, Any]) -> set[str]:
    """The contents the lake already holds the rejects of (closures are deduplicated by event_id anyway)."""
    return {entry["sha256"] for job in manifest["jobs"] for entry in job["inputs"] if entry.get("sha256") and entry.get("status") == "loaded"}


# -- writing -----------------------------------------------------------------------


@contextmanager
def writing(root: str | os.PathLike) -> Iterator[Path]:
    """Hold the lake's write lock (one writer at a time), after finishing or clearing earlier jobs."""
    path = Path(root).expanduser().resolve()
    for table in TABLES:
        (path / table).mkdir(parents=True, exist_ok=True)
    (path / STAGING).mkdir(exist_ok=True)
    with open(path / LOCK, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise LakeBusy(f"Lake {path} is being written by {holder}; wait for that ingest to finish and run again.") from None
        handle.truncate(0)
        handle.write(f"PID {os.getpid()}")
        handle.flush()
        recover(path)
        yield path


def new_job(root: Path) -> tuple[str, Path]:
    """A job id and its private staging folder."""
    job = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    folder = root / STAGING / job
    folder.mkdir(parents=True)
    return job, folder


def recover(root: Path) -> None:
    """Roll committed jobs forward and remove the staging of jobs killed before their commit point."""
    for folder in sorted((root / STAGING).iterdir()):
        if (folder / COMMIT).exists():
            _roll_forward(root, folder)
        else:
            shutil.rmtree(folder, ignore_errors=True)


def staged_partitions(job_folder: Path) -> list[tuple[str, str]]:
    """(table, 'date=...') of every partition a job staged."""
    return [(table, part.name) for table in TABLES if (job_folder / table).is_dir()
            for part in sorted((job_folder / table).glob("date=*")) if part.is_dir()]


def commit(root: Path, job_folder: Path, entry: dict[str, Any]) -> list[tuple[str, str]]:
    """Make the staged partitions live and record the job in the manifest; returns what was swapped."""
    swaps = staged_partitions(job_folder)
    for table, part in swaps:
        _complete(root / table / part, job_folder / table / part)
    _write_atomically(job_folder / COMMIT, {"swaps": swaps, "entry": entry})
    _roll_forward(root, job_folder)
    return swaps


def drop_partitions_before(root: Path, day: str) -> list[str]:
    """Retention: remove whole date partitions older than ``day`` (YYYY-MM-DD); returns what went."""
    dropped = []
    with writing(root) as path:
        for table in TABLES:
            for part in sorted((path / table).glob("date=*")):
                value = part.name.split("=", 1)[1]
                if value != NO_DATE and value < day:
                    trash = path / STAGING / f"drop-{uuid.uuid4().hex[:8]}"
                    part.rename(trash)  # one rename: readers see the whole partition or none of it
                    shutil.rmtree(trash)
                    dropped.append(f"{table}/{part.name}")
    return dropped


def _complete(live: Path, staged: Path) -> None:
    """Stage the partition in full: its current files join the new ones, as hard links (no copy)."""
    if not live.is_dir():
        return
    for existing in live.iterdir():
        if existing.name.startswith((".", "_")):
            continue
        target = staged / existing.name
        if not target.exists():
            try:
                os.link(existing, target)
            except OSError:
                shutil.copy2(existing, target)


def _roll_forward(root: Path, job_folder: Path) -> None:
    """Swap in every staged partition of a committed job (each step can be repeated after a kill)."""
    plan = json.loads((job_folder / COMMIT).read_text(encoding="utf-8"))
    old = job_folder / "replaced"
    for table, part in plan["swaps"]:
        staged, live = job_folder / table / part, root / table / part
        if not staged.exists():
            continue  # swapped before the kill
        if live.exists():
            (old / table).mkdir(parents=True, exist_ok=True)
            live.rename(old / table / part)
        staged.rename(live)
    manifest = read_manifest(root)
    if all(job.get("job") != plan["entry"].get("job") for job in manifest["jobs"]):
        manifest["jobs"].append(plan["entry"])
        _write_atomically(root / MANIFEST, manifest)
    shutil.rmtree(job_folder)


def _write_atomically(path: Path, data: Any) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1, default=str)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
