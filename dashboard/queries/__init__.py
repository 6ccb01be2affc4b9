"""What the dashboard's pages read: one module per page, mirroring ``dashboard/views/``.

``shared`` holds what every reader needs (the store, its short-lived
read-only connections, the cache keyed on the data token) and ``timespan``
the time axis the pages share (the loaded span, range conditions, timeline
buckets). Each page module beside them holds that page's queries and nothing
else. Every reader is a plain function of a ``Store`` and its arguments that
returns polars frames or small dataclasses: the bench script calls the very
same functions; pages call them through ``shared.cached``.
"""
