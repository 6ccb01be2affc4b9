"""Classify a synthetic log of many rows and few distinct reasons; print rows/s.

The shape matches real logs: millions of closures, a few thousand distinct
(close_code, close_reason) pairs. Usage: python bench/bench_classify.py [rows]
"""

import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closewatch.analysis.catalog import classify, load_catalog
from bench.report import result

REASONS = 2_000


def synthetic_log(rows: int) -> pl.DataFrame:
    """Rows cycling through 2,000 distinct reasons under 5 codes (one NULL): 10,000 pairs."""
    reasons = pl.Series(
        [f"Input duration violation: {n} ms. Expected between 50 and 1000 ms" for n in range(REASONS // 2)]
        + [f"Audio Transmission Rate Exceeded: Received {n / 10} sec. audio in 1.0 sec" for n in range(REASONS // 2)]
    )
    codes = pl.Series([3005, 3007, 1000, 3008, None], dtype=pl.Int32)
    index = pl.int_range(rows, eager=True)
    return pl.DataFrame(
        {
            "close_code": codes.gather(index % codes.len()),
            "close_reason": reasons.gather((index // codes.len() * 7919) % REASONS),
        }
    )


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000_000
    frame = synthetic_log(rows)
    catalog = load_catalog()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        classify(frame, catalog)
        best = min(best, time.perf_counter() - start)
    pairs = frame.select("close_code", "close_reason").n_unique()
    print(f"{rows:,} rows, {pairs:,} distinct pairs: best of 3 {best:.2f} s, {rows / best:,.0f} rows/s")
    result("classify/rows-per-s", rows / best, "rows/s")


if __name__ == "__main__":
    main()
