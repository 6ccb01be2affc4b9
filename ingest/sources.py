"""What the user named, as a list of inputs: files, directories (recursive), globs, or '-' for stdin.

Expansion never hangs and never stops at one bad path. Directories and
``**`` globs are walked by closewatch itself (not ``glob``), following
symbolic links but never into a folder already on the way down, so a link
back to a parent is reported once as a loop instead of being walked forever.
A file reached twice (two globs, a folder and a file inside it, two links to
one file) is read once. Anything that is not a readable regular file (a
FIFO, a device, a socket, a link loop or a dangling link, a file without read
permission) becomes an input with a ``problem``: one sentence that the
pipeline reports in place of a result, while the other inputs load.
"""

from __future__ import annotations

import errno
import fnmatch
import gzip
import io
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from closewatch.ingest.errors import IngestError
from closewatch.ingest.lines import GZIP_MAGIC, open_binary, stream_of

_SKIP_NAMES = {"manifest.json", "README.md"}
Ancestors = tuple[tuple[int, int], ...]  # (device, inode) of the folders above a path
_MAGIC = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Input:
    """One input to ingest: a display name, a way to open it, and its size if known."""

    name: str
    opener: Callable[[], BinaryIO]
    size: int | None = None
    compressed: bool = False
    path: Path | None = None  # set for files on disk, which formats may read directly
    problem: str | None = None  # why it cannot be read at all (one sentence); then nothing else is set

    def open(self) -> BinaryIO:
        return self.opener()


def file_input(path: Path) -> Input:
    """A regular file on disk, or an input carrying the sentence that says why it cannot be read."""
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            return problem_input(path, _not_a_file(path, mode))
        with open(path, "rb") as handle:
            compressed = handle.read(2) == GZIP_MAGIC
        return Input(str(path), lambda: open_binary(path), path.stat().st_size, compressed, path)
    except OSError as error:
        return problem_input(path, _os_problem(path, error))


def problem_input(path: Path, problem: str) -> Input:
    def refuse() -> BinaryIO:
        raise IngestError(problem)

    return Input(str(path), refuse, problem=problem)


def bytes_input(name: str, data: bytes) -> Input:
    """An upload or stdin, already in memory."""
    return Input(name, lambda: stream_of(data), len(data), data[:2] == GZIP_MAGIC)


#: stdin is kept in memory up to this size, then in an unnamed file (see spooled_input).
STDIN_IN_MEMORY = 64 * 1024 * 1024


def spooled_input(name: str, stream: BinaryIO, spool_dir: Path | None) -> Input:
    """A stream that can be read once (stdin), made re-readable within bounded memory.

    Up to STDIN_IN_MEMORY it stays in memory; beyond, it goes to an unnamed
    temporary file in ``spool_dir`` (the database's private staging folder):
    unlinked from the start, so it disappears with the process however the
    process ends, and no other user can open it.
    """
    head = stream.read(STDIN_IN_MEMORY + 1)
    if len(head) <= STDIN_IN_MEMORY:
        return bytes_input(name, head)
    spool = tempfile.TemporaryFile(dir=spool_dir)
    spool.write(head)
    del head
    shutil.copyfileobj(stream, spool, 1024 * 1024)
    spool.flush()
    size = spool.tell()
    descriptor = spool.fileno()
    first = os.pread(descriptor, 2, 0)

    def opener() -> BinaryIO:
        reader = _PositionalReader(spool, descriptor)
        return gzip.GzipFile(fileobj=reader) if first == GZIP_MAGIC else reader  # type: ignore[return-value]

    return Input(name, opener, size, first == GZIP_MAGIC)


class _PositionalReader(io.RawIOBase):
    """An independent reader over a shared file (its own offset, os.pread), so each pass starts at 0."""

    def __init__(self, owner: object, descriptor: int):
        self._owner = owner  # keeps the spooled file open while a reader exists
        self._descriptor = descriptor
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = os.pread(self._descriptor, len(buffer), self._offset)
        buffer[: len(data)] = data
        self._offset += len(data)
        return len(data)


def expand_inputs(specs: list[str], spool_dir: Path | None = None) -> list[Input]:
    """Every input the user's arguments name, in a stable order, each file once; an unmatched name is an error.

    ``-`` is standard input, spooled to ``spool_dir`` beyond a bound (spooled_input).
    """
    inputs: list[Input] = []
    seen: set[tuple[int, int] | str] = set()
    for spec in specs:
        if spec == "-":
            inputs.append(spooled_input("<stdin>", sys.stdin.buffer, spool_dir))
            continue
        found = list(_inputs_for(spec))
        if not found:
            raise IngestError(f"No file matches '{spec}'; check the path or quote the glob.")
        for source in found:
            identity = _identity(source)
            if identity not in seen:
                inputs.append(source)
                seen.add(identity)
    return inputs


