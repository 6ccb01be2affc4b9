"""Errors of the ingest stage (see closewatch.errors for the whole hierarchy)."""

from closewatch.errors import ClosewatchError


class IngestError(ClosewatchError):
    """An input cannot be read at all (missing path, unknown format name, bad --tz)."""
