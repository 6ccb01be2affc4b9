"""Generated traffic: a week of realistic session closes written as real clients' logs.

Not part of ingestion: it writes logs (through the client renderers of
``closewatch.ingest``) for the demo, the tests and the benchmarks.
"""
