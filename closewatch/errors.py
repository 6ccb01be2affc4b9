"""The one exception hierarchy of closewatch, documented in one place.

Every error a user can cause is a ``ClosewatchError``. Its message is one
sentence that says what to do; the CLI prints it and exits non-zero, the
dashboard shows it with ``st.error``. Anything else is a bug and may show a
traceback.

    ClosewatchError
    ├── ConfigError           a config file or option is wrong           (closewatch.settings)
    ├── StoreError            the database cannot be used                 (closewatch.store)
    │   ├── StoreBusy         another process holds the file too long
    │   ├── StoreReadOnly     the file (or its folder) cannot be written by this user
    │   ├── SchemaTooNew      the file was written by a newer closewatch
    │   └── ReadOnlyQuery     a SQL query tried to write or touch files
    ├── IngestError           an input cannot be read at all               (ingest)
    ├── CatalogError          the close-code catalog file is invalid       (analysis)
    ├── AnalysisError         detection thresholds or windows are wrong    (analysis)
    └── AlertError            an alert rules file or alert command is wrong (alerts)

Each stage defines its own subclasses next to its code and only raises those;
the boundaries catch ``ClosewatchError``.
"""


class ClosewatchError(Exception):
    """An error the user can fix; ``str(error)`` is the sentence to show."""


class ConfigError(ClosewatchError):
    pass


class StoreError(ClosewatchError):
    pass


class StoreBusy(StoreError):
    pass


class StoreReadOnly(StoreError):
    pass


class SchemaTooNew(StoreError):
    pass


class ReadOnlyQuery(StoreError):
    pass


def first_line(error: BaseException) -> str:
    """The first line of an exception's message, without a closing period, for one-sentence messages."""
    text = str(error).strip()
    return text.splitlines()[0].rstrip(".") if text else "no message"
