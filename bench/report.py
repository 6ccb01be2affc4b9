"""The one line format every benchmark prints its figures in, so `bench/run_all.py` can gather them into one table.

A result is one line of standard output, five tab-separated fields after the
word ``RESULT``::

    RESULT<TAB>name<TAB>value<TAB>unit<TAB>target<TAB>ratio

- ``name``: what was measured, unique across the scripts, lower case with
  dashes and slashes (``dashboard/overview/cold``, ``ingest/2M-jsonl/ratio``);
  no tabs or spaces.
- ``value``: the figure, a plain decimal number (``0.842``).
- ``unit``: ``s``, ``ms``, ``lines/s``, ``x`` (a ratio of two times), ``MB``,
  ``cpu-s/min`` ...
- ``target``: the figure the issue asks for, in the same unit, or ``-`` when
  there is none.
- ``ratio``: how far from the target, always read the same way: **at most 1.0
  means the target is met**. For "at most" targets it is value / target; for
  "at least" targets (throughput) target / value. ``-`` without a target.

Everything else a script prints (progress, detail, explanations) is free text
and passes through the runner untouched. Use :func:`result` rather than
formatting the line by hand; :func:`parse` reads one back.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

PREFIX = "RESULT"


@dataclass(frozen=True)
class Result:
    """One measured figure, the target it is held against and how far from it (at most 1.0: met)."""

    name: str
    value: float
    unit: str
    target: float | None = None
    ratio: float | None = None

    @property
    def met(self) -> bool | None:
        return None if self.ratio is None else self.ratio <= 1.0

    def line(self) -> str:
        target = "-" if self.target is None else f"{self.target:g}"
        ratio = "-" if self.ratio is None else f"{self.ratio:.3f}"
        return "\t".join((PREFIX, self.name, f"{self.value:.6g}", self.unit, target, ratio))


def ratio_to(value: float, target: float | None, higher_is_better: bool = False) -> float | None:
    """value / target for "at most" targets, target / value for "at least" ones: at most 1.0 means met."""
    if target is None:
        return None
    if higher_is_better:
        return target / value if value else math.inf
    return value / target if target else math.inf


def result(name: str, value: float, unit: str, target: float | None = None, *, higher_is_better: bool = False) -> Result:
    """Print one figure in the runner's format (flushed at once, so a killed run keeps what it measured)."""
    if not name or not unit or any(c.isspace() for c in name + unit):
        raise ValueError(f"A result's name and unit are words without spaces: {name!r} {unit!r}")
    measured = Result(name, float(value), unit, target, ratio_to(float(value), target, higher_is_better))
    print(measured.line(), file=sys.stdout, flush=True)
    return measured


def parse(line: str) -> Result | None:
    """The result a line of a script's output holds, or None for free text (and for a malformed result line)."""
    fields = line.rstrip("\r\n").split("\t")
    if len(fields) != 6 or fields[0] != PREFIX:
        return None
    _, name, value, unit, target, ratio = fields
    try:
        return Result(name, float(value), unit, None if target == "-" else float(target), None if ratio == "-" else float(ratio))
    except ValueError:
        return None
