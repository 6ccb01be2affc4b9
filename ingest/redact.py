"""Redaction lives in the core (closewatch.redaction) so every stage and the jobs share it."""

from closewatch.redaction import ANY_SECRET, MASK, PATTERNS, redact_secrets, redact_series, redact_text, redact_then_cut

redact_string = redact_text

__all__ = ["ANY_SECRET", "MASK", "PATTERNS", "redact_secrets", "redact_series", "redact_string", "redact_text", "redact_then_cut"]
