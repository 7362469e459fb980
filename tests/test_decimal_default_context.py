"""A host may change ``decimal.DefaultContext`` itself, before it imports aicost: every new thread's context is a
copy of it, and so is every field that a ``decimal.Context(...)`` is not given. aicost's private contexts give
every field that matters, so its figures are the same as with Python's defaults. Before, a DefaultContext that
trapped Inexact made the unit costs of ``aicost report`` fail (1/3 of a dollar per run cannot be exact) and a
GPU-hour price could not be loaded; checked in a fresh interpreter, since the contexts are made at import.

The other fields too (exponent limits, clamp, lower-case exponents, trapped signals): every private context is made
by ``pricing.money.private_context``, which gives them all, and no constant is computed in the importing thread's
context (which is a copy of DefaultContext). Before, at ``Emax = 4`` a call costing $100,000 was priced as unknown
(the money context overflowed), and with ``clamp = 1`` and Subnormal trapped aicost could not even be imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

FIGURES = r'''
import json
import sys
import tempfile
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import aicost.pricing as pricing
from aicost.ledger import CALL, FeatureRun, LedgerRow, open_store
from aicost.ledger.focus import export_focus
from aicost.ledger.report import Period, build_report, render_table
from aicost.usage import Usage

out = {}
pricing.set_price("gpu-served", gpu_hour="2.40", gpus=3, tokens_per_second=1700)
out["gpu price"] = str(pricing.price_call(None, "gpu-served", Usage(input_tokens=1234, output_tokens=56)).total)
dear = pricing.price_call(None, "gpt-4o", Usage(input_tokens=40_000_000_008, output_tokens=3))  # $100,000.00005
out["dear call"] = str(dear.total)
day = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)
with tempfile.TemporaryDirectory() as tmp:
    with open_store(f"sqlite:///{tmp}/ledger.db") as store:
        store.write([LedgerRow(span_id=f"{i:016x}", kind=CALL, time=day, provider="openai", request_model="gpt-4o",
                               input_tokens=1000, output_tokens=10, cost=Decimal(f"0.{i + 1}"),
                               cost_parts={"input": Decimal(f"0.{i + 1}")}, price_source="catalog",
                               team="search", feature="answer", run_id=f"r{i % 3}") for i in range(7)]
                    + [LedgerRow(span_id="d" * 16, kind=CALL, time=day, provider="openai", request_model="gpt-4o",
                                 input_tokens=40_000_000_008, output_tokens=3, cost=dear.total,
                                 cost_parts=dict(dear.parts), price_source="catalog", team="research")],
                    [FeatureRun(run_id=f"r{i}", feature="answer", time=day, outcome="succeeded", calls=1)
                     for i in range(3)])
        period = Period(day.replace(hour=0), day.replace(day=3, hour=0))
        report = render_table(build_report(store, period=period, group_by=("team",)))
        out["report"] = "\n".join(line for line in report.splitlines() if not line.startswith("ledger: "))
        export_focus(store, period.start, period.end, f"{tmp}/focus.csv", progress=False)
        out["focus"] = Path(f"{tmp}/focus.csv").read_text()
print(json.dumps(out))
'''

HOST = r'''
import decimal
decimal.DefaultContext.prec = 4
decimal.DefaultContext.rounding = decimal.ROUND_DOWN
decimal.DefaultContext.traps[decimal.Inexact] = True
'''

# Every other field, at values Python accepts that no amount survives in: at most 5 digits before the point, at
# most 4 after it before the exponent, exponents clamped, written 'e', and every signal trapped.
EVERY_FIELD = r'''
import decimal
decimal.DefaultContext.Emax, decimal.DefaultContext.Emin = 4, -4
decimal.DefaultContext.clamp, decimal.DefaultContext.capitals = 1, 0
decimal.DefaultContext.traps.update({signal: True for signal in (
    decimal.FloatOperation, decimal.Clamped, decimal.Subnormal, decimal.Underflow, decimal.Rounded, decimal.Inexact)})
'''


def _figures(prelude: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run([sys.executable, "-c", prelude + FIGURES], capture_output=True, text=True, env=env,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_changed_default_context_changes_no_figure():
    expected = _figures("")
    assert "33334.2666833333 USD per run" in expected["report"]  # $100,002.80005 over 3 runs, to ten decimals
    assert _figures(HOST) == expected


def test_a_default_context_changed_in_every_other_field_changes_no_figure():
    expected = _figures("")
    assert expected["dear call"] == "100000.00005"
    assert _figures(EVERY_FIELD) == expected
