"""The errors the alerts stage raises, placed in closewatch's one hierarchy.

The boundaries (CLI, dashboard) catch ``ClosewatchError`` and show its one
sentence; these classes only add what went wrong in alerting.

    AlertError               an alert rules file or an alert command is wrong
    ├── RulesInvalid         the rules file has problems (all of them are listed)
    ├── RuleFailed           a rule could not be evaluated (e.g. its SQL fails on the data)
    └── DeliveryFailed       a channel could not deliver one notification (it stays in the outbox)
"""

from __future__ import annotations

from closewatch.errors import ClosewatchError


class AlertError(ClosewatchError):
    """An alert rules file or an alert command is wrong."""


class RulesInvalid(AlertError):
    """The rules file has problems; ``problems`` lists every one, each naming rule and field."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{path}: {problems[0]}{more}; run `closewatch alerts check` to see every problem.")


class RuleFailed(AlertError):
    """A rule could not be evaluated against the data (its state and watermark are left as they were)."""


class DeliveryFailed(AlertError):
    """One delivery attempt failed; the notification stays in the outbox and is retried."""
