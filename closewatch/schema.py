"""The database schema, versioned: each migration moves a database one version up.

A database records its version in ``schema_version``. Opening an older one
applies the missing migrations in one transaction; a newer one is refused,
because this closewatch would not know what the newer columns mean.
Stages that add tables append a migration here (never edit a released one).
"""

from __future__ import annotations

from closewatch.summary_views import ERROR_RATE_VIEWS_V8
from closewatch.summary_views import MIGRATION_SQL as SUMMARIES_V3

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

V2 = """
-- alerts (alerts/state.py, alerts/silences.py, alerts/outbox.py; jobs/scheduler.py); see docs/alerts.md
CREATE TABLE alert_state (
    rule           VARCHAR NOT NULL,
    group_key      VARCHAR NOT NULL,   -- 'client_id=acme', '' when the rule has no group_by
    group_values   VARCHAR,            -- the same as a JSON object
    state          VARCHAR NOT NULL,   -- inactive / pending / firing / resolved
    pending_since  TIMESTAMPTZ,
    fired_at       TIMESTAMPTZ,
    resolved_at    TIMESTAMPTZ,
    notified_at    TIMESTAMPTZ,        -- evaluation time of the last notification of this firing
    last_true      TIMESTAMPTZ,        -- last evaluation time at which the condition held
    value          DOUBLE,
    updated_at     TIMESTAMPTZ,
    PRIMARY KEY (rule, group_key)
);

CREATE TABLE alert_events (
    event_id     VARCHAR PRIMARY KEY,  -- deterministic: rule, group, new state, time
    rule         VARCHAR,
    group_key    VARCHAR,
    from_state   VARCHAR,
    to_state     VARCHAR,
    event_time   TIMESTAMPTZ,          -- evaluation time (event time) of the transition
    value        DOUBLE,
    severity     VARCHAR,
    recorded_at  TIMESTAMPTZ
);

CREATE TABLE alert_watermarks (
    rule          VARCHAR PRIMARY KEY,
    evaluated_to  TIMESTAMPTZ,         -- every evaluation time up to here has been evaluated once
    updated_at    TIMESTAMPTZ
);

CREATE TABLE alert_silences (
    silence_id   VARCHAR PRIMARY KEY,
    rule         VARCHAR,
    group_match  VARCHAR,              -- NULL: every group of the rule
    created_at   TIMESTAMPTZ,
    expires_at   TIMESTAMPTZ,
    comment      VARCHAR,
    created_by   VARCHAR,
    ended_at     TIMESTAMPTZ           -- set by unsilence
);

CREATE TABLE alert_outbox (
    notification_id  VARCHAR PRIMARY KEY,  -- deterministic: rule, group, kind, time, channel
    rule             VARCHAR,
    group_key        VARCHAR,
    kind             VARCHAR,              -- firing / repeat / resolved
    event_time       TIMESTAMPTZ,          -- evaluation time that caused it
    channel          VARCHAR,              -- a channel name of the rules file; never its URL
    payload          VARCHAR,              -- the message as JSON
    status           VARCHAR,              -- pending / delivered
    attempts         INTEGER,
    created_at       TIMESTAMPTZ,
    next_attempt_at  TIMESTAMPTZ,
    last_attempt_at  TIMESTAMPTZ,
    last_error       VARCHAR,
    delivered_at     TIMESTAMPTZ
);

CREATE TABLE job_runs (
    run_id       VARCHAR PRIMARY KEY,
    job          VARCHAR,              -- ingest / analyze / evaluate / deliver
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    outcome      VARCHAR,              -- running / ok / error (running forever: the process died)
    error        VARCHAR,
    detail       VARCHAR,
    pid          INTEGER
);

CREATE TABLE watched_files (
    path      VARCHAR PRIMARY KEY,
    size      BIGINT,
    mtime_ns  BIGINT,
    sha256    VARCHAR,
    batch_id  VARCHAR,
    status    VARCHAR,                 -- ingested / already_loaded / failed
    message   VARCHAR,
    seen_at   TIMESTAMPTZ
);

CREATE VIEW alerts_active AS
SELECT * FROM alert_state WHERE state IN ('pending', 'firing');

CREATE VIEW scheduler_health AS
SELECT job, arg_max(outcome, started_at) AS last_outcome, max(started_at) AS last_started,
       max(finished_at) FILTER (WHERE outcome = 'ok') AS last_ok, arg_max(error, started_at) AS last_error,
       count(*) FILTER (WHERE outcome = 'error') AS errors, count(*) AS runs
FROM job_runs GROUP BY job;
"""

#: version -> SQL that brings a database from version-1 to version.
#: A stamp per change that is not an ingest batch (reclassify), so readers'
#: caches notice it; and the hourly/daily views on integer arithmetic, which
#: is ten times faster than date_trunc on TIMESTAMPTZ (no calendar lookups:
#: hours and days are in UTC).
V4 = """
CREATE TABLE data_changes (
    changed_at  TIMESTAMPTZ DEFAULT now(),
    change      VARCHAR,      -- reclassify
    rows        BIGINT
);

CREATE OR REPLACE VIEW closures_hourly AS
SELECT make_timestamptz(epoch_us(ts) // 3600000000 * 3600000000) AS hour, category, severity, count(*) AS closures
FROM closures GROUP BY ALL;

CREATE OR REPLACE VIEW closures_daily AS
SELECT make_timestamptz(epoch_us(ts) // 86400000000 * 86400000000) AS day, category, severity, count(*) AS closures
FROM closures GROUP BY ALL;
"""

