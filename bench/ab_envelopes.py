"""Two trees of closewatch read the same enveloped files, alternated: what a change did to each envelope.

bench_envelopes.py compares an envelope with the plain log in one tree; this
compares two trees (a checkout of main before a change, and the change) on the
same files, which a shared machine's load disturbs less than two separate
runs. Each read runs in a fresh process with PYTHONPATH set to its tree; the
figure is the CPU seconds (user + sys, every thread) of the read alone
(imports excluded), best of ``--rounds``, per application line, over the
plain log read by the new tree.

    git archive main | tar -x -C /tmp/old          # the tree before the change
    python bench/ab_envelopes.py --old /tmp/old --lines 200000 --envelopes cri,journald
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_envelopes import CLIENT_OF, DEFAULT_CLIENT, app_lines, write

from closewatch.ingest.envelopes import ENVELOPE_LIST, get_envelope

CHILD = r"""
import json, sys, time
from datetime import UTC, datetime
import pyarrow.dataset  # noqa: F401  imported on DuckDB's first Arrow scan: once per process, not per line
import closewatch
from closewatch.ingest.envelopes import reader_for_head
from closewatch.ingest.formats import ParseOptions
from closewatch.ingest.lines import head_lines_of, iter_line_batches
assert closewatch.__file__.startswith(sys.argv[2]), closewatch.__file__
options = ParseOptions(reference_time=datetime.now(UTC))
cpu = time.process_time()
with open(sys.argv[1], "rb") as stream:
    fmt = reader_for_head(head_lines_of(stream, 2000, 1 << 20), None, options)
closes = 0
with open(sys.argv[1], "rb") as stream:
    for parsed in fmt.parse(iter_line_batches(stream), options):
        closes += parsed.events.height
print(json.dumps({"cpu": time.process_time() - cpu, "closes": closes}))
"""


def read_cpu(tree: str, path: Path) -> dict:
    """CPU seconds and closes of one read of ``path`` by the closewatch in ``tree``, in a fresh process."""
    env = dict(os.environ, PYTHONPATH=tree, PYTHONPYCACHEPREFIX=f"/tmp/pyc-ab-{abs(hash(tree))}")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled once, as an installed copy runs
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), tree], env=env, capture_output=True, text=True,
                         cwd=tempfile.gettempdir(), check=False)
    if out.returncode:
        raise SystemExit(f"{tree}: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else 'failed'}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", required=True, help="the tree before the change (a folder holding closewatch/)")
    parser.add_argument("--new", default=str(Path(__file__).resolve().parents[1]), help="the changed tree (default: this one)")
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--envelopes", default="", help="comma-separated names (default: every envelope)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    names = [n for n in args.envelopes.split(",") if n] or [e.name for e in ENVELOPE_LIST]
    with tempfile.TemporaryDirectory(prefix="ab-envelopes-") as folder:
        for name in names:
            client, layout = CLIENT_OF.get(name, DEFAULT_CLIENT)
            timed = app_lines(client, layout, args.lines)
            plain, wrapped = Path(folder) / f"plain-{client}.log", Path(folder) / f"{name}.log"
            if not plain.exists():
                write(plain, [line for _, line in timed])
            write(wrapped, get_envelope(name).wrap(timed, {}))
            cpu: dict[str, list[float]] = {"plain": [], "old": [], "new": []}
            for _ in range(max(1, args.rounds)):
                cpu["plain"].append(read_cpu(args.new, plain)["cpu"])
                old, new = read_cpu(args.old, wrapped), read_cpu(args.new, wrapped)
                if old["closes"] != new["closes"]:
                    raise SystemExit(f"{name}: the trees read {old['closes']} and {new['closes']} closes")
                cpu["old"].append(old["cpu"])
                cpu["new"].append(new["cpu"])
            plain_us, old_us, new_us = (min(cpu[key]) / args.lines * 1e6 for key in ("plain", "old", "new"))
            print(f"{name:<24} plain {plain_us:5.2f}  old +{old_us - plain_us:5.2f} ({old_us / plain_us - 1:5.0%})  "
                  f"new +{new_us - plain_us:5.2f} ({new_us / plain_us - 1:5.0%})  CPU µs a line  "
                  f"load {os.getloadavg()[0]:.1f}", flush=True)
            wrapped.unlink()


if __name__ == "__main__":
    main()
