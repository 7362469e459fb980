"""aicost's own HTTP requests (reconcile's admin reports, alert webhooks): urllib, following no redirect."""

from __future__ import annotations

import socket
import threading
import urllib.request
from contextlib import contextmanager
from typing import Any, Iterator

__all__ = ["open_url", "open_url_within"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx stays an HTTPError naming its status. Followed, urllib would send the request's headers (an admin
    key) on to the address it names, and answer a POST's 301/302/303 with a GET without the body (a webhook that
    never got the alert, counted as delivered)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def open_url(request: urllib.request.Request, timeout: float) -> Any:
    """``urlopen(request)`` following no redirect. The opener is made per request: it reads the environment's
    proxy settings as they are then."""
    return urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout)


class _AnyStatus(urllib.request.HTTPErrorProcessor):
    """Every response is the caller's, whatever its status: no :class:`HTTPError` (whose body the caller would read
    after the exchange's deadline), no redirect followed (the 3xx is the answer)."""

    def http_response(self, request: Any, response: Any) -> Any:
        return response

    https_response = http_response


class _Cutoff:
    """Shuts the sockets of one exchange down when its time is up. A socket timeout bounds each read, not the
    exchange: a server (or a proxy) sending a byte now and then holds a request for ever. Shut down, the socket's
    blocked read returns at once and urllib / http.client raise.

    It holds a duplicate of each socket (a descriptor of its own on the same connection), not the socket http.client
    made: over HTTPS, ssl's ``wrap_socket`` detaches that one and reads through a new socket object, so a shutdown
    of the original found no descriptor and the trickling answer went on. A shutdown of the duplicate ends the
    connection whichever object reads it; the duplicates are closed by :meth:`cancel`, so none is ever shut down
    after its descriptor number could have been reused."""

    def __init__(self, seconds: float) -> None:
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.fired = False
        self._done = False
        self._timed_out: bool | None = None  # decided once, by decide()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def hold(self, sock: socket.socket) -> socket.socket:
        """Called by http.client as it connects, inside ``opener.open()`` on the thread of :func:`open_url_within`:
        always before :meth:`decide` and :meth:`cancel`, which that thread calls once ``open()`` has returned or
        raised, so no duplicate is taken after they closed the others."""
        try:
            held = sock.dup()
        except OSError:  # out of descriptors: the connection fails as it would have
            sock.close()
            raise
        with self._lock:
            self._sockets.append(held)
            if self.fired:  # connected after the deadline
                self._shut(held)
        return sock

    def _fire(self) -> None:
        with self._lock:  # under the lock: cancel() cannot close a duplicate while it is being shut down
            if self._done:
                return
            self.fired = True
            for sock in self._sockets:
                self._shut(sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # a plain socket: on TLS, the TCP connection under it
        except OSError:  # the connection is gone already
            pass

    def decide(self, response: Any = None) -> bool:
        """Whether the exchange timed out, decided once: the first call decides, and disarms the cutoff in the same
        step (under the lock its firing takes), so the exchange is an answer or a timeout, never first one and
        then the other. Timed out if the cutoff fired, unless ``response`` was read whole (:func:`_read_whole`):
        that read completed before the cutoff took the socket, whatever the cutoff did after it."""
        with self._lock:
            if self._timed_out is None:
                self._done = True
                self._timed_out = self.fired and not _read_whole(response)
            return self._timed_out

    def cancel(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()

    def watch(self, http_class: type) -> type:
        """``http_class`` (http.client's HTTP(S)Connection) handing each TCP connection it makes to :meth:`hold`
        as soon as it is made: before a proxy tunnel or a TLS handshake, which could trickle too."""
        cutoff = self

        class Watched(http_class):  # type: ignore[misc, valid-type]
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                create = self._create_connection  # socket.create_connection, the one way http.client connects
                self._create_connection = lambda *a, **k: cutoff.hold(create(*a, **k))

        return Watched


def _read_whole(response: Any) -> bool:
    """Whether http.client read ``response``'s body to the end its framing gives: its Content-Length (or a body
    known empty: a 204, 304, HEAD) or a chunked body's last chunk. A shutdown of the socket cannot fake that end (a
    framed body cut short raises IncompleteRead); it does fake the end of a body that ends with the connection (no
    length): such a body, read by a cutoff that fired, is never whole here."""
    if response is None or not response.isclosed():
        return False
    if getattr(response, "chunked", False):
        return getattr(response, "chunk_left", 0) is None
    return getattr(response, "length", None) == 0


class _Watching:
    """A urllib handler whose connections are held by a :class:`_Cutoff` (mixed into HTTP and HTTPS handlers)."""

    def __init__(self, cutoff: _Cutoff) -> None:
        super().__init__()
        self._cutoff = cutoff

    def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
        return super().do_open(self._cutoff.watch(http_class), req, **kwargs)  # type: ignore[misc]


class _WatchedHTTP(_Watching, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPS(_Watching, urllib.request.HTTPSHandler):
    pass


@contextmanager
def open_url_within(request: urllib.request.Request, seconds: float, *, any_status: bool = False) -> Iterator[Any]:
    """:func:`open_url`, the whole exchange (connecting, sending, the answer's status, headers and whatever the
    block reads of its body) over within ``seconds``: past them, a :class:`TimeoutError`, whatever the server
    does, and whatever was read by then (an answer cut short can look whole), unless the block had read the answer
    whole by the end its framing gives (its Content-Length, a chunked body's last chunk) before the block ended:
    then the answer (or the block's own exception) stands. Decided once, as the block ends: a deadline passing
    after it changes nothing. For a request that must not hold its caller (an alert's delivery, a page of a
    report), not for a download of any size.

    ``any_status``: an answer of any status is yielded (``response.status``), never raised as an
    :class:`~urllib.error.HTTPError`: read in the block, an error's body is inside the deadline too (read from an
    HTTPError after it, it is not). No redirect is followed either way."""
    cutoff = _Cutoff(seconds)
    handlers: list[Any] = [_NoRedirect, _WatchedHTTP(cutoff), _WatchedHTTPS(cutoff)]
    if any_status:
        handlers.append(_AnyStatus)
    opener = urllib.request.build_opener(*handlers)
    timed_out = f"no complete answer within {seconds:g} s"
    try:
        with opener.open(request, timeout=seconds) as response:
            try:
                yield response
            finally:  # decided as the block ends, before the answer is closed: whether the block read it whole
                cutoff.decide(response)
    except Exception:
        if cutoff.decide():  # the first decision stands (the block's); else decided now, with the error
            raise TimeoutError(timed_out) from None
        raise
    finally:
        cutoff.cancel()
    # Cut short, a status line and a truncated rest can read as a whole (empty) answer. Decided as the block ended:
    # the cutoff firing since changes nothing.
    if cutoff.decide():
        raise TimeoutError(timed_out)
