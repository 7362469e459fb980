"""What the budget guard adds to each LLM call, measured.

Run: ``.venv/bin/python benchmarks/budget.py`` (from the checkout root; starts its own redis-server on
127.0.0.1 if the binary is installed). Prints microseconds per call, best of 5 repeats (CPU time for the in-memory
figures, which is what the guard takes from the application and stays steady on a busy machine; wall time for
Redis, where the round trip is the point):

1. In memory: the store's atomic reserve + settle alone; the whole guard (``before_call`` + ``after_call``) with
   one budget and with three (global + team + model, inside an attribution scope); and the two parts of the
   guard that are not budget logic: counting the prompt's tokens locally and pricing the worst case.
2. Redis: one PING round trip, then the guard's ``before_call`` (one EVALSHA: the reserve script) and
   ``after_call`` (one EVALSHA: the settle script), so each can be read as "round trips per call".
3. Through the SDK, which is what an application pays: an instrumented OpenAI ``chat.completions.create``
   (in-process HTTP transport, as in ``benchmarks/overhead.py``) with no budget, with one budget in the memory
   store, and with one budget in Redis; the arms interleaved in rounds within one run, medians of CPU time of
   the calling thread and of wall time. The difference to the no-budget arm is the guard's cost per call.
   ``--sdk-only`` runs just this part.
4. ``--instructions``: the same SDK call counted in CPU instructions of the calling thread (valgrind's callgrind,
   as ``benchmarks/overhead_instructions.py`` does; deterministic, so right for comparing versions on a busy
   machine): no budget, one budget in memory, one budget in Redis (the client's work; waiting for the reply is
   not instructions).
"""

from __future__ import annotations

import sys
import time
import timeit
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import aicost  # noqa: E402
from aicost.budget import Budget, BudgetGuard  # noqa: E402
from aicost.budget.estimate import count_input  # noqa: E402
from aicost.budget.stores.base import Charge  # noqa: E402
from aicost.budget.stores.memory import MemoryStore  # noqa: E402
from aicost.hooks import CallInfo, CallResult  # noqa: E402
from aicost.integrations import endpoint  # noqa: E402
from aicost.pricing import price_call, resolve  # noqa: E402
from aicost.usage import Usage  # noqa: E402

MODEL = "gpt-4o-mini"
PROMPT = "Summarise the quarterly report in three bullet points for the leadership team."


def us(fn, number: int, timer=time.perf_counter) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5, timer=timer)) / number * 1e6


def cpu_us(fn, number: int) -> float:
    """CPU time of this thread: what the guard costs the application, steadier than wall time on a busy machine."""
    return us(fn, number, timer=time.thread_time)


def make_call() -> tuple[CallInfo, CallResult]:
    info = CallInfo(provider="openai", operation="chat", endpoint="openai.chat.completions.create",
                    request_model=MODEL, kwargs={"model": MODEL, "max_tokens": 256,
                                                 "messages": [{"role": "user", "content": PROMPT}]},
                    stream=False, is_async=False, shape=endpoint("openai.chat.completions.create").shape)
    usage = Usage(input_tokens=22, output_tokens=180)
    result = CallResult(info=info, usage=usage, cost=price_call("openai", MODEL, usage), response_model=MODEL,
                        error_type=None, duration_s=0.0)
    return info, result


def guard_round(guard: BudgetGuard, info: CallInfo, result: CallResult):
    attrs = info.span_attributes

    def run() -> None:
        attrs.clear()
        guard.before_call(info).after_call(result)

    return run


def memory(n: int = 20_000) -> None:
    print("== in memory (us of CPU per call, best of 5)")
    store = MemoryStore()
    charges = [Charge("global/day|x|day:2026-11-23", 10**18, True, 4e9)]
    ids = iter(range(10**9))

    def store_round() -> None:
        rid = str(next(ids))
        store.reserve(rid, charges, 1000, 1.0, 3601.0)
        store.settle(rid, charges, 900, 1.0)

    info, result = make_call()
    one = BudgetGuard([Budget(limit_usd="1000000", window="month")])
    three = BudgetGuard([Budget(limit_usd="1000000", window="month"),
                         Budget(limit_usd="1000000", scope="team"),
                         Budget(limit_usd="1000000", scope="model", window="hour")])
    guard_round(one, info, result)()  # warm: tokenizer and price cache
    store_us = cpu_us(store_round, n)
    one_us = cpu_us(guard_round(one, info, result), n)
    with aicost.attribute(team="search", feature="answers"):
        three_us = cpu_us(guard_round(three, info, result), n)
    count_us = cpu_us(lambda: count_input(info.kwargs, MODEL, "openai", shape=info.shape), n)
    price = resolve("openai", MODEL)
    price_us = cpu_us(lambda: price.cost(Usage(input_tokens=22, output_tokens=256)), n)
    print(f"store reserve + settle (atomic, 1 bucket)          {store_us:7.2f}")
    print(f"guard, 1 budget  (before_call + after_call)        {one_us:7.2f}")
    print(f"guard, 3 budgets (global + team + model)           {three_us:7.2f}")
    print(f"  of which: count prompt tokens locally            {count_us:7.2f}")
    print(f"  of which: price the worst case (Decimal)         {price_us:7.2f}")
    print(f"  the rest: store + bookkeeping (guard - count - price) {one_us - count_us - price_us:7.2f}"
          "  (the parts run warmer in loops of their own than inside the guard)")


