"""The bounds every input is read within: ``[ingest]`` of closewatch.toml (closewatch.quick_settings.IngestLimits).

A config file's section is validated by closewatch.settings.IngestSettings;
this plain dataclass is what the stage reads, so an ingest without a config
file imports no pydantic.

```toml
[ingest]
max_line_length = "1MiB"     # longer lines are rejected with their number, never held whole
max_field_length = 8192      # characters kept of a reason, session or client id (after redaction)
max_decompressed = "16GiB"   # an input that decompresses to more is refused
memory_limit = "1GiB"        # DuckDB's memory_limit for ingest; it spills to the staging folder beyond it
earliest_year = 2000         # timestamps outside these years are rejected with their line number
latest_year = 2100
```
"""

from closewatch.quick_settings import IngestLimits

__all__ = ["IngestLimits"]
