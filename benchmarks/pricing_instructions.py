"""What pricing costs on a call's path, counted in CPU instructions (valgrind's callgrind): deterministic.

The method of ``scope_instructions.py``: each case runs N times in a fresh process under callgrind, and again N/10
times; the difference divided by the extra iterations is one call's cost (start-up, imports, the first lookups and
the catalog load cancel out). ``PYTHONHASHSEED=0`` in every run. Run it from two checkouts (this file copied into
the other one's ``benchmarks/``) in one window to compare versions.

Cases (usage: 1,000 input tokens, 200 of them cache reads, 300 output):

* ``priced``: ``price_call("openai", "gpt-4o-mini", usage)``, the common call, as an application prices one
  (``price_call`` asks Usage's rules of the usage it is handed).
* ``checked``: the same call as aicost's core prices it, ``price_checked`` of usage that went through
  ``Usage.checked()`` when it was read (its ``invalid`` is the verdict: the rules are not asked again).
* ``fallback``: the answer names a snapshot the catalog lacks, priced by the model asked for
  (``fallback_model="gpt-4o-mini"``).
* ``unpriced-tier``: a Gemini priority-tier call on Vertex AI (billed at per-model rates the catalog lacks): unknown,
  with the tier's reason.
* ``budget-priced`` / ``budget-unpriced``: the budget guard's price step for a call (``BudgetGuard._estimate``: the
  price now, the worst case, and on an unknown price the reason), for gpt-4o-mini and for the Gemini priority call
  (``on_unknown_price='allow'``).

Run: .venv/bin/python benchmarks/pricing_instructions.py [--n 2000] [--cases priced,checked,...]
Needs valgrind (Debian: apt-get install valgrind).
"""

from __future__ import annotations

from pathlib import Path

import _callgrind  # benchmarks/_callgrind.py: the script's own directory is on sys.path

ROOT = Path(__file__).resolve().parent.parent
SETUP = """
import sys
from aicost.pricing import price_call
from aicost.usage import Usage
usage = Usage(input_tokens=1000, cache_read_tokens=200, output_tokens=300)
"""
GUARD = """
from aicost import integrations
from aicost.budget import Budget, BudgetGuard
from aicost.hooks import CallInfo
guard = BudgetGuard([Budget(limit_usd="1000000")], on_unknown_price="allow")
def info(provider, model, tier):
    kwargs = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}
    call = CallInfo(provider=provider, operation="chat", endpoint="openai.chat.completions.create",
                    request_model=model, kwargs=kwargs, stream=False, is_async=False,
                    shape=integrations.endpoint("openai.chat.completions.create").shape)
    call.service_tier = tier
    return call
"""
CASES = {
    "priced": ("", 'price_call("openai", "gpt-4o-mini", usage)'),
    "checked": ("from aicost.pricing import price_checked\nusage.checked()\n",
                'price_checked("openai", "gpt-4o-mini", usage)'),
    "fallback": ("", 'price_call("openai", "gpt-4o-mini-internal-7", usage, fallback_model="gpt-4o-mini")'),
    "unpriced-tier": ("", 'price_call("gcp.vertex_ai", "gemini-2.5-flash", usage, service_tier="priority")'),
    "budget-priced": (GUARD + 'call = info("openai", "gpt-4o-mini", None)\n',
                      'guard._estimate(call, "gpt-4o-mini", "openai", 20, True)'),
    "budget-unpriced": (GUARD + 'call = info("gcp.vertex_ai", "gemini-2.5-flash", "priority")\n',
                        'guard._estimate(call, "gemini-2.5-flash", "gcp.vertex_ai", 20, True)'),
}
LOOP = """
n = int(sys.argv[1])
for _ in range(20):  # warm-up: lazy imports, the catalog, the caches
    {call}
for _ in range(n):
    {call}
"""


def instructions(case: str, n: int) -> float:
    setup, call = CASES[case]
    return _callgrind.per_iteration(SETUP + setup + LOOP.format(call=call), n, root=ROOT)


def main() -> None:
    _callgrind.table(__doc__, "cases", {case: case for case in CASES}, "| case | instructions per call |",
                     instructions)


if __name__ == "__main__":
    main()
