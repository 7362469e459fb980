"""The README's first command runs examples/quickstart.py: it must keep working and keep its numbers right."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_prints_exact_per_call_costs():
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    rows = [line for line in lines[1:] if "/" in line.split(" ")[0]]  # lines[0] is the header
    assert len(rows) == 8, result.stdout
    # gpt-5 at the priority tier: 8 input x $2.50 + 82 output x $20.00 per million tokens.
    gpt5 = next(line for line in rows if "gpt-5-2025-08-07" in line)
    assert Decimal(gpt5.split()[-1]) == Decimal("0.00166")
    # The per-call costs add up exactly to the total the collector reports.
    total = sum(Decimal(line.split()[-1]) for line in rows)
    summary = next(line for line in lines if line.startswith("all calls"))
    assert Decimal(summary.split()[2]) == total
