"""Summary views that the dashboard and SQL users share, added to the schema as one migration.

Views rather than tables, so they are never stale: they read ``closures`` when
queried. ``closures_hourly``, ``closures_daily`` and ``client_error_rates``
come with the first schema version; this migration adds:

- ``client_daily_error_rates``: per client and day, closures, errors and the
  error families (disconnects, violations, refusals, concurrency, expiries).
- ``violator_chunk_ms`` and ``violator_chunk_ms_histogram``: the chunk lengths
  of clients with input duration violations (stats per client; 100 ms buckets).
- ``violator_audio_rate``: how much faster than real time rate violators send.
- ``reason_templates``: the reason templates (numbers, ids and JSON masked),
  most frequent first, with the SQL macro ``reason_template(text)``.

The macro is the SQL twin of ``analysis.templates.template_expr``; a test
checks that both give the same templates. A released migration is never
edited: if the masks change, add a migration that runs
``CREATE OR REPLACE MACRO reason_template``.
"""

from __future__ import annotations

from closewatch.vocabulary import ERROR_SEVERITIES

# Each regexp_replace applies one entry of analysis.templates.MASKS, in order (RE2 syntax).
REASON_TEMPLATE_MACRO = r"""
CREATE OR REPLACE MACRO reason_template(reason) AS (
    nullif(
        left(
            trim(
                regexp_replace(
                regexp_replace(
                regexp_replace(
                regexp_replace(
                regexp_replace(
                regexp_replace(
                regexp_replace(
                regexp_replace(
                regexp_replace(reason,
                    '(?i)^([\t\n\f\r ]*invalid (?:message type|json|message)[\t\n\f\r ]*:).*$', '\1 …', 'g'),
                    '\{.*$', '{…}', 'g'),
                    '\[[\t\n\f\r ]*[\[\{"0-9\]\-].*$', '[…]', 'g'),
                    '"[^"]*"', '"…"', 'g'),
                    '\B''[^'']*''', '''…''', 'g'),
                    '(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b', '<id>', 'g'),
                    '\b[0-9]+(?:\.[0-9]+)?\b', '<n>', 'g'),
                    '\b[A-Za-z0-9_\-]*[0-9][A-Za-z0-9_\-]*\b', '<id>', 'g'),
                    '[\t\n\f\r ]+', ' ', 'g'),
                ' '
            ),
            200
        ),
        ''
    )
);
"""

SUMMARY_VIEWS = """
CREATE VIEW client_daily_error_rates AS
SELECT date_trunc('day', ts) AS day,
       client_id,
       count(*) AS closures,
       count(*) FILTER (WHERE category <> 'normal') AS errors,
       round(count(*) FILTER (WHERE category <> 'normal') / count(*), 4) AS error_rate,
       count(*) FILTER (WHERE category IN ('network_abnormal', 'server_error', 'going_away')) AS disconnects,
       count(*) FILTER (WHERE category IN ('input_duration_violation', 'audio_rate_exceeded', 'invalid_message')) AS violations,
       count(*) FILTER (WHERE category IN ('auth_failed', 'account_issue')) AS refusals,
       count(*) FILTER (WHERE category = 'concurrency_limit') AS concurrency_limited,
       count(*) FILTER (WHERE category = 'session_expired') AS expired,
       mode(category) FILTER (WHERE category <> 'normal') AS top_error_category
FROM closures
GROUP BY ALL;

CREATE VIEW violator_chunk_ms AS
SELECT client_id,
       count(*) AS violations,
       min(chunk_ms) AS min_ms,
       quantile_cont(chunk_ms, 0.5) AS median_ms,
       quantile_cont(chunk_ms, 0.9) AS p90_ms,
       max(chunk_ms) AS max_ms,
       count(*) FILTER (WHERE chunk_ms > 1000) AS too_long,
       count(*) FILTER (WHERE chunk_ms < 50) AS too_short,
       min(ts) AS first_seen,
       max(ts) AS last_seen
FROM closures
WHERE category = 'input_duration_violation' AND chunk_ms IS NOT NULL
GROUP BY client_id;

CREATE VIEW violator_chunk_ms_histogram AS
SELECT client_id,
       floor(chunk_ms / 100) * 100 AS bucket_ms,
       count(*) AS violations
FROM closures
WHERE category = 'input_duration_violation' AND chunk_ms IS NOT NULL
GROUP BY ALL;

CREATE VIEW violator_audio_rate AS
SELECT client_id,
       count(*) AS violations,
       quantile_cont(audio_rate_ratio, 0.5) AS median_ratio,
       max(audio_rate_ratio) AS max_ratio,
       min(ts) AS first_seen,
       max(ts) AS last_seen
FROM closures
WHERE category = 'audio_rate_exceeded' AND audio_rate_ratio IS NOT NULL
GROUP BY client_id;

-- Templates are computed once per distinct reason, then joined back for the counts.
CREATE VIEW reason_templates AS
WITH templates AS (
    SELECT close_reason, reason_template(close_reason) AS template
    FROM (SELECT DISTINCT close_reason FROM closures WHERE close_reason IS NOT NULL AND category <> 'normal')
)
SELECT t.template,
       mode(c.category) AS category,
       count(*) AS closures,
       count(DISTINCT c.client_id) AS clients,
       count(DISTINCT c.close_reason) AS distinct_reasons,
       min(c.close_reason) AS example,
       min(c.ts) AS first_seen,
       max(c.ts) AS last_seen
FROM closures AS c
JOIN templates AS t USING (close_reason)
WHERE c.category <> 'normal' AND t.template IS NOT NULL
GROUP BY t.template
ORDER BY closures DESC, t.template;
"""

#: The migration that adds the summaries (appended to closewatch.schema.MIGRATIONS).
MIGRATION_SQL = REASON_TEMPLATE_MACRO + SUMMARY_VIEWS


#: Errors in the client views are what the dashboard calls errors: severity
#: warning and above. The first views counted every closure whose category was
#: not 'normal', so an expired session or a going-away of severity info was an
#: error in SQL and not on the Overview; migration 8 redefines both views.
IS_ERROR = "severity IN (" + ", ".join(f"'{name}'" for name in ERROR_SEVERITIES) + ")"

ERROR_RATE_VIEWS_V8 = f"""
CREATE OR REPLACE VIEW client_error_rates AS
SELECT client_id,
       count(*) AS closures,
       count(*) FILTER (WHERE {IS_ERROR}) AS errors,
       round(count(*) FILTER (WHERE {IS_ERROR}) / count(*), 4) AS error_rate,
       min(ts) AS first_seen,
       max(ts) AS last_seen
FROM closures GROUP BY client_id;

CREATE OR REPLACE VIEW client_daily_error_rates AS
SELECT date_trunc('day', ts) AS day,
       client_id,
       count(*) AS closures,
       count(*) FILTER (WHERE {IS_ERROR}) AS errors,
       round(count(*) FILTER (WHERE {IS_ERROR}) / count(*), 4) AS error_rate,
       count(*) FILTER (WHERE category IN ('network_abnormal', 'server_error', 'going_away')) AS disconnects,
       count(*) FILTER (WHERE category IN ('input_duration_violation', 'audio_rate_exceeded', 'invalid_message')) AS violations,
       count(*) FILTER (WHERE category IN ('auth_failed', 'account_issue')) AS refusals,
       count(*) FILTER (WHERE category = 'concurrency_limit') AS concurrency_limited,
       count(*) FILTER (WHERE category = 'session_expired') AS expired,
       mode(category) FILTER (WHERE {IS_ERROR}) AS top_error_category
FROM closures
GROUP BY ALL;
"""
