"""Single flight: concurrent identical misses call the LLM once.

The first miss for a key becomes the leader and calls the function; later misses for the same key wait (bounded
by a timeout) for the leader to finish, then read the store. If the leader produced nothing cacheable (it raised,
or its stream was not fully consumed) followers call the function themselves: a follower never receives another
call's exception or a half-finished stream.
"""

from __future__ import annotations

import asyncio
import threading


class Flight:
    __slots__ = ("done", "_async_events")

    def __init__(self) -> None:
        self.done = threading.Event()
        self._async_events: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)

    async def wait_async(self, timeout: float) -> bool:
        if self.done.is_set():
            return True
        loop = asyncio.get_running_loop()
        event = asyncio.Event()
        self._async_events.append((loop, event))
        if self.done.is_set():  # finished while we registered
            return True
        try:
            await asyncio.wait_for(event.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    def finish(self) -> None:
        self.done.set()
        for loop, event in self._async_events:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: nobody is waiting on it any more
                pass


class FlightGroup:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[str, Flight] = {}

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
