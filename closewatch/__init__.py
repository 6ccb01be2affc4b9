"""closewatch: turn streaming speech-to-text session-close logs into answers.

The shared spine of the stages: configuration (`config`), the DuckDB store and
its schema (`store`, `schema`), the units of work every front end shares
(`jobs`) and the command line (`cli`).
"""

__version__ = "0.1.0"
