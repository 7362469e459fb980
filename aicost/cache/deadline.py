"""Deadlines for blocking database calls: a call that overruns has its socket shut down.

A server that is paused, swapped out or behind a black-holed route still has a kernel that accepts the
connection and acknowledges the query, so neither TCP keepalives nor ``tcp_user_timeout`` ever fire, and a
server-side ``statement_timeout`` needs the server to run. The psycopg driver has no client-side timeout for a
query. What does end a blocked read is shutting the socket down: the read sees end-of-file at once and the
driver raises a connection error, which the store turns into a cache miss.

One daemon thread per process watches the deadlines of the calls in flight; it sleeps while none is pending. It
is started on first use, never while the interpreter shuts down. The watch and the release of a call take the
same lock as the shutdown, so a socket is only ever cut while the call that registered it is still blocked in
it, never after its connection went back to the pool.
"""

from __future__ import annotations

import itertools
import os
import socket
import sys
import threading
import time

from .. import _fork


class Watchdog:
    def __init__(self) -> None:
        self._cond = _fork.condition()
        self._pending: dict[int, tuple[float, int]] = {}  # token -> (deadline, socket fd)
        self._expired: set[int] = set()
        self._tokens = itertools.count()
        self._thread: threading.Thread | None = None
        _fork.reset_in_child(self)

    def _after_fork_in_child(self) -> None:
        """The calls watched at a fork run in the parent, on sockets the child shares: cut by the child's thread,
        they would break the parent's connections. The child watches its own calls only, with its own thread."""
        self._pending.clear()
        self._expired.clear()
        self._thread = None

    def watch(self, fd: int, timeout_s: float) -> int:
        """Start watching a call on socket ``fd``; pass the returned token to :meth:`release` when it returns."""
        with self._cond:
            if self._thread is None or not self._thread.is_alive():
                if sys.is_finalizing():  # a thread started now would hang interpreter exit
                    raise RuntimeError("interpreter shutting down: no deadline can be enforced")
                self._thread = threading.Thread(target=self._run, name="aicost-cache-deadlines", daemon=True)
                self._thread.start()
            token = next(self._tokens)
            deadline = time.monotonic() + timeout_s
            # The thread sleeps until the earliest pending deadline (for ever while none is): wake it only when
            # this one comes first.
            if all(deadline < pending for pending, _ in self._pending.values()):
                self._cond.notify()
            self._pending[token] = (deadline, fd)
            return token

    def release(self, token: int) -> bool:
        """Stop watching; True when the call overran and its socket was shut down."""
        with self._cond:
            self._pending.pop(token, None)
            if token in self._expired:
                self._expired.discard(token)
                return True
            return False

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (deadline, fd) in list(self._pending.items()):
                    if deadline <= now:
                        del self._pending[token]
                        self._expired.add(token)
                        _shut_down(fd)
                wait = min((d for d, _ in self._pending.values()), default=None)
                self._cond.wait(None if wait is None else max(0.0, wait - now) + 0.001)


def _shut_down(fd: int) -> None:
    """Shut down (not close: the driver still owns the descriptor) the socket behind ``fd``."""
    try:
        sock = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.close()


WATCHDOG = Watchdog()
