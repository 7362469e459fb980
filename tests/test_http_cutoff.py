"""The whole-exchange deadline of aicost's own HTTP requests (``aicost._http.open_url_within``) against real servers
on 127.0.0.1, the deadline's firing driven by the test (no race with a timer): an exchange is a timeout or an
answer, decided once."""

from __future__ import annotations

import http.client
import threading
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest

from aicost import _http
from aicost.reports import alerts as AL
from servers import trickling_server

LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"


@pytest.fixture
def fire_as_a_read_returns(monkeypatch) -> list:
    """The deadline passes the moment each read of an answer's body returns: the cutoff (the latest made) fires
    then, from the test's own thread, before the block that read goes on. Yields the cutoffs made (the timers are
    set for minutes: they never fire by themselves within the test)."""
    cutoffs = []

    class Recorded(_http._Cutoff):
        def __init__(self, seconds: float) -> None:
            super().__init__(seconds)
            cutoffs.append(self)

    read = http.client.HTTPResponse.read

    def read_then_fire(self, *args, **kwargs):
        try:
            return read(self, *args, **kwargs)
        finally:
            if cutoffs:
                cutoffs[-1]._fire()

    monkeypatch.setattr(_http, "_Cutoff", Recorded)
    monkeypatch.setattr(http.client.HTTPResponse, "read", read_then_fire)
    return cutoffs


@pytest.mark.parametrize("answer", [LENGTH, CHUNKED], ids=["content-length", "chunked"])
def test_an_answer_read_whole_before_the_deadline_fired_is_the_answer(answer, fire_as_a_read_returns):
    """The block read the whole answer (to its Content-Length, or a chunked body's last chunk), then the deadline
    passed before the block ended: it was a TimeoutError, the answer thrown away (a webhook that had the alert
    counted as a failed delivery, and sent it again). An answer read whole before the cutoff took the socket is
    the answer: a shutdown cannot make a framed body look whole. The server goes on sending after it."""
    with trickling_server(answer) as (base, connections):
        with _http.open_url_within(urllib.request.Request(f"{base}/hook", data=b"{}", method="POST"), 300) as r:
            body = r.read()
            assert fire_as_a_read_returns[-1].fired  # the deadline has passed, the socket is shut down
        assert body == b"ok" and r.status == 200 and len(connections) == 1


@contextmanager
def close_delimited_server() -> Iterator[str]:
    """An HTTP/1.0 server on 127.0.0.1 answering each POST with a body ended by closing the connection (no
    Content-Length): an end that a shutdown by the deadline looks exactly like."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_an_answer_ended_by_the_connection_s_close_is_a_timeout_once_the_deadline_fired(fire_as_a_read_returns):
    """Without a length, an answer ends when the connection does, and the deadline's shutdown ends it too: what
    was read cannot be told from an answer cut short, so it stays a timeout."""
    with close_delimited_server() as url, pytest.raises(TimeoutError, match="no complete answer within 300 s"):
        with _http.open_url_within(urllib.request.Request(url, data=b"{}", method="POST"), 300) as r:
            r.read()


def test_a_webhook_that_answered_as_its_timeout_fired_has_the_alert_once(tmp_path, fire_as_a_read_returns):
    """The webhook answered 200 and the delivery read it; the timeout fired before the delivery ended: counted as
    a failed delivery, its claim released, and the next run (or the in-app retry) sent the webhook the alert a
    second time. Delivered, once."""
    state = str(tmp_path / "sent.db")
    with trickling_server(LENGTH) as (base, connections):
        url = f"{base}/hooks/T000/B000/secret"
        alerter = AL.Alerter(AL.WebhookSink(url, timeout_s=300), state=state)
        alert = AL.Alert(AL.ANOMALY, "anomaly:team:search:2026-11-26", "spike", "text")
        assert alerter.send(alert) == [alert]
        assert alerter.stats.sent == 1 and alerter.stats.failed == 0
        again = AL.Alerter(AL.WebhookSink(url, timeout_s=300), state=state)  # the next cron run
        assert again.send(alert) == [] and again.stats.suppressed == 1
    assert len(connections) == 1
