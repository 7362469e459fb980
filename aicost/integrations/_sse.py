"""Server-sent events parsed from bytes as they pass by, in bounded memory.

For a stream whose body the caller reads itself (``with_streaming_response`` read with ``iter_lines()`` to proxy
the events on, see ``stainless.EventBodyReader``): the chunks are whatever the HTTP client hands over, so an event,
a line, even a CRLF pair may be split anywhere. Parsed as the WHATWG event-stream rules say (and as the SDKs'
own decoders do): lines end with CR, LF or CRLF; ``event:`` names the event; ``data:`` lines are joined with LF;
a blank line dispatches the event; comments (``:``) and other fields are ignored; an event not ended by a blank
line when the body ends is not dispatched.

Only the event being parsed is kept. An event larger than ``limit`` bytes is let go whole (and counted), and
parsing resumes at the next event: memory stays bounded whatever the vendor sends.
"""

from __future__ import annotations

import re

_LINE_END = re.compile(rb"\r\n|\r|\n")


class EventParser:
    """Feed it chunks; each ``feed`` returns the events the chunk completed, as ``(name, data)``: ``name`` is None
    if the event named none, ``data`` the joined ``data:`` lines, as bytes. ``oversized`` counts the events let go.
    (It returns events rather than calling back, so that it holds no reference to its reader.)"""

    __slots__ = ("limit", "oversized", "partial", "pending", "skip_lf", "name", "data", "size", "dropping", "out")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.oversized = 0
        self.partial = bytearray()  # the start of a line whose end has not arrived yet
        self.pending = False  # a line began in an earlier chunk (kept in ``partial``, unless its event is dropped)
        self.skip_lf = False  # the last chunk ended with CR: a LF starting the next one is the same line end
        self.name: str | None = None
        self.data: list[bytes] = []
        self.size = 0  # bytes kept for the current event
        self.dropping = False  # the current event is over the limit: its lines are passed over up to its end
        self.out: list[tuple[str | None, bytes]] = []

    def feed(self, chunk: bytes) -> list[tuple[str | None, bytes]]:
        self.out = []
        start = 0
        if self.skip_lf:
            self.skip_lf = False
            if chunk[:1] == b"\n":
                start = 1
        for match in _LINE_END.finditer(chunk, start):
            end = match.start()
            if self.pending:  # the end of a line begun earlier: never a blank line
                self.pending = False
                if self.dropping:
                    start = match.end()
                    continue
                self.partial += chunk[start:end]
                line = bytes(self.partial)
                self.partial.clear()
            else:
                line = chunk[start:end]
            start = match.end()
            self._line(line)
        self.skip_lf = chunk[-1:] == b"\r"
        if start < len(chunk):
            self.pending = True
            if not self.dropping:
                self.partial += chunk[start:]
                if self.size + len(self.partial) > self.limit:
                    self._drop()
        return self.out

    def _line(self, line: bytes) -> None:
        if not line:
            self._dispatch()
            return
        if self.dropping or line[:1] == b":":
            return
        field, _, value = line.partition(b":")
        if value[:1] == b" ":
            value = value[1:]
        if field == b"data":
            self.size += len(value) + 1
            if self.size > self.limit:
                self._drop()
            else:
                self.data.append(value)
        elif field == b"event":
            self.name = value.decode("utf-8", "replace") or None

    def _dispatch(self) -> None:
        if self.dropping:
            self.dropping = False  # the dropped event ends here; the next one is parsed
        elif self.data or self.name is not None:
            self.out.append((self.name, b"\n".join(self.data)))
        self.name, self.data, self.size = None, [], 0

    def _drop(self) -> None:
        self.dropping = True
        self.oversized += 1
        self.name, self.data, self.size = None, [], 0
        self.partial.clear()
