"""Precision and recall of cache hits on the labelled pairs in tests/fixtures/cache/pairs.tsv.

For every pair (A, B) the cached request A is stored, then B is looked up through the real cache code
(``Semantic.bind(...)`` -> guards -> verifier), in its own context so pairs cannot interfere. A hit on a label-1
pair is a true positive, a hit on a label-0 pair a wrong answer served. Reported per embedder, threshold, guard
setting and verifier, plus the exact tier (the default configuration of ``@aicost.cache``).

Run: ``.venv/bin/python benchmarks/cache_eval.py [--thresholds 0.7,0.8,...] [--embedders minilm,ngram]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# One BLAS thread: MiniLM's matrices are small, and on a busy 2-core machine OpenBLAS threads thrash (measured
# here: 72 ms per prompt with one thread vs 820 ms with the default under a load average of 6.5).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from aicost.cache.embedders import HashedNgramEmbedder  # noqa: E402
from aicost.cache.entry import Entry  # noqa: E402
from aicost.cache.guards import Guards  # noqa: E402
from aicost.cache.keys import normalise_text  # noqa: E402
from aicost.cache.semantic import Semantic  # noqa: E402
from aicost.cache.stores import MemoryStore  # noqa: E402

PAIRS = ROOT / "tests" / "fixtures" / "cache" / "pairs.tsv"


def load_pairs(path: Path = PAIRS) -> list[tuple[str, int, str, str]]:
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        category, label, a, b = line.split("\t")
        rows.append((category, int(label), a, b))
    return rows


class MemoEmbedder:
    """Wraps an embedder so each distinct text is embedded once per run (and times it)."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.tokenizer = getattr(inner, "tokenizer", None)  # the verifier's typo check reads its vocabulary
        self.name = inner.name
        self.dim = inner.dim
        self.memo: dict[str, np.ndarray] = {}
        self.seconds = 0.0
        self.count = 0

    def embed(self, texts):
        missing = [t for t in texts if t not in self.memo]
        for t in missing:
            t0 = time.perf_counter()
            self.memo[t] = self.inner.embed([t])[0]
            self.seconds += time.perf_counter() - t0
            self.count += 1
        return np.stack([self.memo[t] for t in texts])


def evaluate(pairs, semantic: Semantic | None) -> dict:
    """Hit decisions for every pair; ``semantic=None`` evaluates the exact tier alone."""
    tp = fp = 0
    positives = sum(1 for _, label, _, _ in pairs if label == 1)
    wrong = Counter()
    wrong_pairs: list[tuple[str, str, str]] = []
    missed = Counter()  # why label-1 pairs missed: the veto of the best candidate
    for i, (category, label, a, b) in enumerate(pairs):
        veto = None
        if semantic is None:
            hit = normalise_text(a) == normalise_text(b)
        else:
            store = MemoryStore(10)
            runtime = semantic.bind(store, "eval:")
            key = f"eval:{i}"
            store.put(key, Entry(value=a, text=a, context="ctx"), None)
            runtime.add("ctx", a, key, None)
            match = runtime.lookup("ctx", b, store.get)
            hit = normalise_text(a) == normalise_text(b) or match.entry is not None
            veto = match.veto or "threshold"
        if hit and label == 1:
            tp += 1
        elif hit:
            fp += 1
            wrong[category] += 1
            wrong_pairs.append((category, a, b))
        elif label == 1:
            missed[veto or "exact"] += 1
    hits = tp + fp
    return {
        "hits": hits, "tp": tp, "fp": fp,
        "precision": tp / hits if hits else None,
        "recall": tp / positives if positives else float("nan"),
        "wrong": dict(wrong), "wrong_pairs": wrong_pairs, "missed": dict(missed),
    }


