"""What one call consumed, in one vendor-neutral shape.

Vendors disagree on what their counters include (OpenAI's ``prompt_tokens`` includes cached tokens, Anthropic's
``input_tokens`` excludes cache reads and writes). Double-counted or missed cache tokens are the most common
cost bug in peer tools, so every integration converts to this one shape, whose rule is simple and fixed:

* ``input_tokens`` counts **every** input token (the OpenTelemetry meaning of ``gen_ai.usage.input_tokens``);
  ``cache_read_tokens``, ``cache_write_tokens``, ``input_audio_tokens`` and ``input_image_tokens`` are
  *subsets* of it.
* ``output_tokens`` counts **every** output token; ``reasoning_tokens``, ``output_audio_tokens`` and
  ``output_image_tokens`` are *subsets* of it.
* ``cache_read_image_tokens`` and ``cache_read_audio_tokens`` are the subsets of ``cache_read_tokens`` that are
  image / audio tokens (OpenAI's image and realtime models bill them at their own cached rates); they are not
  also counted in ``input_image_tokens`` / ``input_audio_tokens``.
* ``input_characters`` is not a token count: text-to-speech models that bill per input character (``tts-1``)
  report no tokens, and this is the length of the text they were given.
* ``cache_write_1h_tokens`` is the subset of ``cache_write_tokens`` written with a one-hour TTL (Anthropic
  bills it at a higher rate than the default five-minute writes).

The pricing engine derives the plain text buckets by subtraction, so a token is priced exactly once.
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(slots=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0
    reasoning_tokens: int = 0
    input_audio_tokens: int = 0
    output_audio_tokens: int = 0
    input_image_tokens: int = 0
    output_image_tokens: int = 0
    cache_read_image_tokens: int = 0
    cache_read_audio_tokens: int = 0
    input_characters: int = 0
    web_search_requests: int = 0
    # True when any count was computed locally because the vendor reported none (e.g. a chat stream without
    # ``stream_options.include_usage``). Spans say so; cost from estimated counts is an estimate too.
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    @property
    def counts_tokens(self) -> bool:
        """False for a call billed by characters alone: it has no token counts to report (not zero tokens)."""
        return bool(self.input_tokens or self.output_tokens or not self.input_characters)

    @property
    def text_input_tokens(self) -> int:
        """Input tokens billed at the plain input rate: neither cached, cache-written, audio nor image."""
        return max(
            0,
            self.input_tokens
            - self.cache_read_tokens
            - self.cache_write_tokens
            - self.input_audio_tokens
            - self.input_image_tokens,
        )

    @property
    def text_output_tokens(self) -> int:
        """Output tokens billed at the plain output rate (reasoning included: vendors bill it as output)."""
        return max(0, self.output_tokens - self.output_audio_tokens - self.output_image_tokens)

    def __add__(self, other: "Usage") -> "Usage":
        if not isinstance(other, Usage):
            return NotImplemented
        values = {
            f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self) if f.name != "estimated"
        }
        return Usage(**values, estimated=self.estimated or other.estimated)

    def validate(self) -> None:
        """Raise ValueError if the subset rules are broken (a reader bug, or a vendor shape we misread)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "estimated" and (not isinstance(value, int) or value < 0):
                raise ValueError(f"Usage.{f.name} must be a non-negative int, got {value!r}")
        if self.cache_read_image_tokens + self.cache_read_audio_tokens > self.cache_read_tokens:
            raise ValueError("cache_read_image_tokens + cache_read_audio_tokens exceeds cache_read_tokens")
        if self.cache_write_1h_tokens > self.cache_write_tokens:
            raise ValueError("cache_write_1h_tokens exceeds cache_write_tokens")
        if self.reasoning_tokens > self.output_tokens:
            raise ValueError("reasoning_tokens exceeds output_tokens")


def as_int(value: object) -> int:
    """Vendor usage fields are Optional everywhere (SDK models are built without validation): None -> 0."""
    if type(value) is int:  # the common case first: this runs for every usage field of every call
        return value if value > 0 else 0
    if value is None or isinstance(value, bool):
        return 0
    try:
        return max(0, int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0
