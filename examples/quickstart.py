"""aicost in one minute: what each OpenAI / Anthropic call cost, and who spent it.

Runs anywhere, with no API key and no network: the real SDKs talk to a local server that answers with real
recorded API responses (``examples/recorded_vendor.py``). In your application the only aicost lines are
``aicost.instrument()`` and, where you want attribution, ``aicost.attribute(...)``.

It also writes every call to a spend ledger, ``./aicost-ledger.db`` (a fresh one each run), so that you can then
ask it the questions finance asks:

    python examples/quickstart.py
    aicost report --by team            # or: python -m aicost.cli report --by team
"""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import anthropic
import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import aicost
from aicost.pricing import format_usd

sys.path.insert(0, str(Path(__file__).parent))
from recorded_vendor import RecordedVendor  # noqa: E402


def usd(amount: Decimal) -> str:
    """aicost's one written form of money (no trailing zeros, no exponent), aligned on the decimal point."""
    whole, dot, frac = format_usd(amount).partition(".")
    return f"{whole:>3}{dot or ' '}{frac:<10}"


# Any OpenTelemetry exporter works (OTLP to your collector, console, ...). This example keeps spans in memory
# to print a table at the end.
exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))

LEDGER = Path("aicost-ledger.db")  # a demo ledger in the current directory, rewritten by each run
for stale in (LEDGER, Path("aicost-ledger.db-wal"), Path("aicost-ledger.db-shm")):
    stale.unlink(missing_ok=True)

# The one line your application needs (ledger= is optional: every call also becomes a row in a spend ledger).
aicost.instrument(tracer_provider=provider, ledger=f"sqlite:///{LEDGER}")

CALLS = [  # (recording, team, feature): each recorded request is replayed through the real SDK
    ("openai-chat-nonstream-014", "support", "triage"),        # gpt-4o-mini, 1,280 of its input tokens cached
    ("openai-chat-nonstream-042", "support", "triage"),        # gpt-5 at the priority service tier, reasoning
    ("openai-chat-stream-010", "search", "answer"),            # a stream, usage from its last chunk
    ("openai-responses-nonstream-011", "search", "answer"),    # Responses API, gpt-5.4
    ("openai-embeddings-nonstream-008", "search", "index"),    # embeddings
    ("anthropic-messages-nonstream-005", "research", "summarize"),  # Claude writes 1,733 tokens to its cache
    ("anthropic-messages-nonstream-006", "research", "summarize"),  # ... and reads them back, 10x cheaper
    ("anthropic-messages-stream-012", "research", "summarize"),     # a stream with a cache read
]


def replay(vendor: RecordedVendor, oai: openai.OpenAI, ant: anthropic.Anthropic, recording_id: str) -> None:
    recording = vendor.queue(recording_id)
    kwargs = dict(recording["request"]["body"])
    endpoint = recording["endpoint"]
    if endpoint == "messages":
        result = ant.messages.create(**kwargs)
    elif endpoint == "responses":
        result = oai.responses.create(**kwargs)
    elif endpoint == "embeddings":
        result = oai.embeddings.create(**kwargs)
    else:
        result = oai.chat.completions.create(**kwargs)
    if kwargs.get("stream"):
        for _ in result:  # the application reads its stream as usual; aicost counts as it passes
            pass


def main() -> None:
    with RecordedVendor() as vendor:
        oai = openai.OpenAI(api_key="not-needed-for-recordings", base_url=f"{vendor.base_url}/v1", max_retries=0)
        ant = anthropic.Anthropic(api_key="not-needed-for-recordings", base_url=vendor.base_url, max_retries=0)
        with aicost.collect_calls() as everything:
            for recording_id, team, feature in CALLS:
                with aicost.attribute(team=team, feature=feature):
                    replay(vendor, oai, ant, recording_id)

    print(f"{'team/feature':<22} {'model':<28} {'input':>6} {'cached':>7} {'output':>6} {'reason':>6}  {'cost USD':<14}")
    by_team: dict[str, Decimal] = {}
    for span in exporter.get_finished_spans():
        a = span.attributes or {}
        if "gen_ai.usage.cost" not in a:
            continue
        cost = Decimal(a["aicost.cost.total_usd"])
        cached = a.get("gen_ai.usage.cache_read.input_tokens", 0)
        written = a.get("gen_ai.usage.cache_write.input_tokens", 0)
        label = f"{a.get('aicost.team')}/{a.get('aicost.feature')}"
        print(f"{label:<22} {a.get('gen_ai.response.model', ''):<28} {a['gen_ai.usage.input_tokens']:>6} "
              f"{cached or ('w' + str(written) if written else 0):>7} {a['gen_ai.usage.output_tokens']:>6} "
              f"{a.get('gen_ai.usage.reasoning.output_tokens', 0):>6}  {usd(cost)}".rstrip())
        by_team[a["aicost.team"]] = by_team.get(a["aicost.team"], Decimal(0)) + cost
    print()
    for team, cost in sorted(by_team.items()):
        print(f"team {team:<10}  {usd(cost)} USD")
    print(f"{'all calls':<15}  {usd(everything.cost_usd)} USD  ({everything.calls} calls, exact Decimal)")
    from aicost.ledger import writer

    writer.active().flush()  # rows are written in the background; at exit at the latest
    print(f"\nledger: {LEDGER} ({writer.active().stats().get('written', 0)} rows). Next: aicost report --by team")


if __name__ == "__main__":
    main()
