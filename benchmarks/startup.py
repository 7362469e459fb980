"""What ``import aicost; aicost.instrument()`` costs at start-up, and which vendor SDKs it imports.

Each sample is a fresh interpreter that measures its own CPU time (``time.process_time``) around the two lines,
so interpreter start-up is not counted. Checkouts given on the command line are measured in the same run,
alternately, so a before / after comparison is a ratio from one run (the machine's load changes between runs).
The SDKs an application might have installed but not use are what ``instrument()`` should not load: the last
column lists which of openai, anthropic, google.genai and botocore were in ``sys.modules`` after it. The
"+ imports" column then imports the SDKs the application does use (``--then``): with aicost's post-import hook
their patching happens there, so that column is the whole start-up of an application using those SDKs.

Run: .venv/bin/python benchmarks/startup.py [--runs N] [--then openai,anthropic] [CHECKOUT ...]   (default: this checkout)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SDKS = ("openai", "anthropic", "google.genai", "botocore")

SAMPLE = r"""
import importlib, json, sys, time
start = time.process_time()
import aicost
aicost.instrument()
cpu = time.process_time() - start
sdks = [m for m in %r if m in sys.modules]
modules = len(sys.modules)
for name in sys.argv[1:]:  # what the application imports afterwards (patched then, if not before)
    importlib.import_module(name)
print(json.dumps({"cpu": cpu, "sdks": sdks, "modules": modules, "total": time.process_time() - start}))
""" % (SDKS,)


def sample(checkout: Path, then: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONHASHSEED": "0"}
    out = subprocess.run([sys.executable, "-c", SAMPLE, *then], env=env, cwd=checkout, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7, help="samples per checkout (the median is shown)")
    parser.add_argument("--then", default="openai,anthropic",
                        help="modules the application imports afterwards, for the second column ('' for none)")
    parser.add_argument("checkouts", nargs="*", type=Path, default=[ROOT])
    args = parser.parse_args()
    then = [m for m in args.then.split(",") if m]
    results: dict[Path, list[dict]] = {c: [] for c in args.checkouts}
    for _ in range(args.runs):
        for checkout in args.checkouts:
            results[checkout].append(sample(checkout, then))
    first = None
    print(f"CPU seconds, median of {args.runs}; second column: then import {', '.join(then) or 'nothing'}")
    print(f"{'checkout':32s} {'instrument()':>13s} {'ratio':>6s} {'+ imports':>10s} {'modules':>8s}  "
          "SDKs instrument() imported")
    for checkout, samples in results.items():
        cpu = statistics.median(s["cpu"] for s in samples)
        total = statistics.median(s["total"] for s in samples)
        first = first or cpu
        print(f"{str(checkout)[-32:]:32s} {cpu:13.3f} {cpu / first:6.2f} {total:10.3f} {samples[-1]['modules']:8d}  "
              f"{', '.join(samples[-1]['sdks']) or '-'}")


if __name__ == "__main__":
    main()