def redis(n: int = 2_000) -> None:
    try:
        from servers import redis_server
        import shutil

        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server not installed")
    except Exception as exc:  # pragma: no cover
        print(f"== redis: skipped ({exc})")
        return
    from aicost.budget.stores.redis import RedisStore

    with redis_server() as url:
        store = RedisStore(url, prefix=f"bench{uuid.uuid4().hex[:6]}", timeout_s=1.0)
        client = store._client
        info, result = make_call()
        guard = BudgetGuard([Budget(limit_usd="1000000", window="month")], store=store)
        guard_round(guard, info, result)()
        ping_us = us(client.ping, n)
        tickets = []

        def before() -> None:
            info.span_attributes.clear()
            tickets.append(guard.before_call(info))

        before_us = us(before, n)
        pending = iter(tickets)
        after_us = us(lambda: next(pending).after_call(result), n)
        print("== redis (us of wall time per call, best of 5; redis-server on 127.0.0.1)")
        print(f"PING round trip                                    {ping_us:7.1f}")
        print(f"guard before_call (reserve script)                 {before_us:7.1f}  = {before_us / ping_us:.2f} x PING")
        print(f"guard after_call (settle script)                   {after_us:7.1f}  = {after_us / ping_us:.2f} x PING")
        client.config_resetstat()
        for _ in range(100):
            info.span_attributes.clear()
            guard.before_call(info).after_call(result)
        stats = client.info("commandstats")
        top_level = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()
                     if k.removeprefix("cmdstat_") in ("evalsha", "eval", "script|load", "ping")}
        print(f"scripts run for 100 guarded calls: {top_level} (1 reserve + 1 settle per call; the commands a "
              "script runs inside Redis are not round trips)")
        print(f"server time per script (INFO commandstats)         {stats['cmdstat_evalsha']['usec_per_call']:7.1f}")
        store.reset()
        store.close()


def through_sdk(rounds: int = 7, n: int = 150) -> None:
    import gc
    import random
    import statistics

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from overhead import InProcessVendor, make_clients

    from aicost.budget import configure_budgets, disable_budgets, process_memory_store

    def block(fn, wall: list[float], cpu: list[float]) -> None:
        for _ in range(3):
            fn()
        gc.collect()
        for _ in range(n):
            w, c = time.perf_counter(), time.thread_time()
            fn()
            cpu.append(time.thread_time() - c)
            wall.append(time.perf_counter() - w)

    vendor = InProcessVendor()
    client = make_clients("in-process", None, vendor)["openai"]
    prompt = [{"role": "user", "content": PROMPT}]

    def call() -> None:
        client.chat.completions.create(model=MODEL, messages=prompt, max_tokens=256)

    budgets = [Budget(limit_usd="1000000", window="month", name="bench")]
    arms = {"no budget": None, "memory": "memory"}
    server = None
    try:
        import shutil

        from servers import redis_server

        if shutil.which("redis-server"):
            server = redis_server()
            arms["redis"] = {"url": server.__enter__(), "prefix": f"bench{uuid.uuid4().hex[:6]}"}
    except Exception as exc:  # pragma: no cover
        print(f"(redis arm skipped: {exc})")
    samples = {arm: ([], []) for arm in arms}
    aicost.instrument()
    try:
        for _ in range(rounds):
            order = list(arms)
            random.shuffle(order)
            for arm in order:
                if arms[arm] is None:
                    disable_budgets()
                else:
                    configure_budgets(budgets=budgets, store=arms[arm], store_timeout_s=1.0)
                block(call, *samples[arm])
        disable_budgets()
    finally:
        aicost.uninstrument()
        if server is not None:
            server.__exit__(None, None, None)
        process_memory_store().reset()
    print(f"== through the SDK: instrumented OpenAI chat.completions.create, in-process transport "
          f"(median of {rounds} x {n} calls per arm, arms interleaved; us per call)")
    base_wall = statistics.median(samples["no budget"][0]) * 1e6
    base_cpu = statistics.median(samples["no budget"][1]) * 1e6
    print(f"{'':32} {'CPU':>9} {'added':>9} {'wall':>9} {'added':>9}")
    for arm, (wall, cpu) in samples.items():
        w, c = statistics.median(wall) * 1e6, statistics.median(cpu) * 1e6
        print(f"{arm:32} {c:9.1f} {c - base_cpu:+9.1f} {w:9.1f} {w - base_wall:+9.1f}")


