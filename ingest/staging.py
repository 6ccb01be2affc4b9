"""Where a run keeps its staged rows: a private folder beside the database, never left behind.

Staged Parquet files hold every parsed row before it is loaded, so they live
with the data they will become, not in a shared temp directory: under
``<database>.staging/``, one folder per run, readable by its owner only
(0700). A folder is removed when its run ends, however it ends (an exception,
Ctrl-C, SIGTERM through the CLI's handler). A run killed outright (SIGKILL,
power loss) cannot clean up, so every run first removes the folders whose
owner process is gone: each folder is named after its owner's PID and the
owner's start time, so a PID reused by another process is not mistaken for
the owner.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def staging_root(database: Path) -> Path:
    return database.with_name(database.name + ".staging")


def spool_folder(database: Path) -> Path | None:
    """The staging folder, created (0700) for spooling stdin; None where it cannot be (the system's temp then)."""
    root = staging_root(database)
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return None
    return root


@contextmanager
def staging_folder(database: Path) -> Iterator[Path]:
    """A fresh private folder for one input, removed on the way out; orphans are swept first."""
    root = staging_root(database)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    remove_orphans(root)
    folder = root / f"{os.getpid()}.{_start_time(os.getpid())}.{uuid.uuid4().hex[:12]}"
    folder.mkdir(mode=0o700)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        _remove_if_empty(root)


@contextmanager
def private_folder() -> Iterator[Path]:
    """A private (0700) temporary folder, for a run that has no database beside it (a Spark task)."""
    with tempfile.TemporaryDirectory(prefix="closewatch-stage-") as folder:
        yield Path(folder)


def remove_orphans(root: Path) -> list[Path]:
    """Remove the folders of runs whose process is gone; returns what was removed."""
    removed = []
    for folder in root.iterdir() if root.is_dir() else []:
        owner = _owner(folder.name)
        if owner is None or not _alive(*owner):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _owner(name: str) -> tuple[int, str] | None:
    pid, _, rest = name.partition(".")
    started, _, _ = rest.partition(".")
    return (int(pid), started) if pid.isdigit() else None


def _alive(pid: int, started: str) -> bool:
    """True if ``pid`` runs and is the same process that made the folder (same start time)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's live process
    return _start_time(pid) == started


def _start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), '' if unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[19]


def _remove_if_empty(root: Path) -> None:
    try:
        root.rmdir()
    except OSError:
        pass  # another run is using it, or it never existed
