"""The errors the analysis stage raises, placed in closewatch's one hierarchy.

The boundaries (CLI, dashboard) catch ``ClosewatchError`` and show its one
sentence, so each class here only adds the stage-specific meaning.
"""

from closewatch.errors import ClosewatchError


class CatalogError(ClosewatchError):
    """The close-code catalog file (built-in or the user's) is invalid."""


class AnalysisError(ClosewatchError):
    """Detection thresholds or windows are wrong."""
