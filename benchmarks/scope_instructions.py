"""What one attribution scope costs, counted in CPU instructions (valgrind's callgrind): deterministic.

Each use runs N times in a fresh process under callgrind, and again N/10 times; the difference divided by the
extra iterations is the cost of one use (start-up, imports and warm-up cancel out). ``PYTHONHASHSEED=0`` in every
run, as in ``overhead_instructions.py``. No vendor call, no OpenTelemetry SDK: the no-op API, so the figure is
aicost's own work for entering and leaving the scope.

Uses: ``with aicost.feature("x"): pass``, ``with aicost.attribute(team="t"): pass``,
``with aicost.collect_calls(): pass``; and calls of functions decorated with ``@aicost.feature("x")``: a plain
function, a plain function that returns a coroutine (run to its end by hand, no event loop), an ``async def``
(the same), a generator of 10 items read to its end, and one of no item (a generator's cost per item is the
difference over 10). A decorated call's row includes the undecorated work (the call, the coroutine's creation and
run), the same before and after a change. And the part of a generator's run that is its ``attribution._Running``
(made, watched, finished, let go; its scope's ending a no-op): as it runs before ``aicost.instrument()``, and after
it, when watching a run also puts :mod:`aicost._gc`'s hook in ``gc.callbacks`` (and takes it out at the end).

Run: .venv/bin/python benchmarks/scope_instructions.py [--n 2000] [--scopes feature,attribute,...]
Needs valgrind (Debian: apt-get install valgrind). Count with the bytecode cache written (``PYTHONDONTWRITEBYTECODE``
unset): see benchmarks/README.md.
"""

from __future__ import annotations

from pathlib import Path

import _callgrind  # benchmarks/_callgrind.py: the script's own directory is on sys.path

ROOT = Path(__file__).resolve().parent.parent
WITH = "with {scope}:\n        pass"
DECORATED = '''
async def job():
    pass

@aicost.feature("x")
def plain():
    pass

@aicost.feature("x")
def returns_coroutine():
    return job()

@aicost.feature("x")
async def coroutine():
    pass

@aicost.feature("x")
def generator():
    for i in range(10):
        yield i

@aicost.feature("x")
def empty_generator():
    return
    yield

from aicost import _gc, attribution

class EndsNothing(attribution._ScopeBase):
    def _safe_finish(self, state, exc):
        pass

ends_nothing, a_state = EndsNothing(), object()

def run(coro):
    try:
        coro.send(None)
    except StopIteration:
        pass
'''
# case: (its row's label, the statement one iteration runs[, what runs once before])
CASES = {
    "feature": ('with aicost.feature("x")', WITH.format(scope='aicost.feature("x")')),
    "attribute": ('with aicost.attribute(team="t")', WITH.format(scope='aicost.attribute(team="t")')),
    "collect_calls": ("with aicost.collect_calls()", WITH.format(scope="aicost.collect_calls()")),
    "plain": ("plain(): a plain function under @aicost.feature", "plain()"),
    "returns_coroutine": ("run(returns_coroutine()): a plain function returning a coroutine, under @aicost.feature",
                          "run(returns_coroutine())"),
    "coroutine": ("run(coroutine()): an async def under @aicost.feature", "run(coroutine())"),
    "generator": ("for _ in generator(): a generator of 10 items under @aicost.feature",
                  "for _ in generator():\n        pass"),
    "empty_generator": ("for _ in empty_generator(): a generator of no item under @aicost.feature",
                        "for _ in empty_generator():\n        pass"),
    "running": ("a generator run's _Running alone, before aicost.instrument()",
                "attribution._Running(ends_nothing, a_state).finish(None)"),
    "running_installed": ("a generator run's _Running alone, after aicost.instrument() (its _gc hook)",
                          "attribution._Running(ends_nothing, a_state).finish(None)", "_gc.install()"),
}
WORKLOAD = """
import sys, aicost
{decorated}
{setup}
n = int(sys.argv[1])
for _ in range(20):  # warm-up: lazy imports and caches
    {statement}
for _ in range(n):
    {statement}
"""


def instructions(case: str, n: int) -> float:
    _, statement, *setup = CASES[case]
    return _callgrind.per_iteration(WORKLOAD.format(decorated=DECORATED, statement=statement, setup="".join(setup)),
                                    n, root=ROOT)


def main() -> None:
    _callgrind.table(__doc__, "scopes", {case: label for case, (label, *_) in CASES.items()},
                     "| use | instructions per use |", instructions)


if __name__ == "__main__":
    main()
