"""Reading any input as numbered lines, in bounded batches.

Every parser sees the same thing: a polars DataFrame per batch with
``source_line`` (1-based, Int64) and ``raw`` (the line as text, without its
line ending). Reading is chunked so a file larger than memory streams through;
decoding never fails (bad UTF-8 becomes U+FFFD) because a reject needs the
text, not an exception.
"""

from __future__ import annotations

import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa

BATCH_BYTES = 32 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"


def open_binary(path: Path) -> BinaryIO:
    """Open a file for reading, decompressing gzip whatever its name says."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else open(path, "rb")  # type: ignore[return-value]


def iter_line_batches(stream: BinaryIO, batch_bytes: int = BATCH_BYTES) -> Iterator[pl.DataFrame]:
    """Yield DataFrames of (source_line, raw) covering the stream, in order."""
    next_line = 1
    carry = b""
    while True:
        chunk = stream.read(batch_bytes)
        if not chunk:
            break
        data = carry + chunk
        cut = data.rfind(b"\n")
        if cut < 0:
            carry = data
            continue
        carry = data[cut + 1 :]
        batch = _split(data[:cut], next_line)
        next_line += batch.height
        yield batch
    if carry:
        yield _split(carry, next_line)


def _split(data: bytes, first_line: int) -> pl.DataFrame:
    """Lines of a chunk as an Arrow string array built from the line offsets (no Python loop)."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    offsets = np.empty(len(ends) + 2, dtype=np.int64)
    offsets[0] = 0
    offsets[1:-1] = ends + 1
    offsets[-1] = len(data)
    count = len(offsets) - 1
    binary = pa.LargeBinaryArray.from_buffers(pa.large_binary(), count, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    try:
        text = pl.from_arrow(binary.cast(pa.large_string()))
    except pa.ArrowInvalid:  # bad UTF-8 somewhere: decode line by line with replacement
        text = pl.Series([line.decode("utf-8", errors="replace") for line in binary.to_pylist()])
    frame = pl.DataFrame({"raw": text.str.strip_chars_end("\r\n")})
    return frame.with_row_index("source_line", offset=first_line).with_columns(pl.col("source_line").cast(pl.Int64))


def stream_of(data: bytes) -> BinaryIO:
    """An in-memory stream, for stdin and uploads."""
    if data[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=io.BytesIO(data))  # type: ignore[return-value]
    return io.BytesIO(data)


def head_lines_of(stream: BinaryIO, count: int = 50, max_bytes: int = 256 * 1024) -> list[str]:
    """The first lines of an open stream, for format detection."""
    data = stream.read(max_bytes)
    lines = data.decode("utf-8", errors="replace").splitlines()
    if len(data) == max_bytes and lines:
        lines = lines[:-1]
    return lines[:count]
