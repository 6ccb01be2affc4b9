"""The Spark engine: closewatch's own ingest stage run by Apache Spark, writing the Parquet lake.

Reading raw logs is embarrassingly parallel per file, and files are what
production logs arrive as (rotated, per host, per pod). So each input is one
Spark task, and inside it runs exactly the local path's steps 1 and 2
(``closewatch.ingest.pipeline.staged_input``: format detection, the format's
polars parser over batches of lines, redaction, classification, event ids),
streamed out of ``mapInArrow`` as Arrow batches. One parser, not two: a file
gives the same closures whichever engine reads it.

A file is not split between tasks: the text parsers fold lines that belong
to one close across the whole file (an error report, its echo, the close), so
a file cut in two could read differently. One large file therefore runs on
one core; many files run on all of them.

Then, in Spark: duplicates within the run and against the lake's touched date
partitions are dropped (by event_id, like the local path's anti-join), the new
rows are written per date into the job's staging folder, and
``closewatch.lake.commit`` swaps the changed partitions in. The DuckDB file is
not touched.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from closewatch.ingest.envelopes import check_envelope_name
from closewatch.ingest.formats import ParseOptions
from closewatch.ingest.pipeline import STORED_CLOSURE_COLUMNS, check_format_name
from closewatch.ingest.sources import Input
from closewatch.ingest.timestamps import check_zone

from closewatch import lake as lakes
from closewatch.errors import ClosewatchError

DEFAULT_MASTER = "local[*]"
BATCH_ROWS = 65_536
#: Spark settings closewatch sets unless the user's [spark.conf] says otherwise.
_BASE_CONF = {
    "spark.sql.session.timeZone": "UTC",  # dates of partitions and timestamps are UTC
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.ui.showConsoleProgress": "false",
}
_LOCAL_CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}

_FILE_FIELDS = ["sha256", "status", "message", "lines_read", "accepted", "rejected", "skipped", "parse_s"]
_REJECT_FIELDS = ["line_no", "raw", "reason"]


class SparkJobError(ClosewatchError):
    """Spark cannot run the job as asked."""


@dataclass
class LakeReport:
    """What one Spark job did; the CLI prints it and the manifest keeps it."""

    job: str
    lake: Path
    inputs: list[dict[str, Any]] = field(default_factory=list)
    added: int = 0
    duplicates: int = 0
    rejects_added: int = 0
    partitions: list[str] = field(default_factory=list)
    seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # where the time went, in seconds

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        clock = time.perf_counter()
        yield
        self.phases[name] = self.phases.get(name, 0.0) + time.perf_counter() - clock


def ingest_to_lake(
    lake: str | os.PathLike,
    inputs: list[Input],
    master: str = DEFAULT_MASTER,
    format_name: str | None = None,
    tz: str = "UTC",
    catalog_path: str | Path | None = None,
    conf: dict[str, Any] | None = None,
    envelope: str | None = None,
    client_from: str | None = None,
) -> LakeReport:
    """Read every input with Spark and add its new closures and rejects to the lake, all or nothing.

    The options are the local path's (``closewatch.jobs.loading.ingest``) and mean the same.
    """
    from closewatch.analysis.catalog import load_catalog

    check_format_name(format_name)
    check_envelope_name(envelope)
    options = ParseOptions(tz=check_zone(tz), envelope=envelope, client_from=client_from)
    load_catalog(catalog_path)  # a bad catalog fails here, once, not in every task
    paths = _local_paths(inputs)
    clock = time.perf_counter()
    started = datetime.now(UTC)
    with lakes.writing(lake) as root:
        job, folder = lakes.new_job(root)
        report = LakeReport(job=job, lake=root)
        if paths:  # else every input was unreadable: nothing for Spark to do
            with report.phase("start Spark"):
                spark = spark_session(master, conf or {})
            _run(spark, root, folder, paths, format_name, options, str(catalog_path) if catalog_path else None, started, report)
        report.inputs += [_unreadable(source) for source in inputs if source.problem]
        report.seconds = time.perf_counter() - clock
        entry = {
            "job": job, "engine": "spark", "master": master, "started": started.isoformat(),
            "finished": datetime.now(UTC).isoformat(), "inputs": report.inputs,
            "closures_added": report.added, "duplicates": report.duplicates, "rejects_added": report.rejects_added,
        }
        with report.phase("commit"):
            report.partitions = [f"{table}/{part}" for table, part in lakes.commit(root, folder, entry)]
    return report


def spark_session(master: str, conf: dict[str, Any]):
    """A SparkSession for the master; a missing pyspark or Java is one sentence, not a traceback."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise SparkJobError("pyspark is not installed; install it with pip install 'closewatch[spark]' (and a Java runtime, e.g. apt-get install openjdk-17-jre-headless).") from None
    settings = dict(_BASE_CONF)
    if master.startswith("local"):
        settings.update(_LOCAL_CONF)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # local workers import this closewatch
    settings.update({key: str(value) for key, value in conf.items()})
    builder = SparkSession.builder.master(master).appName("closewatch-ingest")
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as error:  # pyspark raises its own runtime errors when the JVM cannot start
        raise SparkJobError(
            f"Spark could not start on {master} ({str(error).splitlines()[0]}); check that Java is installed "
            "(java -version; apt-get install openjdk-17-jre-headless) and that the master URL is right."
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    return session


# -- the job --------------------------------------------------------------------------


def _unreadable(source: Input) -> dict[str, Any]:
    """An input no task can open (a folder, a device, no permission): reported with its sentence, like the local path."""
    counts = dict.fromkeys(["lines_read", "accepted", "added", "duplicates", "rejected", "skipped"], 0)
    return {"source_file": source.name, "source_format": None, "sha256": "", "status": "unreadable",
            "message": source.problem, "parse_s": 0.0, **counts}


def _local_paths(inputs: list[Input]) -> list[str]:
    """Inputs as paths every task can open, largest first so the long tasks start first."""
    missing = [source.name for source in inputs if source.path is None and not source.problem]
    if missing:
        raise SparkJobError(f"The Spark engine reads files, not {missing[0]}; save the input to a file (or use the local engine).")
    ordered = sorted((source for source in inputs if not source.problem), key=lambda source: -(source.size or 0))
    return [str(source.path.resolve()) for source in ordered]


def _run(spark, root: Path, folder: Path, paths: list[str], format_name: str | None, options: ParseOptions,
         catalog: str | None, started: datetime, report: LakeReport) -> None:
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    files = spark.sparkContext.parallelize([(path,) for path in paths], max(1, len(paths))).toDF("path string")
    parse = functools.partial(_parse_files, format_name=format_name, options=options, catalog=catalog)
    with report.phase("parse"):
        files.mapInArrow(parse, _output_schema()).write.parquet(str(folder / "parsed"))
    parsed = spark.read.parquet(str(folder / "parsed"))

    with report.phase("deduplicate and write closures"):
        file_rows = [row.asDict() for row in parsed.filter("kind = 'file'").select("source_file", "source_format", *_FILE_FIELDS).collect()]
        first = Window.partitionBy("event_id").orderBy("source_file", "source_line")
        closures = (
            parsed.filter("kind = 'closure'")
            .withColumn("rank", F.row_number().over(first)).filter("rank = 1").drop("rank")
            .withColumn("date", F.to_date("ts"))
            .cache()  # read twice: for the dates it touches, then for the anti-join
        )
        fresh = _not_in_lake(spark, root, closures)
        fresh = fresh.select(*STORED_CLOSURE_COLUMNS, F.lit(started).alias("ingested_at"), "date")
        fresh.repartition("date").sortWithinPartitions("ts").write.partitionBy("date").parquet(str(folder / "closures"))
        added = _added_per_file(spark, folder / "closures")
        closures.unpersist()

    with report.phase("write rejects"):
        new_contents = _new_contents(file_rows, lakes.loaded_sha256s(lakes.read_manifest(root)))
        rejects = (
            parsed.filter("kind = 'reject'").filter(F.col("source_file").isin(list(new_contents)))
            .select("batch_id", "source_file", "line_no", "raw", "reason", F.lit(started.date()).alias("date"))
        )
        rejects.write.partitionBy("date").parquet(str(folder / "rejects"))
        report.rejects_added = _count_staged(spark, folder / "rejects")
    for row in sorted(file_rows, key=lambda r: r["source_file"]):
        row["added"] = added.get(row["source_file"], 0)
        row["duplicates"] = max(0, row["accepted"] - row["added"])
        report.inputs.append(row)
    report.added = sum(added.values())
    report.duplicates = sum(row["duplicates"] for row in report.inputs)


def _not_in_lake(spark, root: Path, closures):
    """The run's closures whose event_id is in none of the lake's partitions of the same dates."""
    dates = [row["date"] for row in closures.select("date").distinct().collect()]
    names = {f"date={day.isoformat()}" if day else f"date={lakes.NO_DATE}" for day in dates}
    live = [str(root / "closures" / name) for name in sorted(names) if any((root / "closures" / name).glob("*.parquet"))]
    if not live:
        return closures
    existing = spark.read.option("basePath", str(root / "closures")).parquet(*live).select("event_id")
    return closures.join(existing, "event_id", "left_anti")


def _count_staged(spark, staged: Path) -> int:
    return spark.read.parquet(str(staged)).count() if any(staged.glob("date=*/*.parquet")) else 0


def _added_per_file(spark, staged: Path) -> dict[str, int]:
    if not any(staged.glob("date=*/*.parquet")):
        return {}
    counts = spark.read.parquet(str(staged)).groupBy("source_file").count().collect()
    return {row["source_file"]: row["count"] for row in counts}


def _new_contents(file_rows: list[dict], loaded: set[str]) -> dict[str, str]:
    """source_file -> sha256 of the files whose rejects the lake does not have yet (one file per content)."""
    chosen: dict[str, str] = {}
    seen = set(loaded)
    for row in sorted(file_rows, key=lambda r: r["source_file"]):
        if row["status"] == "loaded" and row["sha256"] and row["sha256"] not in seen:
            seen.add(row["sha256"])
            chosen[row["source_file"]] = row["sha256"]
    return chosen


# -- inside the Spark tasks -------------------------------------------------------------


def _parse_files(batches, format_name: str | None, options: ParseOptions, catalog: str | None) -> Iterator:
    """mapInArrow: for every path, the local path's staged closures, rejects and one row of counts."""
    from closewatch.ingest.pipeline import staged_input
    from closewatch.ingest.sources import file_input

    schema = _arrow_schema()
    for batch in batches:
        for path in batch.column("path").to_pylist():
            with staged_input(file_input(Path(path)), _enrich(catalog), format_name, options) as staged:
                yield from _closure_batches(staged, schema)
                yield from _reject_batches(staged, schema)
                yield _file_batch(staged, schema)


@functools.lru_cache(maxsize=4)
def _enrich(catalog: str | None):
    from closewatch.analysis.catalog import classify, load_catalog

    loaded = load_catalog(catalog)
    return lambda events: classify(events, loaded)


def _closure_batches(staged, schema) -> Iterator:
    import pyarrow.parquet as pq

    if staged.closures is None:
        return
    result = staged.result
    for part in staged.closures:
        for batch in pq.ParquetFile(part).iter_batches(batch_size=BATCH_ROWS):
            columns = {name: batch.column(name) for name in batch.schema.names}
            yield _conform(columns | {"kind": "closure", "source_file": result.source,
                                      "source_format": result.format, "batch_id": result.batch_id},
                           batch.num_rows, schema)


def _reject_batches(staged, schema) -> Iterator:
    import pyarrow.parquet as pq

    result = staged.result
    for part in staged.rejects:
        for batch in pq.ParquetFile(part).iter_batches(batch_size=BATCH_ROWS, columns=["source_line", "raw", "reason"]):
            columns = {name: batch.column(name) for name in batch.schema.names}
            yield _conform({"kind": "reject", "source_file": result.source, "source_format": result.format,
                            "batch_id": result.batch_id, "line_no": columns["source_line"], "raw": columns["raw"],
                            "reason": columns["reason"]}, batch.num_rows, schema)


def _file_batch(staged, schema):
    result = staged.result
    values = {"kind": "file", "source_file": result.source, "source_format": result.format, "batch_id": result.batch_id,
              "sha256": staged.sha256, "status": result.status, "message": result.message,
              "lines_read": result.lines_read, "accepted": result.accepted, "rejected": result.rejected,
              "skipped": result.skipped, "parse_s": staged.parse_s}
    return _conform(values, 1, schema)


def _conform(values: dict[str, Any], rows: int, schema):
    """One RecordBatch of the output schema: lists are columns, scalars repeat, the rest is null."""
    import pyarrow as pa

    arrays = []
    for column in schema:
        value = values.get(column.name)
        if isinstance(value, list):
            arrays.append(pa.array(value, type=column.type))
        elif isinstance(value, pa.Array | pa.ChunkedArray):
            arrays.append(value.cast(column.type))
        else:
            arrays.append(pa.array([value] * rows, type=column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


#: Spark SQL types of the closures' columns (closewatch.schema); a column added there must be added here.
_CLOSURE_TYPES = {
    "event_id": "string", "ts": "timestamp", "session_id": "string", "close_code": "int", "close_reason": "string",
    "client_id": "string", "source_format": "string", "source_file": "string", "source_line": "bigint",
    "batch_id": "string", "audio_duration_s": "double", "session_duration_s": "double", "category": "string",
    "severity": "string", "retry_safe": "string", "action": "string", "chunk_ms": "double",
    "audio_rate_ratio": "double", "code_inferred": "boolean", "era": "string", "labels": "string",
}
#: What the tasks send back: one kind of row each (a closure, a reject, a file's counts), the other columns null.
_OUTPUT_COLUMNS: list[tuple[str, str]] = [
    ("kind", "string"),
    *((name, _CLOSURE_TYPES[name]) for name in STORED_CLOSURE_COLUMNS),
    ("line_no", "bigint"), ("raw", "string"), ("reason", "string"),
    ("sha256", "string"), ("status", "string"), ("message", "string"), ("lines_read", "bigint"),
    ("accepted", "bigint"), ("rejected", "bigint"), ("skipped", "bigint"), ("parse_s", "double"),
]


def _output_schema() -> str:
    return ", ".join(f"{name} {kind}" for name, kind in _OUTPUT_COLUMNS)


def _arrow_schema():
    import pyarrow as pa

    types = {"string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"), "int": pa.int32(), "bigint": pa.int64(),
             "double": pa.float64(), "boolean": pa.bool_()}
    return pa.schema([(name, types[kind]) for name, kind in _OUTPUT_COLUMNS])
