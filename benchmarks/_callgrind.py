"""Counting CPU instructions with valgrind's callgrind, for the ``*_instructions`` benchmarks,
``ledger_enqueue.py``, ``ledger_pair_layout.py`` and ``ledger_report.py --instructions``: deterministic, so two
versions can be compared on a shared box where times vary by 20 %.

Three ways:

* :func:`command`: a whole command, everything it runs (``ledger_report.py``: one ``aicost report``);
* :func:`per_iteration`: a whole ``python -c`` program run twice, ``n`` and ``n // 10`` iterations; the difference
  per iteration (start-up and set-up cancel out);
* :func:`regions`: a workload script that switches collection on and off itself, through a tiny C library
  (``cg_start`` / ``cg_toggle`` / ``cg_dump(name)``, compiled here), and the instructions of each named dump.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

_TOTAL = re.compile(r"^(?:summary|totals): (\d+)", re.M)
_TRIGGER = re.compile(r"^desc: Trigger: Client Request: (\w+)", re.M)
_HELPER_C = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
void cg_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""


def can_toggle() -> bool:
    """Whether :func:`regions` can run: valgrind, its headers and a C compiler."""
    return (shutil.which("valgrind") is not None and shutil.which("cc") is not None
            and Path("/usr/include/valgrind/callgrind.h").exists())


def command(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None = None, stdout: Any = None) -> int:
    """Instructions of one whole command (``argv``: the interpreter, imports and all), its output to ``stdout``
    (a file; by default captured and dropped)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv], check=True,
                       stdout=stdout or subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd, env=env)
        return int(_TOTAL.search(out.read_text()).group(1))


def program(code: str, args: Sequence[str], *, root: Path) -> int:
    """Instructions of ``python -c code args`` (run from ``root``, its ``aicost`` imported, hash seed fixed)."""
    return command([sys.executable, "-c", code, *args], cwd=root,
                   env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(root)})


def per_iteration(code: str, n: int, *, root: Path) -> float:
    """Instructions per iteration of a program whose loop runs ``sys.argv[1]`` times."""
    small = n // 10
    return (program(code, [str(n)], root=root) - program(code, [str(small)], root=root)) / (n - small)


def regions(script: Callable[[str], str], args: Sequence[str], *, root: Path,
            options: Sequence[str] = ()) -> tuple[str, dict[str, int]]:
    """Run the workload ``script(helper)`` (its text, given the path of the compiled helper library to load with
    ctypes) under callgrind, collecting only between its toggles; returns its stdout and the instructions of each
    ``cg_dump(name)``. ``options``: more callgrind options."""
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        (tmp / "h.c").write_text(_HELPER_C)
        subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-o", str(tmp / "h.so"), str(tmp / "h.c")], check=True)
        (tmp / "w.py").write_text(script(str(tmp / "h.so")))
        done = subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no",
                               *options, f"--callgrind-out-file={tmp}/cg.out", sys.executable, str(tmp / "w.py"),
                               *args], capture_output=True, text=True, check=True,
                              env={**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(root)})
        counts = {}
        for dump in tmp.glob("cg.out*"):
            text = dump.read_text(errors="replace")
            trigger = _TRIGGER.search(text)
            if trigger:
                counts[trigger.group(1)] = int(_TOTAL.search(text).group(1))
    return done.stdout, counts


def table(doc: str, option: str, cases: Mapping[str, str], header: str,
          count: Callable[[str, int], float]) -> None:
    """A script's command line: ``--n`` (iterations, default 2000) and ``--<option>`` (some of ``cases``, comma
    separated, default all), then a markdown table of ``count(case, n)`` per case, each row labelled
    ``cases[case]`` under ``| header | instructions per ... |``."""
    import argparse

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument(f"--{option}", default=",".join(cases))
    args = parser.parse_args()
    print(f"{header}\n|---|---|")
    for case in getattr(args, option).split(","):
        print(f"| `{cases[case]}` | {count(case, args.n):,.0f} |", flush=True)
