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
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl
import pyarrow as pa

from closewatch.ingest.errors import IngestError

BATCH_BYTES = 32 * 1024 * 1024
GZIP_MAGIC = b"\x1f\x8b"
#: Lines longer than this (bytes) are not parsed: they are rejected with their number.
MAX_LINE_BYTES = 1024 * 1024
#: How much of an over-long line is kept for its reject (redacted, then cut further).
LONG_LINE_PREFIX_BYTES = 4096
#: How far format detection reads looking for ordinary lines past over-long ones.
DETECTION_SCAN_BYTES = 256 * 1024 * 1024


class InputTooLarge(IngestError):
    """The input decompresses to more than the configured bound."""


@dataclass(frozen=True)
class LongLine:
    """A line that exceeded the limit: its number, length and first bytes (for the reject)."""

    source_line: int
    length: int
    prefix: str


def open_binary(path: Path) -> BinaryIO:
    """Open a file for reading, decompressing gzip whatever its name says."""
    with open(path, "rb") as probe:
        compressed = probe.read(2) == GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else open(path, "rb")  # type: ignore[return-value]


class LineReader:
    """Numbered lines of a stream in bounded batches; over-long lines are set aside, never held.

    Memory stays within about one batch plus one maximum line whatever the
    input: a line that grows past ``max_line_bytes`` is skipped to its end
    while only its first bytes are kept, and is reported in ``long_lines``
    (the consumer drains that list). More than ``max_total_bytes`` of
    (decompressed) input raises InputTooLarge.
    """

    def __init__(self, stream: BinaryIO, batch_bytes: int = BATCH_BYTES, max_line_bytes: int = MAX_LINE_BYTES,
                 max_total_bytes: int | None = None):
        self._stream = stream
        self._batch_bytes = max(batch_bytes, 1)
        self._max_line = max_line_bytes
        self._max_total = max_total_bytes
        self.long_lines: list[LongLine] = []
        self.lines = 0  # lines seen so far, over-long ones included
        self.bytes_read = 0

    def batches(self) -> Iterator[pl.DataFrame]:
        carry = b""
        skipping: LongLine | None = None  # the over-long line being skipped, if any
        while True:
            chunk = self._read()
            if not chunk:
                break
            if skipping is not None:
                end = chunk.find(b"\n")
                if end < 0:
                    skipping = _grown(skipping, len(chunk))
                    continue
                self.long_lines.append(_grown(skipping, end))
                skipping, chunk = None, chunk[end + 1 :]
            data = carry + chunk
            cut = data.rfind(b"\n")
            complete, carry = (data[: cut + 1], data[cut + 1 :]) if cut >= 0 else (b"", data)
            if len(carry) > self._max_line:
                skipping = LongLine(0, len(carry), _text(carry[:LONG_LINE_PREFIX_BYTES]))
                carry = b""
            batch = self._batch(complete[:-1], complete)
            if skipping is not None:
                self.lines += 1
                skipping = LongLine(self.lines, skipping.length, skipping.prefix)
            if batch is not None:
                yield batch
        if skipping is not None:
            self.long_lines.append(skipping)
        if carry:
            batch = self._batch(carry, carry)
            if batch is not None:
                yield batch

    def _read(self) -> bytes:
        chunk = self._stream.read(self._batch_bytes)
        self.bytes_read += len(chunk)
        if self._max_total is not None and self.bytes_read > self._max_total:
            raise InputTooLarge(f"it decompresses to more than {self._max_total:,} bytes (the [ingest] max_decompressed bound)")
        return chunk

    def _batch(self, data: bytes, whole: bytes) -> pl.DataFrame | None:
        """The lines of ``data`` (``whole`` is non-empty when there is anything at all), long ones set aside."""
        if not whole:
            return None
        batch = _split(data, self.lines + 1)
        self.lines += batch.height
        too_long = pl.col("raw").str.len_bytes() > self._max_line
        if batch.select(too_long.any()).item():
            for number, raw in batch.filter(too_long).iter_rows():
                self.long_lines.append(LongLine(number, len(raw.encode()), raw[:LONG_LINE_PREFIX_BYTES]))
            batch = batch.filter(~too_long)
        return batch if batch.height else None


def iter_line_batches(stream: BinaryIO, batch_bytes: int = BATCH_BYTES, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[pl.DataFrame]:
    """Yield DataFrames of (source_line, raw) covering the stream, in order (over-long lines left out)."""
    return LineReader(stream, batch_bytes, max_line_bytes).batches()


def _grown(line: LongLine, more: int) -> LongLine:
    return LongLine(line.source_line, line.length + more, line.prefix)


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _split(data: bytes, first_line: int) -> pl.DataFrame:
    """Lines of a chunk as an Arrow string array built from the line offsets (no Python loop)."""
    ends = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10)
    offsets = np.empty(len(ends) + 2, dtype=np.int64)
    offsets[0] = 0
    offsets[1:-1] = ends + 1
    offsets[-1] = len(data)
    count = len(offsets) - 1
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    strings = pa.Array.from_buffers(pa.large_string(), count, buffers)
    try:
        strings.validate(full=True)  # checks the UTF-8 (as a cast would, without importing pyarrow.compute)
        text = pl.Series(_ArrowArray(strings))
    except pa.ArrowInvalid:  # bad UTF-8 somewhere: decode line by line with replacement
        binary = pa.Array.from_buffers(pa.large_binary(), count, buffers)
        text = pl.Series([line.decode("utf-8", errors="replace") for line in binary.to_pylist()])
    frame = pl.DataFrame({"raw": text.str.strip_chars_end("\r\n")})
    return frame.with_row_index("source_line", offset=first_line).with_columns(pl.col("source_line").cast(pl.Int64))


def stream_of(data: bytes) -> BinaryIO:
    """An in-memory stream, for stdin and uploads."""
    if data[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=io.BytesIO(data))  # type: ignore[return-value]
    return io.BytesIO(data)


def head_lines_of(stream: BinaryIO, count: int = 50, max_bytes: int = 256 * 1024, max_line_bytes: int = MAX_LINE_BYTES,
                  scan_bytes: int = DETECTION_SCAN_BYTES) -> list[str]:
    """The first ``count`` lines of an open stream (at most about ``max_bytes`` of them) for format detection.

    Lines over ``max_line_bytes`` are skipped, not counted, so a file that
    opens with one enormous line is still detected by the lines after it.
    Reading stops as soon as there are enough lines, or after ``scan_bytes``
    (a file that is one endless line has no format to detect).
    """
    reader = LineReader(stream, batch_bytes=256 * 1024, max_line_bytes=max_line_bytes)
    lines: list[str] = []
    kept = 0
    for batch in reader.batches():
        for line in batch["raw"].head(count - len(lines)).to_list():
            kept += len(line) + 1
            if kept > max_bytes and lines:
                return lines
            lines.append(line)
        if len(lines) >= count or reader.bytes_read >= scan_bytes:
            break
    return lines


class _ArrowArray:
    """An Arrow array seen only through the Arrow PyCapsule interface: polars then takes it over
    without pyarrow.compute (whose import costs a small ingest's start a noticeable part of a second)."""

    def __init__(self, array: pa.Array):
        self._array = array

    def __arrow_c_array__(self, requested_schema=None):
        return self._array.__arrow_c_array__(requested_schema)
