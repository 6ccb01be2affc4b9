"""The database schema, versioned: each migration moves a database one version up.

A database records its version in ``schema_version``. Opening an older one
applies the missing migrations in one transaction; a newer one is refused,
because this closewatch would not know what the newer columns mean.
Stages that add tables append a migration here (never edit a released one).
"""

from __future__ import annotations

CLOSURES_COLUMNS = """
    event_id            VARCHAR NOT NULL,
    ts                  TIMESTAMPTZ,
    session_id          VARCHAR,
    close_code          INTEGER,
    close_reason        VARCHAR,
    client_id           VARCHAR,
    source_format       VARCHAR,
    source_file         VARCHAR,
    source_line         BIGINT,
    batch_id            VARCHAR,
    audio_duration_s    DOUBLE,
    session_duration_s  DOUBLE,
    category            VARCHAR,
    severity            VARCHAR,
    retry_safe          VARCHAR,
    action              VARCHAR,
    chunk_ms            DOUBLE,
    audio_rate_ratio    DOUBLE,
    code_inferred       BOOLEAN,
    era                 VARCHAR,
    ingested_at         TIMESTAMPTZ
"""

V1 = f"""
CREATE TABLE closures ({CLOSURES_COLUMNS});

CREATE TABLE ingest_batches (
    batch_id      VARCHAR PRIMARY KEY,
    source_file   VARCHAR,
    sha256        VARCHAR,
    format        VARCHAR,
    started_at    TIMESTAMPTZ,
    finished_at   TIMESTAMPTZ,
    lines_read    BIGINT,
    accepted      BIGINT,
    duplicates    BIGINT,
    rejected      BIGINT,
    skipped       BIGINT,
    status        VARCHAR,   -- loaded / no_events
    parse_s       DOUBLE,
    load_s        DOUBLE,
    message       VARCHAR
);

CREATE TABLE rejects (
    batch_id     VARCHAR,
    source_file  VARCHAR,
    line_no      BIGINT,
    raw          VARCHAR,   -- cut to 2 KB, secrets redacted
    reason       VARCHAR
);

CREATE TABLE detections (
    detection_id  VARCHAR PRIMARY KEY,  -- deterministic: pattern, key and window
    pattern       VARCHAR,              -- repeated_violation, frequent_disconnects, ...
    key           VARCHAR,              -- the client, session or category it is about
    window_start  TIMESTAMPTZ,
    window_end    TIMESTAMPTZ,
    count         BIGINT,
    severity      VARCHAR,
    explanation   VARCHAR,              -- one sentence with the numbers
    action        VARCHAR,              -- what to do
    evidence      VARCHAR[],            -- event ids
    detected_at   TIMESTAMPTZ
);

CREATE VIEW closures_daily AS
SELECT date_trunc('day', ts) AS day, category, severity, count(*) AS closures
FROM closures GROUP BY ALL;

CREATE VIEW closures_hourly AS
SELECT date_trunc('hour', ts) AS hour, category, severity, count(*) AS closures
FROM closures GROUP BY ALL;

CREATE VIEW client_error_rates AS
SELECT client_id,
       count(*) AS closures,
       count(*) FILTER (WHERE category <> 'normal') AS errors,
       round(count(*) FILTER (WHERE category <> 'normal') / count(*), 4) AS error_rate,
       min(ts) AS first_seen,
       max(ts) AS last_seen
FROM closures GROUP BY client_id;
"""

#: version -> SQL that brings a database from version-1 to version.
MIGRATIONS: dict[int, str] = {
    1: V1,
}

LATEST = max(MIGRATIONS)