#: The labels of the envelope a close was read inside (pod, container, host, unit, log stream, service...),
#: as a JSON object; NULL for plain logs.
V5 = """
ALTER TABLE closures ADD COLUMN labels VARCHAR;
"""

#: A claim on each outbox row before it is sent, so that any number of
#: deliverers (the scheduler, `alerts run`, `alerts deliver`) send it once:
#: the claimer's id and a lease that lets another deliverer take the row over
#: if the claimer died (alerts/outbox.py).
V6 = """
ALTER TABLE alert_outbox ADD COLUMN claimed_by VARCHAR;
ALTER TABLE alert_outbox ADD COLUMN claimed_until TIMESTAMPTZ;
"""

#: Followed files and streams (closewatch.ingest.follow): per file its identity (device, inode and a
#: fingerprint of its first bytes), how far it is read, the format found once from its first lines and its
#: counts; and per follower the time up to which everything its sources wrote is stored, which lets the
#: alert engine's frontier move with the clock while the store is fed live (closewatch.alerts).
V7 = """
CREATE TABLE follow_state (
    follow_id          VARCHAR PRIMARY KEY,
    kind               VARCHAR,      -- file / stream
    path               VARCHAR,      -- where the file was last seen; a stream's name (<stdin>)
    device             BIGINT,
    inode              BIGINT,
    fingerprint        VARCHAR,      -- sha256 of the first fingerprint_bytes bytes (decompressed)
    fingerprint_bytes  INTEGER,
    read_offset        BIGINT,       -- bytes read and stored
    line_no            BIGINT,       -- lines before read_offset
    format             VARCHAR,      -- found once, from the first lines
    envelope           VARCHAR,
    batch_id           VARCHAR,      -- its ingest_batches row
    status             VARCHAR,      -- following / rotated / done / gone / truncated / moved / ended
    lines              BIGINT,
    accepted           BIGINT,
    duplicates         BIGINT,
    rejected           BIGINT,
    size               BIGINT,       -- bytes in the file when last looked at: lag is size - read_offset
    lines_per_s        DOUBLE,
    last_close_at      TIMESTAMPTZ,  -- the newest close time read
    last_read_at       TIMESTAMPTZ,  -- the last commit that stored lines
    started_at         TIMESTAMPTZ,
    updated_at         TIMESTAMPTZ,
    error              VARCHAR,      -- the last problem, one sentence
    continued_by       VARCHAR       -- status moved: the follow_id reading on (a rotated file compressed)
);

CREATE TABLE follow_marks (
    follower     VARCHAR PRIMARY KEY,
    live_until   TIMESTAMPTZ,        -- everything its sources wrote before this is stored
    fresh_until  TIMESTAMPTZ,        -- the mark counts until then: a follower that died stops counting
    pid          INTEGER,
    updated_at   TIMESTAMPTZ
);

CREATE VIEW follow_health AS
SELECT path, kind, status, read_offset, greatest(coalesce(size, read_offset) - read_offset, 0) AS lag_bytes,
       lines, accepted, duplicates, rejected, lines_per_s, last_close_at, last_read_at,
       date_diff('millisecond', last_close_at, now()) / 1000.0 AS close_age_s, format, envelope, error, updated_at
FROM follow_state WHERE status IN ('following', 'rotated') OR updated_at > now() - INTERVAL 1 HOUR;
"""

#: Where the detections stand (analysis.detection, analysis.incremental): the window, thresholds and data
#: the last detection run saw, so the next run can analyse only the closures stored since (one row).
V9 = """
CREATE TABLE analysis_marks (
    mark          VARCHAR PRIMARY KEY,  -- 'detections': the run that last wrote the detections table
    run_id        VARCHAR,              -- changes with every run: a run writes only if the mark it read is still there
    since_asked   TIMESTAMPTZ,          -- the window start asked for (NULL: the store's first closure)
    since         TIMESTAMPTZ,          -- the window it analysed: [since, until)
    until         TIMESTAMPTZ,
    open_ended    BOOLEAN,              -- until was the newest closure (no --until): later rows extend the window
    thresholds    VARCHAR,              -- fingerprint of the thresholds used
    store_first   TIMESTAMPTZ,          -- the store's first closure then (new_reason's learning period starts there)
    ingested_to   TIMESTAMPTZ,          -- max(ingested_at) it saw: later rows are new
    rows_seen     BIGINT,               -- closures it saw, all stored at or before ingested_to (or without a time)
    changes       VARCHAR,              -- the data_changes stamp (reclassify) it saw
    known_templates VARCHAR[],          -- reason templates seen before since (new_reason); NULL when too many to keep
    updated_at    TIMESTAMPTZ
);
"""

MIGRATIONS: dict[int, str] = {
    1: V1,
    2: V2,
    3: SUMMARIES_V3,  # closewatch/summary_views.py: summary views and the reason_template macro
    4: V4,
    5: V5,
    6: V6,
    7: V7,
    8: ERROR_RATE_VIEWS_V8,  # closewatch/summary_views.py: errors are severity warning and above, as on the dashboard
    9: V9,
}

LATEST = max(MIGRATIONS)
