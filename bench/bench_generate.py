"""How fast the generator makes closures: the fast path (frame, then JSON lines) and the file writer.

Prints seconds, closures/s and peak RSS. The machine is shared, so take the
best of a few runs and read the figures as rough.

    python bench/bench_generate.py                   # 10,000,000 closures, plus a demo-sized set of files
    python bench/bench_generate.py --rows 2000000 --no-files
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from closewatch.generator.traffic import GeneratorConfig, generate, generate_closures_frame, write_jsonl


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--no-jsonl", action="store_true", help="skip writing the JSON lines file")
    parser.add_argument("--no-files", action="store_true", help="skip the file generator (every format)")
    args = parser.parse_args()

    start = time.perf_counter()
    frame = generate_closures_frame(args.rows, seed=1)
    took = time.perf_counter() - start
    print(f"generate_closures_frame: {frame.height:,} closures in {took:.1f} s ({frame.height / took:,.0f}/s), "
          f"peak RSS {peak_rss_mb():,.0f} MB")
    with tempfile.TemporaryDirectory() as folder:
        if not args.no_jsonl:
            start = time.perf_counter()
            path = write_jsonl(frame, Path(folder) / "closures.jsonl")
            took = time.perf_counter() - start
            print(f"write_jsonl: {path.stat().st_size / 1e9:.2f} GB in {took:.1f} s ({frame.height / took:,.0f} lines/s)")
        del frame
        if not args.no_files:
            config = GeneratorConfig()
            start = time.perf_counter()
            manifest = generate(Path(folder) / "demo", config)
            took = time.perf_counter() - start
            lines = sum(f["lines"] for f in manifest["files"])
            print(f"generate (every format, the demo's defaults): {manifest['events']:,} closes, {lines:,} lines in "
                  f"{len(manifest['files'])} files in {took:.1f} s")
    print(f"peak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
