"""What one attribution scope costs, counted in CPU instructions (valgrind's callgrind): deterministic.

Each scope runs N times in a fresh process under callgrind, and again N/10 times; the difference divided by the
extra iterations is the cost of one ``with`` (start-up, imports and warm-up cancel out). ``PYTHONHASHSEED=0``
in every run, as in ``overhead_instructions.py``. No vendor call, no OpenTelemetry SDK: the no-op API, so the
figure is aicost's own work for entering and leaving the scope.

Scopes: ``with aicost.feature("x"): pass``, ``with aicost.attribute(team="t"): pass``,
``with aicost.collect_calls(): pass``.

Run: .venv/bin/python benchmarks/scope_instructions.py [--n 2000] [--scopes feature,attribute,collect_calls]
Needs valgrind (Debian: apt-get install valgrind).
"""

from __future__ import annotations

from pathlib import Path

import _callgrind  # benchmarks/_callgrind.py: the script's own directory is on sys.path

ROOT = Path(__file__).resolve().parent.parent
SCOPES = {
    "feature": 'aicost.feature("x")',
    "attribute": 'aicost.attribute(team="t")',
    "collect_calls": "aicost.collect_calls()",
}
WORKLOAD = """
import sys, aicost
n = int(sys.argv[1])
for _ in range(20):  # warm-up: lazy imports and caches
    with {scope}:
        pass
for _ in range(n):
    with {scope}:
        pass
"""


def instructions(scope: str, n: int) -> float:
    return _callgrind.per_iteration(WORKLOAD.format(scope=SCOPES[scope]), n, root=ROOT)


def main() -> None:
    _callgrind.table(__doc__, "scopes", SCOPES, "| scope | instructions per `with` |", instructions)


if __name__ == "__main__":
    main()