def _identity(source: Input) -> tuple[int, int] | str:
    """(device, inode) of a file on disk, so the same file reached twice is read once; else its problem."""
    if source.path is None or source.problem:
        return source.problem or source.name
    info = os.stat(source.path)
    return info.st_dev, info.st_ino


def _inputs_for(spec: str) -> Iterator[Input]:
    path = Path(spec).expanduser()
    if not _MAGIC.search(spec):
        if os.path.lexists(path):
            yield from _inputs_at(path, ())
        return
    base, pattern = _split_glob(str(path))
    depth = None if "**" in pattern else len(pattern)
    for match, ancestors in _glob(base, pattern, depth):
        yield from _inputs_at(match, ancestors)


def _inputs_at(path: Path, ancestors: Ancestors) -> Iterator[Input]:
    """The inputs under one path: itself if a file, its files if a folder, a problem otherwise."""
    try:
        info = os.stat(path)
    except OSError as error:
        yield problem_input(path, _os_problem(path, error))
        return
    if not stat.S_ISDIR(info.st_mode):
        yield file_input(path)
        return
    for child in _walk(path, ancestors):
        if isinstance(child, Input):
            yield child
        elif not _ignored(child):
            yield file_input(child)


def _walk(folder: Path, ancestors: Ancestors) -> Iterator[Path | Input]:
    """Every non-folder below ``folder`` (sorted), following links, reporting each link that loops."""
    info = os.stat(folder)
    here = (info.st_dev, info.st_ino)
    if here in ancestors:
        yield problem_input(folder, f"{folder} is a symbolic link loop (it leads back to a folder above it); it was skipped")
        return
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        yield problem_input(folder, _os_problem(folder, error))
        return
    for entry in entries:
        child = Path(entry.path)
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if not entry.name.startswith("."):
                yield from _walk(child, (*ancestors, here))
        else:
            yield child


def _split_glob(spec: str) -> tuple[Path, list[str]]:
    """'logs/2026-*/**/*.gz' -> (Path('logs'), ['2026-*', '**', '*.gz'])."""
    parts = spec.split(os.sep)
    fixed = 0
    while fixed < len(parts) - 1 and not _MAGIC.search(parts[fixed]):
        fixed += 1
    base = os.sep.join(parts[:fixed]) or ("/" if spec.startswith(os.sep) else ".")
    return Path(base), [part for part in parts[fixed:] if part]


def _glob(base: Path, pattern: list[str], depth: int | None) -> Iterator[tuple[Path, Ancestors]]:
    """(path, the folders above it) under ``base`` matching the segments; ``**`` spans folders."""
    for candidate, relative, ancestors in _tree(base, (), (), depth):
        if _segments_match(pattern, relative):
            yield candidate, ancestors


def _tree(folder: Path, ancestors: Ancestors, relative: tuple[str, ...],
          depth: int | None) -> Iterator[tuple[Path, tuple[str, ...], Ancestors]]:
    """Everything under ``folder`` down to ``depth`` levels, links followed, never into a folder above."""
    try:
        info = os.stat(folder)
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError:
        return
    here = (info.st_dev, info.st_ino)
    if here in ancestors:
        return
    inside = (*ancestors, here)
    for entry in entries:
        parts = (*relative, entry.name)
        yield Path(entry.path), parts, inside
        if depth is not None and len(parts) >= depth:
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            yield from _tree(Path(entry.path), inside, parts, depth)


def _segments_match(pattern: list[str], parts: tuple[str, ...]) -> bool:
    """Shell-style matching by path segment; like the shell, * and ** do not match hidden names."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        for skip in range(len(parts) + 1):
            if _segments_match(rest, parts[skip:]):
                return True
            if skip < len(parts) and parts[skip].startswith("."):
                return False
        return False
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _segments_match(rest, parts[1:])


def _not_a_file(path: Path, mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return f"{path} is a named pipe (FIFO), not a file; to read a stream, pipe it in: cat {path} | closewatch ingest -"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return f"{path} is a device, not a log file; name a file or a folder of logs"
    if stat.S_ISSOCK(mode):
        return f"{path} is a socket, not a log file; name a file or a folder of logs"
    return f"{path} is not a regular file; name a file or a folder of logs"


def _os_problem(path: Path, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return f"{path} is a symbolic link loop (it points back to itself); fix or remove the link"
    if error.errno == errno.ENOENT and os.path.islink(path):
        return f"{path} is a symbolic link to a missing file; fix or remove the link"
    if error.errno in (errno.EACCES, errno.EPERM):
        return f"{path} cannot be read (permission denied); give the user running closewatch read access and ingest it again"
    return f"{path} cannot be read ({error.strerror or error}); check the path and its permissions"


def _ignored(path: Path) -> bool:
    """Hidden files, the generator's manifest and READMEs are not logs."""
    return path.name.startswith(".") or path.name in _SKIP_NAMES or path.suffix in {".py", ".md"}
