"""What the user named, as a list of inputs: files, directories (recursive), globs, or '-' for stdin."""

from __future__ import annotations

import glob
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from closewatch.ingest.errors import IngestError
from closewatch.ingest.lines import GZIP_MAGIC, open_binary, stream_of

_SKIP_NAMES = {"manifest.json", "README.md"}


@dataclass(frozen=True)
class Input:
    """One input to ingest: a display name, a way to open it, and its size if known."""

    name: str
    opener: Callable[[], BinaryIO]
    size: int | None = None
    compressed: bool = False
    path: Path | None = None  # set for files on disk, which formats may read directly

    def open(self) -> BinaryIO:
        return self.opener()


def file_input(path: Path) -> Input:
    with open(path, "rb") as handle:
        compressed = handle.read(2) == GZIP_MAGIC
    return Input(str(path), lambda: open_binary(path), path.stat().st_size, compressed, path)


def bytes_input(name: str, data: bytes) -> Input:
    """An upload or stdin, already in memory."""
    return Input(name, lambda: stream_of(data), len(data), data[:2] == GZIP_MAGIC)


def expand_inputs(specs: list[str]) -> list[Input]:
    """Every input the user's arguments name, in a stable order; an unmatched name is an error."""
    inputs: list[Input] = []
    for spec in specs:
        if spec == "-":
            inputs.append(bytes_input("<stdin>", sys.stdin.buffer.read()))
            continue
        paths = _paths_for(spec)
        if not paths:
            raise IngestError(f"No file matches '{spec}'; check the path or quote the glob.")
        inputs.extend(file_input(path) for path in paths)
    return inputs


def _paths_for(spec: str) -> list[Path]:
    path = Path(spec).expanduser()
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not _ignored(p))
    if path.is_file():
        return [path]
    matches = sorted(Path(p) for p in glob.glob(spec, recursive=True))
    files: list[Path] = []
    for match in matches:
        files.extend(_paths_for(str(match)) if match.is_dir() else [match])
    return files


def _ignored(path: Path) -> bool:
    """Hidden files, the generator's manifest and READMEs are not logs."""
    return path.name.startswith(".") or path.name in _SKIP_NAMES or path.suffix in {".py", ".md"}
