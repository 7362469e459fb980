"""What a cache entry holds: the answer and what producing it cost (so a hit can report what it saved)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

VALUE = "value"
STREAM = "stream"  # ``value`` is the list of chunks of a fully consumed stream
ASYNC_STREAM = "async_stream"  # the same, replayed as an async iterator


@dataclass(slots=True)
class Entry:
    value: Any
    kind: str = VALUE
    # Exact cost of the LLM calls made to produce the answer (None when no priced call was observed).
    cost_usd: Decimal | None = None
    calls: int = 0
    created_at: float = field(default_factory=time.time)
    # Semantic tier only: the user's variable text as asked (kept in the app's own store, never in telemetry),
    # the context hash it was asked in, and its embedding.
    text: str | None = None
    context: str | None = None
    # The function is a plain ``def`` that returned an awaitable: a hit returns an awaitable of the value too.
    awaitable: bool = False
