"""What every vendor's replay test checks alike: a recording served once, the SDK's error for a recorded failure,
one aicost span without the prompt in it, nothing billed for a failed or free call, the recorded usage, and a cost
equal to the published price (or unknown, never $0).

The vendor modules (tests/test_replay_google.py, tests/test_replay_bedrock.py) keep what differs: how a call is made,
and the usage and prices they read independently of aicost.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable, Iterable, Mapping, Optional

import pytest

from aicost import semconv as sc
from vendor_server import Reply

MILLION = Decimal(1_000_000)
COST_TOTAL = "aicost.cost.total_usd"
PRICE_KNOWN = "aicost.price.known"
# Usage keys the vendor modules read from the recordings -> the span attribute that must carry each.
_USAGE_ATTRIBUTES = {
    "input": sc.GEN_AI_USAGE_INPUT_TOKENS,
    "output": sc.GEN_AI_USAGE_OUTPUT_TOKENS,
    "cache_read": sc.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    "cache_write": sc.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    "reasoning": sc.GEN_AI_USAGE_REASONING_OUTPUT_TOKENS,
}


def with_known_gaps(ids: Iterable[str], gaps: Mapping[str, str]) -> list[Any]:
    """The recording ids as test parameters, each known gap a strict xfail with its reason."""
    return [pytest.param(r, marks=pytest.mark.xfail(reason=gaps[r], strict=True)) if r in gaps else r for r in ids]


def replay(server: Any, rec: dict, call: Callable[[], Any], error: type[BaseException],
           status_of: Callable[[Any], int]) -> None:
    """Serve ``rec`` and make the call; a recorded failure must reach the caller as the SDK's ``error`` with the
    recorded status (``status_of(exception)``). Exactly one request is sent."""
    rid, status = rec["id"], rec["response"]["status"]
    server.enqueue(Reply.from_recording(rec))
    if status >= 400:
        with pytest.raises(error) as raised:
            call()
        assert status_of(raised.value) == status, f"{rid}: the SDK's error carries the recorded status"
    else:
        call()
    assert server.pending == 0, f"{rid}: exactly one request was sent"


def the_cost_span(instrumented: Any, rid: str, prompt: str) -> dict[str, Any]:
    """The attributes of the call's one aicost span, checked to hold nothing of the prompt."""
    spans = instrumented.aicost_spans()
    assert len(spans) == 1, f"{rid}: one aicost span per call, got {[s.name for s in spans]}"
    attrs = dict(spans[0].attributes or {})
    assert not any(prompt in str(v) for v in attrs.values()), f"{rid}: the prompt leaked into the span"
    return attrs


def checked_unbilled(rec: dict, attrs: Mapping[str, Any]) -> bool:
    """True (after checking it) for a call that bills nothing: a token count, or a recorded failure, whose cost is
    $0, or unknown for a model no catalog knows (never an invented price)."""
    rid = rec["id"]
    if rec["endpoint"].lower() == "counttokens":
        assert attrs[sc.AICOST_BILLABLE] is False and sc.GEN_AI_USAGE_COST not in attrs, rid
        return True
    if rec["response"]["status"] >= 400:
        assert attrs[sc.ERROR_TYPE], rid
        assert attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] == 0 == attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS], rid
        assert Decimal(attrs[COST_TOTAL]) == 0 if COST_TOTAL in attrs else attrs[PRICE_KNOWN] is False, rid
        return True
    return False


def check_usage(rid: str, attrs: Mapping[str, Any], usage: Mapping[str, int]) -> None:
    """The span reports the recorded counts exactly (a class the span leaves out is 0), not as an estimate."""
    for key, attribute in _USAGE_ATTRIBUTES.items():
        if key in usage:
            default = None if key in ("input", "output") else 0
            assert attrs.get(attribute, default) == usage[key], f"{rid}: {attribute}"
    assert not attrs.get(sc.AICOST_USAGE_ESTIMATED), rid


def check_cost(rid: str, attrs: Mapping[str, Any], want: Optional[Decimal], detail: str = "") -> None:
    """The cost equals ``want`` to the last digit; ``None``: the price is unknown, and so is the cost (never $0)."""
    if want is None:
        assert attrs[PRICE_KNOWN] is False and COST_TOTAL not in attrs, f"{rid}: unknown, never $0"
        return
    got = Decimal(attrs[COST_TOTAL])
    assert got == want, f"{rid}: cost {got} != usage x published price {want} ({detail})"