def evaluate_index(pairs, semantic: Semantic | None) -> dict:
    """All distinct cached requests (A) in ONE index and context, then every B is looked up against all of them.

    Closer to a real cache, where the nearest entry may be another near-miss. A hit counts as right only when
    the served entry and B form a pair labelled 1; a hit on an entry never paired with B counts as wrong
    (conservative: some of those may be acceptable answers).
    """
    same = {(a, b) for _, label, a, b in pairs if label == 1}
    stored = sorted({a for _, _, a, _ in pairs})
    by_norm = {normalise_text(a): a for a in stored}
    queries = sorted({b for _, _, _, b in pairs})
    positives = {b for _, label, _, b in pairs if label == 1}
    runtime = store = None
    if semantic is not None:
        store = MemoryStore(len(stored) + 10)
        runtime = semantic.bind(store, "eval:")
        for i, a in enumerate(stored):
            store.put(f"eval:{i}", Entry(value=a, text=a, context="ctx"), None)
            runtime.add("ctx", a, f"eval:{i}", None)
    tp = fp = 0
    wrong_hits: list[tuple[str, str]] = []
    for b in queries:
        served = by_norm.get(normalise_text(b))
        if served is None and runtime is not None:
            entry = runtime.lookup("ctx", b, store.get).entry
            served = entry.value if entry is not None else None
        if served is None:
            continue
        if (served, b) in same or normalise_text(served) == normalise_text(b):
            tp += 1
        else:
            fp += 1
            wrong_hits.append((served, b))
    hits = tp + fp
    return {"hits": hits, "tp": tp, "fp": fp, "precision": tp / hits if hits else None,
            "recall": tp / len(positives) if positives else float("nan"),
            "wrong": {f"{a!r} served for {b!r}": 1 for a, b in wrong_hits} if len(wrong_hits) <= 3 else {},
            "wrong_pairs": [("index", a, b) for a, b in wrong_hits]}


def _fmt(precision: float | None) -> str:
    return "n/a (no hits)" if precision is None else f"{precision:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--embedders", default="minilm,ngram")
    parser.add_argument("--thresholds", default="0.70,0.75,0.80,0.85,0.90,0.93,0.95")
    parser.add_argument("--mode", choices=("pairs", "index"), default="pairs",
                        help="pairs: each pair alone; index: all cached requests in one index")
    parser.add_argument("--pairs", default=str(PAIRS), help="labelled pairs (default: the development set; "
                        "tests/fixtures/cache/pairs_heldout.tsv is the held-out set; hard_dev.tsv / "
                        "hard_heldout.tsv the harder sets of issue 19)")
    parser.add_argument("--guards", default="none,all", help="guard settings to run: none, all")
    parser.add_argument("--verifiers", default="none,lexical", help="verifiers to run: none, lexical")
    parser.add_argument("--list-wrong", action="store_true", help="print every wrong hit and why paraphrases missed")
    args = parser.parse_args()
    pairs_path = Path(args.pairs).resolve()
    pairs = load_pairs(pairs_path)
    labels = Counter(label for _, label, _, _ in pairs)
    print(f"pairs: {len(pairs)} ({labels[1]} same-answer, {labels[0]} near-miss) from {pairs_path.relative_to(ROOT)}")
    print()
    print("| embedder | threshold | guards | verifier | hits | wrong hits | precision | recall | wrong by category |")
    print("|---|---|---|---|---|---|---|---|---|")
    run = evaluate if args.mode == "pairs" else evaluate_index
    print(f"mode: {args.mode}\n")
    r = run(pairs, None)
    print(f"| exact tier (default) | - | - | - | {r['hits']} | {r['fp']} | {_fmt(r['precision'])} | {r['recall']:.3f} | "
          f"{r['wrong'] or '-'} |")
    thresholds = [float(t) for t in args.thresholds.split(",")]
    for name in args.embedders.split(","):
        if name == "minilm":
            from aicost.cache.minilm import MiniLMEmbedder

            inner = MiniLMEmbedder()
        else:
            inner = HashedNgramEmbedder()
        embedder = MemoEmbedder(inner)
        for threshold in thresholds:
            for guards_on in [g == "all" for g in args.guards.split(",")]:
                for verifier in [None if v == "none" else v for v in args.verifiers.split(",")]:
                    guards = Guards() if guards_on else Guards(**{f: False for f in Guards.__dataclass_fields__})
                    semantic = Semantic(embedder, threshold=threshold, guards=guards, verifier=verifier)
                    r = run(pairs, semantic)
                    print(f"| {name} | {threshold:.2f} | {'all' if guards_on else 'none'} | {verifier or 'none'} | "
                          f"{r['hits']} | {r['fp']} | {_fmt(r['precision'])} | {r['recall']:.3f} | "
                          f"{r['wrong'] or '-'} |", flush=True)
                    if args.list_wrong:
                        for category, a, b in r.get("wrong_pairs", []):
                            print(f"    wrong ({category}): {a!r} served for {b!r}")
                        if r.get("missed"):
                            print(f"    paraphrases missed, by veto: {r['missed']}")
        if embedder.count:
            print(f"\n{name}: embedded {embedder.count} distinct texts/words, "
                  f"{embedder.seconds / embedder.count * 1000:.2f} ms each on average\n")


if __name__ == "__main__":
    main()
