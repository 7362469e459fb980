"""Don't pay twice for the same question: ``@aicost.cache(...)``.

The exact tier (a hash of the normalised request) is the safe default. The semantic tier (``semantic=Semantic(...)``)
is opt-in: embedding similarity alone confuses paraphrases with near-misses, so candidates must also pass guards
(numbers, negations, entities, direction, tense) and a verifier. See docs/cache.md.

``aicost.cache`` is both this package and the decorator: importing the package makes the module itself
callable, so ``@aicost.cache(...)`` and ``aicost.cache.bypass()`` work whichever way the name was reached.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from .._lazy import lazy_names as _lazy_names
from .decorator import bypass
from .decorator import cache as _decorate
from .entry import Entry
from .stores import MemoryStore, Store

# Heavy or optional parts (numpy, redis, psycopg) load on first use.
_LAZY = {
    "Semantic": ".semantic",
    "HashedNgramEmbedder": ".embedders",
    "MiniLMEmbedder": ".minilm",
    "Guards": ".guards",
    "LLMJudge": ".verify",
    "LexicalVerifier": ".verify",
    "MemoryVectorIndex": ".index",
    "RedisStore": ".redis_store",
    "PgVectorStore": ".pgvector_store",
    "configure": ".telemetry",
}

__all__ = ["cache", "bypass", "Entry", "MemoryStore", "Store", *_LAZY]
__getattr__, __dir__ = _lazy_names(__name__, _LAZY)


class _CallableModule(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _decorate(*args, **kwargs)

    __call__.__doc__ = _decorate.__doc__


sys.modules[__name__].__class__ = _CallableModule
# ``aicost.cache`` (resolved through aicost._LAZY as this attribute) is the callable package itself, so the
# decorator and its helpers (``aicost.cache.bypass()``, ``aicost.cache.Semantic``) are one name.
cache = sys.modules[__name__]
