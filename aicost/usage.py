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
    # Hosted tools the vendor ran for the call and bills per call or per session beyond its tokens, at rates aicost
    # does not list or counts the response does not give (OpenAI Responses ``file_search``, ``code_interpreter``;
    # Anthropic ``code_execution``; Gemini grounding ``google_search``, ``google_maps``, ``vertex_ai_search``): their
    # names. OpenAI's and Anthropic's web search is counted in ``web_search_requests`` and priced. The price of a
    # call that ran one is unknown, naming them (``ModelPrice.cost``): its tokens alone would look exact and be low.
    # The readers say which ran in ``ResponseMeta.hosted_tools`` (a response may carry none of its usage); the core
    # puts them here, on the usage it prices, the vendor's or its estimate.
    hosted_tools: tuple[str, ...] = ()
    # True when any count was computed locally because the vendor reported none (e.g. a chat stream without
    # ``stream_options.include_usage``). Spans say so; cost from estimated counts is an estimate too.
    estimated: bool = False
    # Why the vendor's usage failed validation (``aicost.usage.invalid_reason``): a count missing, not a whole
    # number, negative or above 2**53, a subset larger than its total, usage that is not an object. Such usage is
    # never priced as exact: the core estimates the call from what arrived, or marks its cost unknown.
    invalid: str | None = None

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
        """The two together, with their verdict: invalid if either is, or if a total is above ``MAX_COUNT``. Each
        subset adds up with its total, so that is the one rule a sum of two checked usages can break: the sum is
        checked too (an integration adds up a call's parts, and the core prices by ``invalid``)."""
        if not isinstance(other, Usage):
            return NotImplemented
        values = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self) if f.name in _COUNTS}
        invalid = self.invalid or other.invalid
        if invalid is None and (values["input_tokens"] > MAX_COUNT or values["output_tokens"] > MAX_COUNT):
            invalid = _ABOVE_MAX
        tools = self.hosted_tools + tuple(t for t in other.hosted_tools if t not in self.hosted_tools)
        return Usage(**values, hosted_tools=tools, estimated=self.estimated or other.estimated, invalid=invalid)

    def subset_problem(self) -> str | None:
        """Which subset is larger than its total, if one is (see the module docstring for the subsets)."""
        whole_in, whole_out = self.input_tokens, self.output_tokens
        for name, part, whole in (
            ("cache_read_tokens", self.cache_read_tokens, whole_in),
            ("cache_write_tokens", self.cache_write_tokens, whole_in),
            ("input_audio_tokens", self.input_audio_tokens, whole_in),
            ("input_image_tokens", self.input_image_tokens, whole_in),
            ("reasoning_tokens", self.reasoning_tokens, whole_out),
            ("output_audio_tokens", self.output_audio_tokens, whole_out),
            ("output_image_tokens", self.output_image_tokens, whole_out),
            ("cache_write_1h_tokens", self.cache_write_1h_tokens, self.cache_write_tokens),
            ("cache_read_image_tokens + cache_read_audio_tokens",
             self.cache_read_image_tokens + self.cache_read_audio_tokens, self.cache_read_tokens),
        ):
            if part > whole:
                return f"{name} exceeds its total"
        return None

    def problem(self) -> str | None:
        """Why this usage cannot be priced as exact, or None: its ``invalid`` reason, ``input_tokens`` or
        ``output_tokens`` above ``MAX_COUNT``, a negative count, or a subset larger than its total. Changes nothing
        (``aicost.price_call`` asks it of a caller's usage). Plain comparisons first, since every call runs them;
        which subset it is, only when one fails."""
        if self.invalid is not None:
            return self.invalid
        i, o = self.input_tokens, self.output_tokens
        if i > MAX_COUNT or o > MAX_COUNT:
            return _ABOVE_MAX
        read, write, write_1h = self.cache_read_tokens, self.cache_write_tokens, self.cache_write_1h_tokens
        read_image, read_audio = self.cache_read_image_tokens, self.cache_read_audio_tokens
        audio_in, image_in = self.input_audio_tokens, self.input_image_tokens
        reasoning, audio_out, image_out = self.reasoning_tokens, self.output_audio_tokens, self.output_image_tokens
        # Every subset at most its total, and no count below 0 (the OR of ints is negative if and only if one is).
        if (read > i or write > i or audio_in > i or image_in > i or reasoning > o or audio_out > o or image_out > o
                or write_1h > write or read_image + read_audio > read
                or (i | o | read | write | write_1h | read_image | read_audio | audio_in | image_in | reasoning
                    | audio_out | image_out | self.input_characters | self.web_search_requests) < 0):
            if min(i, o, read, write, write_1h, read_image, read_audio, audio_in, image_in, reasoning, audio_out,
                   image_out, self.input_characters, self.web_search_requests) < 0:
                return "a count is negative"
            return self.subset_problem()
        return None

    def checked(self) -> "Usage":
        """This usage, with ``invalid`` set to its :meth:`problem`, if it has one (readers call it last, on every
        call). Its ``invalid`` is then the verdict the core prices by (``pricing.price_checked``), without checking
        again: a change made after it is checked again by no one, so it is the last thing a reader does."""
        if self.invalid is None:
            self.invalid = self.problem()
        return self

    def validate(self) -> None:
        """Raise ValueError if a count is not a count or the subset rules are broken."""
        for name in _COUNTS:
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= MAX_COUNT:
                raise ValueError(f"Usage.{name} must be an int from 0 to 2**53, got {value!r}")
        problem = self.subset_problem()
        if problem is not None:
            raise ValueError(problem)