INSTRUCTIONS_WORKLOAD = r'''
import ctypes, gc, sys, threading
sys.path.insert(0, {root!r}); sys.path.insert(0, {tests!r}); sys.path.insert(0, {benchmarks!r})
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider
import aicost
from aicost import metrics
from aicost.budget import Budget, configure_budgets
from overhead import InProcessVendor, make_clients

cg = ctypes.CDLL({helper!r})
arm, n, url = sys.argv[1], int(sys.argv[2]), sys.argv[3]
client = make_clients("in-process", None, InProcessVendor())["openai"]
aicost.instrument(tracer_provider=NoOpTracerProvider(), meter_provider=NoOpMeterProvider())
metrics._worker = threading.current_thread()  # no metrics thread: not what is measured here
if arm != "none":
    store = "memory" if arm == "memory" else {{"url": url, "prefix": "instr-" + str(n)}}
    configure_budgets(budgets=[Budget(limit_usd="1000000", window="month", name="bench")], store=store)
prompt = [{{"role": "user", "content": {prompt!r}}}]

def call():
    client.chat.completions.create(model={model!r}, messages=prompt, max_tokens=256)

for _ in range(5):
    call()
metrics.flush()
gc.collect()
cg.cg_start()
cg.cg_dump(b"skip")
for _ in range(n):
    cg.cg_toggle(); call(); cg.cg_toggle()
cg.cg_dump(b"call")
'''


def instructions(calls: int = 30) -> None:
    import shutil
    import tempfile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from overhead_instructions import build_helper

    from servers import redis_server

    if shutil.which("valgrind") is None or shutil.which("cc") is None:
        print("== instructions: skipped (needs valgrind and a C compiler)")
        return
    with tempfile.TemporaryDirectory() as tmp_dir, redis_server() as url:
        tmp = Path(tmp_dir)
        script = tmp / "workload.py"
        script.write_text(INSTRUCTIONS_WORKLOAD.format(
            root=str(ROOT), tests=str(ROOT / "tests"), benchmarks=str(ROOT / "benchmarks"),
            helper=str(build_helper(tmp)), prompt=PROMPT, model=MODEL))
        per_call = {}
        for arm in ("none", "memory", "redis"):
            counts = _run_instructions(tmp, script, arm, calls, url)
            per_call[arm] = counts["call"] / calls
    base = per_call["none"]
    print(f"== instructions on the calling thread per instrumented OpenAI chat.completions.create ({calls} calls, "
          "no-op OTel providers, in-process transport)")
    for arm, value in per_call.items():
        print(f"{arm:10} {value:12,.0f}  {value - base:+10,.0f} ({100 * (value - base) / base:+5.1f}%)")


def _run_instructions(tmp: Path, script: Path, arm: str, calls: int, url: str) -> dict[str, int]:
    import os
    import re
    import subprocess

    out = tmp / arm
    out.mkdir()
    subprocess.run(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--collect-atstart=no", "--separate-threads=no",
         f"--callgrind-out-file={out}/cg.out", sys.executable, str(script), arm, str(calls), url],
        capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"})
    counts: dict[str, int] = {}
    for dump in sorted(out.glob("cg.out*")):
        text = dump.read_text(errors="replace")
        trigger = re.search(r"^desc: Trigger: Client Request: (.+)$", text, re.M)
        total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if trigger and total:
            counts[trigger.group(1).strip()] = int(total.group(1))
    return counts


if __name__ == "__main__":
    if "--instructions" in sys.argv:
        instructions()
    else:
        if "--sdk-only" not in sys.argv:
            memory()
            redis()
        through_sdk()
