"""The generator's defaults, apart from the generator: `closewatch generate`'s options show them
without importing the generator (numpy, polars, pyarrow and every client renderer), so the other
commands start without it."""

from __future__ import annotations

from datetime import date

DEFAULT_START = date(2026, 11, 16)  # a Monday; fixed so that the default output never changes
DEFAULT_DAYS = 7
DEFAULT_SESSIONS_PER_DAY = 3000
DEFAULT_CLIENTS = 16
#: The categories a platform-wide outage (--platform-outage) can close sessions with.
PLATFORM_CATEGORIES = ("network_abnormal", "server_error", "concurrency_limit")