_COUNTS = tuple(f.name for f in fields(Usage) if f.name not in ("hosted_tools", "estimated", "invalid"))

# The largest count aicost accepts from a vendor. Past 2**53 a JSON number no longer holds every integer (1e308
# parses, as a float), and no call consumes that many tokens: such a count is garbage, not usage. It also keeps
# every sum aicost writes (span attributes, metric points) far inside the int64 that OTLP encodes.
MAX_COUNT = 2**53
_ABOVE_MAX = "input_tokens or output_tokens is above 2**53"


def read_count(usage: Usage, value: object, name: str, required: bool = False) -> int:
    """A vendor's count, checked: a whole number from 0 to ``MAX_COUNT`` (an integral float too: JSON has one
    number type). Anything else (missing when ``required``, null, a string, a bool, a negative, a fraction, an
    absurd size) is read as 0 and recorded in ``usage.invalid``, the first problem found."""
    if type(value) is int and 0 <= value <= MAX_COUNT:  # the common case first: every count of every call
        return value
    if value is None:
        if required and usage.invalid is None:
            usage.invalid = f"{name} is missing"
        return 0
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= MAX_COUNT \
            and value == int(value):
        return int(value)
    if usage.invalid is None:
        usage.invalid = f"{name} is {_not_a_count(value)}"
    return 0


def _not_a_count(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"not a number ({type(value).__name__})"
    if value != value:
        return "not a number (NaN)"
    if value < 0:
        return "negative"
    if value > MAX_COUNT:
        return "above 2**53"
    return "not a whole number"


_NOT_OBJECTS = (int, float, str, bytes, list, tuple)
# type -> is_object's answer for its instances. A failed ``isinstance`` reads the instance's ``__class__``, which on
# an SDK's pydantic model goes through its ``__getattr__`` hook (~2 k instructions for the six types, several times
# a call); the answer depends only on the type unless the type overrides ``__class__`` (a mock, a proxy), whose
# instances are always asked. Bounded: past the limit, new types are asked without being remembered.
_OBJECT_TYPES: dict[type, bool] = {}
_MAX_OBJECT_TYPES = 512


def is_object(value: object) -> bool:
    """Whether a vendor's ``usage`` (or its details) is an object with fields, not a scalar or a list."""
    known = _OBJECT_TYPES.get(type(value))
    if known is not None:
        return known
    answer = not isinstance(value, _NOT_OBJECTS)
    kind = type(value)
    if len(_OBJECT_TYPES) < _MAX_OBJECT_TYPES and all("__class__" not in vars(k) for k in kind.__mro__[:-1]):
        _OBJECT_TYPES[kind] = answer
    return answer



def as_int(value: object) -> int:
    """Lenient: None, garbage and negatives -> 0. Not for a vendor's usage counts: those go through
    :func:`read_count`, which says when usage is invalid instead of reading garbage as an exact 0."""
    if type(value) is int:  # the common case first: this runs for every usage field of every call
        return value if value > 0 else 0
    if value is None or isinstance(value, bool):
        return 0
    try:
        return max(0, int(value))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0
