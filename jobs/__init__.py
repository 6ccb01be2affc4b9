"""The jobs: units of work that run the stages, shared by every front end.

A job wires the stages together (parse with ``closewatch.ingest``, classify
and detect with ``closewatch.analysis``, evaluate and notify with
``closewatch.alerts``) so that no stage imports another's internals and the
CLI, the dashboard and the scheduler do exactly the same thing.

- ``loading``: ingest inputs into the store; reclassify stored closures.
- ``scheduler``: the long-running process that runs ingest, analysis,
  evaluation and delivery on a schedule.
"""

from closewatch.jobs.loading import ingest, reclassify

__all__ = ["ingest", "reclassify"]
