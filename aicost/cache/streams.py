"""Streams: pass chunks through untouched, cache them only when the stream was consumed to the end.

A stream closed early, or one that raised, produced a partial answer: caching it would serve a truncated reply
to the next caller. The recording wrapper forwards every chunk as it arrives (nothing is buffered ahead of the
application), keeps a deep copy of each as it passes (the application may edit a chunk in place before the
stream ends; what is stored must be what the vendor sent), and calls ``on_complete(chunks)`` only on exhaustion;
on close, error or garbage collection it calls ``on_abandon()``. Each step runs inside the cache's call collector, so the vendor calls a
generator makes lazily are still counted towards the entry's cost.

A hit replays the stored chunks through :class:`ReplayStream` / :class:`AsyncReplayStream`: iterable, closable
and usable as a context manager like the SDK streams (it is not the SDK's ``Stream`` class); each hit gets its
own copies of the chunks.
"""

from __future__ import annotations

import copy
from typing import Any, AsyncIterator, Callable, Iterator

from .. import _gc
from ..hooks import CallCollector, collect_calls


def snapshot(value: Any) -> Any:
    """A deep copy, so that a caller editing what it got cannot change the cache; the value itself if it cannot
    be copied (an object holding a lock or a socket: storing it by reference beats not caching it)."""
    try:
        return copy.deepcopy(value)
    except Exception:
        return value


class _Finisher:
    __slots__ = ("_on_complete", "_on_abandon", "_done", "chunks")

    def __init__(self, on_complete: Callable[[list], None], on_abandon: Callable[[], None]) -> None:
        self._on_complete = on_complete
        self._on_abandon = on_abandon
        self._done = False
        self.chunks: list = []

    def complete(self) -> None:
        if not self._done:
            self._done = True
            self._on_complete(self.chunks)

    def abandon(self) -> None:
        if not self._done:
            self._done = True
            self._on_abandon()


class _Recording:
    """What the sync and async recording streams share: the SDK stream inside, and its end."""

    def __init__(self, inner: Any, collector: CallCollector, finisher: _Finisher) -> None:
        self._inner = inner
        self._collector = collector
        self._finisher = finisher

    def __del__(self) -> None:
        try:
            if _gc.collecting():  # not inside the collector: landing the flight takes the cache's locks
                _gc.defer(self._finisher.abandon)
            else:
                self._finisher.abandon()
        except Exception:
            pass

    def __getattr__(self, name: str) -> Any:  # e.g. Stream.response: keep the SDK object's surface
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)


class RecordingStream(_Recording):
    _inner: Iterator

    def __iter__(self) -> "RecordingStream":
        return self

    def __next__(self) -> Any:
        try:
            with collect_calls(self._collector):
                chunk = next(self._inner)
        except StopIteration:
            self._finisher.complete()
            raise
        except BaseException:
            self._finisher.abandon()
            raise
        self._finisher.chunks.append(snapshot(chunk))
        return chunk

    def close(self) -> None:
        self._finisher.abandon()
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "RecordingStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncRecordingStream(_Recording):
    _inner: AsyncIterator

    def __aiter__(self) -> "AsyncRecordingStream":
        return self

    async def __anext__(self) -> Any:
        try:
            with collect_calls(self._collector):
                chunk = await self._inner.__anext__()
        except StopAsyncIteration:
            self._finisher.complete()
            raise
        except BaseException:
            self._finisher.abandon()
            raise
        self._finisher.chunks.append(snapshot(chunk))
        return chunk

    async def aclose(self) -> None:
        self._finisher.abandon()
        for name in ("aclose", "close"):
            closer = getattr(self._inner, name, None)
            if closer is not None:
                result = closer()
                if hasattr(result, "__await__"):
                    await result
                return

    async def close(self) -> None:
        await self.aclose()

    async def __aenter__(self) -> "AsyncRecordingStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ReplayStream:
    """A cached stream: yields the stored chunks in order."""

    def __init__(self, chunks: list) -> None:
        self._it = iter(chunks)

    def __iter__(self) -> "ReplayStream":
        return self

    def __next__(self) -> Any:
        return next(self._it)

    def close(self) -> None:
        self._it = iter(())

    def __enter__(self) -> "ReplayStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncReplayStream:
    def __init__(self, chunks: list) -> None:
        self._it = iter(chunks)

    def __aiter__(self) -> "AsyncReplayStream":
        return self

    async def __anext__(self) -> Any:
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None

    async def aclose(self) -> None:
        self._it = iter(())

    async def close(self) -> None:
        await self.aclose()

    async def __aenter__(self) -> "AsyncReplayStream":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def make_finisher(on_complete: Callable[[list], None], on_abandon: Callable[[], None]) -> _Finisher:
    return _Finisher(on_complete, on_abandon)
