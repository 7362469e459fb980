"""Cache lookup latency at 10k and 100k entries, and embedding time per prompt.

Measures, in one run on this machine:
* embedding time per prompt (hashed n-grams, all-MiniLM-L6-v2 numpy forward pass) over the prompts of the
  labelled pair set;
* exact tier: a full ``@aicost.cache`` hit (key build + in-memory store) with 10k / 100k entries stored;
* semantic tier, in-memory index: cosine search over 10k / 100k 384-d vectors in one context (the worst case:
  real contexts are partitioned), with the SimHash prefilter and with the exact scan, and a full semantic lookup
  (embed + search + guards + verifier);
* shared stores when their servers are available: Redis GET of an entry, pgvector HNSW search, with 10k / 100k
  entries (servers started on 127.0.0.1 by tests/servers.py and tests/cache_helpers.py).

Run: ``.venv/bin/python benchmarks/cache_latency.py [--sizes 10000,100000] [--skip-redis] [--skip-postgres]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# One BLAS thread: MiniLM's matrices are small, and on a busy 2-core machine OpenBLAS threads thrash (measured
# here: 72 ms per prompt with one thread vs 820 ms with the default under a load average of 6.5).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

import aicost  # noqa: E402
from aicost.cache import MemoryStore, Semantic  # noqa: E402
from aicost.cache.embedders import HashedNgramEmbedder  # noqa: E402
from aicost.cache.entry import Entry  # noqa: E402
from aicost.cache.index import MemoryVectorIndex  # noqa: E402

from cache_eval import load_pairs  # noqa: E402


_cpu: list[float] = []  # CPU time of the calling thread for each timed() call since the last report()


def timed(fn, repeats: int) -> list[float]:
    """Wall-clock seconds per call; the thread's CPU seconds go to the next report() (on a shared box the CPU
    time is the steadier figure: it leaves out the time other processes held the core)."""
    out = []
    for _ in range(repeats):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        _cpu.append(time.thread_time() - c0)
    return out


def report(label: str, seconds: list[float]) -> None:
    ms = sorted(s * 1000 for s in seconds)
    p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
    cpu = statistics.median(_cpu) * 1000 if _cpu else float("nan")
    _cpu.clear()
    print(f"| {label} | {statistics.median(ms):.3f} | {p95:.3f} | {cpu:.3f} | {len(ms)} |", flush=True)


def random_unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((n, dim)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--skip-redis", action="store_true")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-minilm", action="store_true")
    parser.add_argument("--skip-memory", action="store_true", help="skip embeddings and in-memory tiers")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    prompts = sorted({t for _, _, a, b in load_pairs() for t in (a, b)})

    print(f"load average at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores "
          f"(OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')})\n")
    print("| measurement | median ms | p95 ms | median CPU ms | samples |")
    print("|---|---|---|---|---|")
    if not args.skip_memory:
        bench_memory(sizes, prompts, args.skip_minilm)
    if not args.skip_redis:
        bench_redis(sizes)
    if not args.skip_postgres:
        bench_postgres(sizes)


def bench_memory(sizes: list[int], prompts: list[str], skip_minilm: bool) -> None:
    ngram = HashedNgramEmbedder()
    report("embed one prompt: hashed n-grams", [timed(lambda p=p: ngram.embed([p]), 1)[0] for p in prompts])
    minilm = None
    if not skip_minilm:
        from aicost.cache import MiniLMEmbedder

        t0 = time.perf_counter()
        minilm = MiniLMEmbedder()
        print(f"| load all-MiniLM-L6-v2 (hash check + weights) | {(time.perf_counter() - t0) * 1000:.0f} | - | - | 1 |")
        minilm.embed(["warm up"])
        report("embed one prompt: all-MiniLM-L6-v2 (numpy)", [timed(lambda p=p: minilm.embed([p]), 1)[0]
                                                             for p in prompts])

    for n in sizes:
        # Exact tier: full decorator hit with n entries in the in-memory store.
        store = MemoryStore(max_entries=n + 10)

        @aicost.cache(prompt="q", store=store, name=f"bench.exact.{n}")
        def answer(q):
            return {"text": "answer " + q}

        for i in range(n):
            answer(f"question number {i} about the product")
        probe = [f"Question number {i * 7 % n} about the product" for i in range(500)]
        report(f"exact tier hit via @aicost.cache, {n} entries", [timed(lambda q=q: answer(q), 1)[0] for q in probe])

        # Semantic index: brute force over n vectors in one context.
        dim = 384
        index = MemoryVectorIndex(dim, max_entries=n + 10)
        vectors = random_unit(n, dim)
        for i in range(n):
            index.add("ctx", f"k{i}", f"text {i}", vectors[i])
        queries = random_unit(200, dim, seed=1)
        report(f"in-memory vector search (SimHash prefilter above 20k, then exact), {n} x 384-d", [
            timed(lambda q=q: index.search("ctx", q, 3, 0.6), 1)[0] for q in queries])
        exact = MemoryVectorIndex(dim, max_entries=n + 10, exact_below=10**9)
        for i in range(n):
            exact.add("ctx", f"k{i}", f"text {i}", vectors[i])
        report(f"in-memory vector search (exact scan, the previous default), {n} x 384-d", [
            timed(lambda q=q: exact.search("ctx", q, 3, 0.6), 1)[0] for q in queries])
        del exact

        if minilm is not None:
            sem = Semantic(minilm)
            runtime = sem.bind(MemoryStore(n + 10), "bench:")
            runtime.index = index
            real = prompts[:50]
            for i, p in enumerate(real):
                key = f"real{i}"
                index.add("ctx", key, p, minilm.embed([p])[0])
            fetch = {f"real{i}": Entry(value=i, text=p) for i, p in enumerate(real)}.get
            probes = [p.replace("?", " ?") + " please" for p in prompts[50:150]]
            report(f"full semantic lookup (MiniLM embed + search + guards + verifier), {n} entries",
                   [timed(lambda q=q: runtime.lookup("ctx", q, fetch), 1)[0] for q in probes])


def bench_redis(sizes: list[int]) -> None:
    import pytest

    from aicost.cache import RedisStore
    from servers import redis_server

    try:
        ctx = redis_server()
        url = ctx.__enter__()
    except (pytest.skip.Exception, pytest.fail.Exception, RuntimeError) as exc:
        print(f"| redis: skipped ({exc}) | - | - | - | - |")
        return
    try:
        store = RedisStore(url)
        for n in sizes:
            store.client.flushdb()
            entry = Entry(value={"text": "an answer of a few hundred bytes " * 8})
            pipe = store.client.pipeline(transaction=False)
            for i in range(n):
                key = f"aicost:cache:bench:{i}"
                pipe.set(key, store.codec.dump(key, entry), ex=3600)
                if i % 5000 == 4999:
                    pipe.execute()
            pipe.execute()
            keys = [f"aicost:cache:bench:{i * 13 % n}" for i in range(500)]
            report(f"Redis exact get (loopback), {n} entries", [timed(lambda k=k: store.get(k), 1)[0] for k in keys])
    finally:
        ctx.__exit__(None, None, None)


def bench_postgres(sizes: list[int]) -> None:
    import pytest

    from aicost.cache import PgVectorStore
    from cache_helpers import postgres_server

    try:
        ctx = postgres_server()
        url = ctx.__enter__()
    except (pytest.skip.Exception, pytest.fail.Exception, RuntimeError) as exc:
        print(f"| postgres: skipped ({exc}) | - | - | - | - |")
        return
    try:
        for n in sizes:
            table = f"bench_{n}"
            store = PgVectorStore(url, table=table, hnsw=False)
            vectors = random_unit(n, 384, seed=2)
            vtable = store._vector_table(384)  # connects and creates the schema
            # Bulk load and index build: a maintenance connection, without the store's 1 s statement timeout.
            with store.connection() as conn:
                t0 = time.perf_counter()
                with conn.cursor() as cur:
                    with cur.copy(f"COPY {table} (key, value) FROM STDIN") as copy:
                        for i in range(n):
                            key = f"aicost:cache:b:{i}"
                            copy.write_row((key, store.codec.dump(key, Entry(value="x"))))
                    with cur.copy(f"COPY {vtable} (key, context, text, embedding) FROM STDIN") as copy:
                        for i in range(n):
                            copy.write_row((f"aicost:cache:b:{i}", "ctx", f"text {i}",
                                            "[" + ",".join(f"{x:.6g}" for x in vectors[i]) + "]"))
                load_s = time.perf_counter() - t0
                # The default maintenance_work_mem (64 MB) cannot hold a 100k x 384 graph: the build then took
                # 567 s here.
                conn.execute("SET maintenance_work_mem = '1GB'")
                t0 = time.perf_counter()
                conn.execute(f"CREATE INDEX {vtable}_hnsw ON {vtable} USING hnsw (embedding vector_cosine_ops)")
                print(f"| pgvector: load {n} rows {load_s:.1f} s, build HNSW {time.perf_counter() - t0:.1f} s "
                      "| - | - | - | - |", flush=True)
                conn.execute("ANALYZE")
            index = store.vector_index(type("E", (), {"dim": 384})())
            queries = random_unit(200, 384, seed=3)
            report(f"pgvector HNSW search (loopback), {n} x 384-d", [
                timed(lambda q=q: index.search("ctx", q, 3, 0.0), 1)[0] for q in queries])
            keys = [f"aicost:cache:b:{i * 13 % n}" for i in range(300)]
            report(f"pgvector store exact get, {n} entries", [timed(lambda k=k: store.get(k), 1)[0] for k in keys])
            store.close()
    finally:
        ctx.__exit__(None, None, None)


if __name__ == "__main__":
    main()
