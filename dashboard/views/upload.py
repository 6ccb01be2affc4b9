"""Upload: load several log files at once (.gz too), with progress and a result per file.

Files go through ``closewatch.jobs.ingest``, exactly like ``closewatch
ingest``: parsed and classified outside the database lock, then appended in
one transaction per file. The other pages show the new rows right away,
because their caches are keyed on the latest batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import streamlit as st

from closewatch import jobs
from closewatch.errors import ClosewatchError
from closewatch.dashboard import ui
from closewatch.dashboard.queries import upload as queries
from closewatch.dashboard.queries import shared
from closewatch.ingest.envelopes import all_envelopes
from closewatch.ingest.formats import all_formats
from closewatch.ingest.sources import bytes_input

AUTO = "detect per file"


def limit_text() -> str:
    size = st.get_option("server.maxUploadSize")
    shown = f"{size // 1024:,} GB" if size % 1024 == 0 else f"{size:,} MB"
    return (f"Up to **{shown} per file** (the dashboard's `server.maxUploadSize`; change it with "
            "`closewatch dashboard --max-upload-mb N`). Larger files: `closewatch ingest PATH`, or drop them in the scheduler's watched folder.")


@dataclass(frozen=True)
class Choices:
    """What the form says about every file of an upload (None: detect per file / the line's own client)."""

    format_name: str | None = None
    envelope: str | None = None
    tz: str = "UTC"
    client_from: str | None = None


def load(files: list, choices: Choices) -> list[dict]:
    """Ingest each uploaded file, showing its progress; returns one result row per file."""
    store = shared.get_store()
    settings = shared.get_settings()
    results = []
    for upload in files:
        payload = upload.getvalue()
        source = bytes_input(upload.name, payload)
        bar = st.progress(0.0, text=f"{upload.name}: reading")
        try:
            (result,) = jobs.ingest(store, [source], choices.format_name, choices.tz, settings.catalog,
                                    _progress(bar, upload.name, len(payload)), envelope=choices.envelope,
                                    client_from=choices.client_from, limits=settings.ingest_limits)
        except ClosewatchError as error:  # this file failed as a whole; the others still load
            bar.progress(1.0, text=f"{upload.name}: not loaded")
            results.append(_failed(upload.name, str(error)))
            continue
        bar.progress(1.0, text=f"{upload.name}: done")
        results.append(_row(result))
    return results


def _progress(bar, name: str, size: int):
    """A progress factory for jobs.ingest that moves this file's bar as bytes are read."""

    def progress_for(source):
        def report(done: int) -> None:
            # for .gz the count is of decompressed bytes, so the bar shows the megabytes, not a fraction
            fraction = min(done / size, 1.0) if size and not source.compressed else 0.5
            bar.progress(fraction, text=f"{name}: {done / 1e6:,.1f} MB read")

        return report

    return progress_for


def _failed(name: str, message: str) -> dict:
    return {"file": name, "format": "-", "lines": 0, "accepted": 0, "duplicates": 0, "rejected": 0, "skipped": 0,
            "status": "failed", "message": message, "first_rejects": []}


def _row(result) -> dict:
    return {
        "file": result.source,
        "format": result.format or "-",
        "lines": result.lines_read,
        "accepted": result.accepted,
        "duplicates": result.duplicates,
        "rejected": result.rejected,
        "skipped": result.skipped,
        "status": result.status,
        "message": result.message,
        "first_rejects": [f"line {line}: {reason}" for line, reason in result.first_rejects],
    }


def show_results(results: list[dict]) -> None:
    """The result per file, then the first rejected lines of each file that had some."""
    st.subheader("Result")
    table = pl.DataFrame(results).drop("first_rejects", "message")
    ui.table(table, "upload_results")
    accepted = sum(r["accepted"] for r in results)
    st.success(f"Loaded {accepted:,} new closures from {len(results)} file(s); every page now includes them.", icon=":material/check_circle:")
    st.page_link(ui.page_path("overview"), label="See them on the Overview", icon=":material/dashboard:")
    for r in results:
        if r["status"] == "failed":
            ui.show_error(f"{r['file']} was not loaded: {r['message']}")
        if r["status"] == "no_events":
            st.warning(f"{r['file']}: {r['message']}.")
        if r["first_rejects"]:
            with st.expander(f"{r['file']}: first rejected lines ({r['rejected']:,} in all)", expanded=True):
                st.code("\n".join(r["first_rejects"]), language=None)
                if r["rejected"] > len(r["first_rejects"]):
                    st.caption("The rest are in the `rejects` table (SQL page: `SELECT * FROM rejects`).")


def form_choices() -> Choices:
    """The form's options, as `closewatch ingest --format --envelope --tz --client-from` take them."""
    left, right = st.columns(2)
    format_choice = left.selectbox("Format", [AUTO] + [fmt.name for fmt in all_formats()], key="format",
                                   help="Leave on 'detect per file' unless detection picks the wrong one.")
    envelope_choice = right.selectbox("Envelope", [AUTO] + [envelope.name for envelope in all_envelopes()], key="envelope",
                                      help="How the logs were shipped (docker, Kubernetes, journald, a cloud's logging). "
                                           "Leave on 'detect per file' unless detection picks the wrong one.")
    tz = left.text_input("Time zone of timestamps without one", value="UTC", help="An IANA name such as Europe/Berlin.")
    client_from = right.text_input("Client from envelope label", value="", key="client_from",
                                   help="For lines that name no client: the envelope label that does (pod, container, "
                                        "host, unit, log_stream, service...). Empty: such lines have no client.")
    return Choices(None if format_choice == AUTO else format_choice, None if envelope_choice == AUTO else envelope_choice,
                   tz.strip() or "UTC", client_from.strip() or None)


def main() -> None:
    st.title("Upload logs")
    st.markdown(
        "Load session-close logs: JSON lines, CSV, the API's own messages, and the logs of the common SDKs and "
        "frameworks, also inside docker, Kubernetes, journald and cloud-logging envelopes (the format and the "
        "envelope are detected per file). Compressed `.gz` files are read as they are. "
        "A file already loaded adds nothing (duplicates are counted, not stored twice)."
    )
    st.caption(limit_text())
    with st.form("upload", clear_on_submit=True):
        files = st.file_uploader("Log files", accept_multiple_files=True, key="files")
        choices = form_choices()
        submitted = st.form_submit_button("Load files", type="primary", icon=":material/upload:")
    if submitted:
        if not files:
            st.warning("Choose one or more files first.")
        else:
            st.session_state["upload_results"] = load(files, choices)
    if st.session_state.get("upload_results"):
        show_results(st.session_state["upload_results"])
    batches = shared.cached(queries.recent_batches)
    if batches.height:
        with st.expander("Recently loaded files"):
            ui.plain_table(batches, "recent_batches", column_config={
                "finished_at": st.column_config.DatetimeColumn("loaded (UTC)", format="YYYY-MM-DD HH:mm:ss")})


with ui.guard():
    main()
