"""What ``import aicost; aicost.instrument()`` costs at start-up, and which vendor SDKs it imports.

Each sample is a fresh interpreter that measures its own CPU time (``time.process_time``) around the two lines,
so interpreter start-up is not counted. Checkouts given on the command line are measured in the same run,
alternately, so a before / after comparison is a ratio from one run (the machine's load changes between runs).
The SDKs an application might have installed but not use are what ``instrument()`` should not load: the column
"SDKs imported" lists which of openai, anthropic, google.genai and botocore were in ``sys.modules`` afterwards.

Run: .venv/bin/python benchmarks/startup.py [--runs N] [CHECKOUT ...]   (default: this checkout)
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
import json, sys, time
start = time.process_time()
import aicost
aicost.instrument()
cpu = time.process_time() - start
print(json.dumps({"aicost": aicost.__file__, "cpu": cpu, "sdks": [m for m in %r if m in sys.modules], "modules": len(sys.modules)}))
""" % (SDKS,)


def sample(checkout: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout), "PYTHONHASHSEED": "0"}
    out = subprocess.run([sys.executable, "-c", SAMPLE], env=env, cwd=checkout, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7, help="samples per checkout (the median is shown)")
    parser.add_argument("checkouts", nargs="*", type=Path, default=[ROOT])
    args = parser.parse_args()
    results: dict[Path, list[dict]] = {c: [] for c in args.checkouts}
    for _ in range(args.runs):
        for checkout in args.checkouts:
            results[checkout].append(sample(checkout))
    first = None
    print(f"{'checkout':40s} {'CPU s (median)':>15s} {'ratio':>7s} {'modules':>8s}  SDKs imported")
    for checkout, samples in results.items():
        cpu = statistics.median(s["cpu"] for s in samples)
        first = first or cpu
        print(f"{str(checkout)[-40:]:40s} {cpu:15.3f} {cpu / first:7.2f} {samples[-1]['modules']:8d}  "
              f"{', '.join(samples[-1]['sdks']) or '-'}")


if __name__ == "__main__":
    main()
