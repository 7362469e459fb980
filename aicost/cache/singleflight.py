"""Single flight: concurrent identical misses call the LLM once.

The first miss for a key becomes the leader and calls the function; later misses for the same key wait (bounded
by a timeout) for the leader to finish, then read the store. If the leader produced nothing cacheable (it raised,
or its stream was not fully consumed) followers call the function themselves: a follower never receives another
call's exception or a half-finished stream.

A follower never waits for itself. A stream is finished by whoever consumes it, which may be the very code that
is about to wait: a second identical call while the first call's stream is still open in the same thread, or
``asyncio.gather(f(q), f(q))`` whose streams are consumed only after both calls returned. So a sync follower in
the leader's own thread does not wait (there the leader has either returned an open stream or is further up
the same call stack), and an async follower on the leader's event loop stops waiting as soon as the leader's
result turns out to be a stream. Both then call the function themselves. Followers in other threads and event
loops still wait for the stream to be consumed, since their waiting cannot hold up its consumer.
"""

from __future__ import annotations

import asyncio
import threading

from .. import _fork


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class Flight:
    __slots__ = ("done", "_async_events", "thread", "loop", "streaming")

    def __init__(self) -> None:
        self.done = threading.Event()  # not from _fork: a forked child drops every flight (FlightGroup)
        self._async_events: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.thread = threading.get_ident()  # where the leader runs
        self.loop = _running_loop()
        self.streaming = False  # the leader returned a stream that is not consumed yet

    def wait(self, timeout: float) -> bool:
        """Wait for the leader to land; False at once when the leader is this thread (it cannot land meanwhile)."""
        if self.thread == threading.get_ident():
            return False
        return self.done.wait(timeout)

    async def wait_async(self, timeout: float) -> bool:
        """Wait for the leader to land; False when it did not, or when its open stream is ours to consume."""
        if self.done.is_set():
            return True
        loop = asyncio.get_running_loop()
        if self.streaming and self.loop is loop:
            return False
        event = asyncio.Event()
        self._async_events.append((loop, event))
        if self.done.is_set():  # finished while we registered
            return True
        if self.streaming and self.loop is loop:
            return False
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return self.done.is_set()

    def stream_opened(self) -> None:
        """The leader returned a stream: waiters on its own event loop must stop waiting for its consumption."""
        self.streaming = True
        for loop, event in list(self._async_events):
            if loop is self.loop:
                _set_soon(loop, event)

    def finish(self) -> None:
        self.done.set()
        for loop, event in list(self._async_events):
            _set_soon(loop, event)


def _set_soon(loop: asyncio.AbstractEventLoop, event: asyncio.Event) -> None:
    try:
        loop.call_soon_threadsafe(event.set)
    except RuntimeError:  # that loop is closed: nobody is waiting on it any more
        pass


class FlightGroup:
    def __init__(self) -> None:
        self._lock = _fork.lock()
        self._flights: dict[str, Flight] = {}
        _fork.reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """The leaders in flight at a fork run in the parent: a child's identical call must not wait for them."""
        self.__init__()  # type: ignore[misc]

    def join(self, key: str) -> tuple[Flight, bool]:
        """Return (flight, is_leader)."""
        with self._lock:
            flight = self._flights.get(key)
            if flight is not None:
                return flight, False
            flight = self._flights[key] = Flight()
            return flight, True

    def land(self, key: str, flight: Flight) -> None:
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        flight.finish()

    def __len__(self) -> int:
        return len(self._flights)
