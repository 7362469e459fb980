"""Alerts to a callback and to a Slack-compatible webhook (a real HTTP receiver on 127.0.0.1), deduplicated."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from datetime import datetime, timezone
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterator

import pytest

from aicost.budget import Budget
from aicost.budget.guard import BudgetEvent
from aicost.cli import main
from aicost.errors import ConfigurationError, ConfigurationTypeError
from aicost.reports import alerts as AL
from reports_helpers import SPIKE_DAY, SPIKE_TEAM, unpriced_rows, write_ledger
from servers import loopback_server


class Receiver:
    def __init__(self) -> None:
        self.bodies: list[dict] = []
        self.status = 200
        self.location: str | None = None  # answer POSTs with self.status and this Location (a redirect)
        self.answered: list[int] = []  # the status each POST was answered with
        self.gets = 0
        self.lock = threading.Lock()


@contextmanager
def receiver(tls: Any = None, port: int = 0) -> Iterator[tuple[str, Receiver]]:
    """A webhook endpoint on 127.0.0.1 that records each JSON body it is POSTed; over HTTPS with ``tls`` (a server
    SSLContext); on ``port`` if given (a webhook coming back where it was down)."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                state.bodies.append(json.loads(body))
                status = state.status
                state.answered.append(status)
            self.send_response(status)
            if state.location:
                self.send_header("Location", state.location)
            self.end_headers()
            self.wfile.write(b"ok")

        def do_GET(self):  # noqa: N802 - where a redirected POST would land, bodiless
            with state.lock:
                state.gets += 1
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    with loopback_server(Handler, port=port, tls=tls) as server:
        scheme = "https" if tls is not None else "http"
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/secret", state


def dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"  # nothing listens there now


ALERT = AL.Alert(AL.ANOMALY, "anomaly:team:search:2026-11-26", "Spend spike: team search",
                 "$30.51 on 2026-11-26 against a baseline of $0.42 (72x).", (("team", "search"), ("ratio", "72x")))


def _ran(code: str) -> subprocess.CompletedProcess:
    """``code`` run by a fresh interpreter (its exit is what these tests watch), its output captured as text."""
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ), capture_output=True, text=True,
                          timeout=120)


def test_webhook_gets_a_slack_compatible_body_once(tmp_path):
    with receiver() as (url, got):
        alerter = AL.Alerter(AL.WebhookSink(url), state=str(tmp_path / "sent.db"))
        assert alerter.send([ALERT, ALERT]) == [ALERT]
        # A second alerter (a later cron run, another process) shares the state file: still once.
        again = AL.Alerter(AL.WebhookSink(url), state=str(tmp_path / "sent.db"))
        assert again.send(ALERT) == []
        assert again.stats.suppressed == 1
    assert len(got.bodies) == 1
    body = got.bodies[0]
    assert body["text"].startswith("Spend spike: team search: $30.51")
    assert body["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "Spend spike: team search"}}
    assert body["blocks"][1]["type"] == "section" and body["blocks"][1]["text"]["type"] == "mrkdwn"
    assert {"type": "mrkdwn", "text": "*team*\nsearch"} in body["blocks"][2]["fields"]


def test_webhook_failures_are_counted_and_logged_never_raised_and_retried_next_run(tmp_path, caplog):
    delivered = []
    state = str(tmp_path / "sent.db")
    with receiver() as (url, got):
        got.status = 500
        alerter = AL.Alerter([AL.WebhookSink(url, timeout_s=2), AL.WebhookSink(dead_url(), timeout_s=2)], state=state)
        with caplog.at_level(logging.WARNING, logger="aicost"):
            assert alerter.send(ALERT) == []  # no exception
        assert alerter.stats.failed == 2 and alerter.stats.sent == 0
        assert len(alerter.stats.failures_by_sink) == 2
        assert "failed to deliver" in caplog.text and "secret" not in caplog.text  # the URL is the secret
        # Nothing was delivered, so the key was released: the next run delivers it.
        got.status = 200
        retry = AL.Alerter([AL.WebhookSink(url), AL.CallbackSink(delivered.append)], state=state)
        assert retry.send(ALERT) == [ALERT]
    assert delivered == [ALERT]
    assert len(got.bodies) == 2  # the 500 attempt, then the delivered one


def test_a_webhook_s_credentials_are_never_in_its_name_or_the_log(tmp_path, caplog):
    """The log names a webhook's host only (its URL is its secret): credentials in the URL's authority
    (``https://user:secret@host/...``) were part of the sink's name, so the failure log (and failures_by_sink)
    showed them. urllib never sends them (it takes ``secret@host`` for the port, or the whole for the host), so
    such a URL is refused when the sink is made, the error naming neither the user nor the secret."""
    for url in (dead_url().replace("http://", "http://hook-user:s3cret@"), "https://hook-user:s3cret@hooks.example/T/B"):
        with pytest.raises(ConfigurationError, match=r"WebhookSink\(url\): .*user:password@") as refused:
            AL.WebhookSink(url, timeout_s=2)
        assert "s3cret" not in str(refused.value) and "hook-user" not in str(refused.value)
    sink = AL.WebhookSink(dead_url(), timeout_s=2)
    alerter = AL.Alerter([sink], state=str(tmp_path / "sent.db"))
    with caplog.at_level(logging.WARNING, logger="aicost"):
        assert alerter.send(ALERT) == []
    assert "failed to deliver" in caplog.text and "/hook" not in caplog.text


@pytest.mark.parametrize("rest", ["?token=s3cret", "#s3cret", "?token=s3cret/path"])
def test_a_webhook_s_query_is_never_in_its_name_the_log_or_the_state_file(tmp_path, caplog, rest):
    """The sink's name was the URL up to its third '/': for a webhook whose secret is its query with no path before
    it (``https://host?token=...``), that was the host and the secret, in the failure log, ``failures_by_sink`` and
    every claim kept in the state file. The name is the host and port alone."""
    base = dead_url().removesuffix("/hook")
    sink = AL.WebhookSink(base + rest, timeout_s=2)
    assert sink.name == "webhook " + base.removeprefix("http://")
    alerter = AL.Alerter([sink], state=str(tmp_path / "sent.db"))
    with caplog.at_level(logging.WARNING, logger="aicost"):
        assert alerter.send(ALERT) == []
    assert "failed to deliver" in caplog.text and "s3cret" not in caplog.text
    assert "s3cret" not in repr(alerter.stats)
    alerter.state.claim_each([f"{ALERT.key} -> {sink.name}"])  # as a delivered alert's claim stays
    assert not any(b"s3cret" in path.read_bytes() for path in tmp_path.glob("sent.db*"))  # its -wal too


# Webhook URLs and headers urllib cannot send: each raised at the first delivery, and the error quoted its secret
# into the failure log (``InvalidURL: nonnumeric port: 's3cret@hooks.example'``, ``URL can't contain control
# characters. '/services/T/B/s3cret\n...'``, ``Invalid header value b'Bearer s3cret\n'``), and a URL of another
# scheme was refused with the whole URL in the message (the CLI's stderr, in a cron mail).
_UNSENDABLE = [
    ({"url": "https://user:s3cret@hooks.example/services/T/B/x"}, "user:password@"),
    ({"url": "https://hooks.example/services/T/B/s3cret\nhttps://hooks.example/services/T/B/other"}, "whitespace"),
    ({"url": "https://hooks.example/services/T/B/s3 cret"}, "whitespace"),
    ({"url": "htps://hooks.example/services/T/B/s3cret"}, "http:// or https://"),
    ({"url": "https:///services/T/B/s3cret"}, "no host"),
    ({"url": "https://hooks.example:s3cret/services/T/B/x"}, "port"),
    ({"url": "https://hooks.example/hook", "headers": {"Authorization": "Bearer s3cret\r\nX-Evil: 1"}},
     "headers['Authorization']"),
    ({"url": "https://hooks.example/hook", "headers": {"X-Token\n": "s3cret"}}, "header name"),
]


@pytest.mark.parametrize("kwargs, problem", _UNSENDABLE)
def test_a_webhook_urllib_cannot_send_is_refused_when_made_never_quoting_its_secret(kwargs, problem):
    with pytest.raises(ConfigurationError) as refused:
        AL.WebhookSink(timeout_s=2, **kwargs)
    message = str(refused.value)
    assert message.startswith("WebhookSink(") and problem in message
    assert "s3cret" not in message and "services" not in message


def test_cli_alerts_refuses_an_unsendable_webhook_without_printing_it(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    argv = ["alerts", "--ledger", f"sqlite:///{tmp_path / 'none.db'}", "--state", str(tmp_path / "s.db"),
            "--webhook", "htps://hooks.slack.com/services/T000/B000/s3cret"]
    assert main(argv, out=out, err=err) == 2
    assert "WebhookSink(url)" in err.getvalue() and "s3cret" not in err.getvalue() + out.getvalue()


def test_a_sink_that_failed_while_another_delivered_is_retried_alone_next_run(tmp_path):
    """The claim is per alert and sink: the failed webhook gets the alert next run, the callback not twice."""
    state = str(tmp_path / "sent.db")
    got_callback = []
    with receiver() as (url, got):
        got.status = 500
        first = AL.Alerter([AL.CallbackSink(got_callback.append, name="pager"), AL.WebhookSink(url)], state=state)
        assert first.send(ALERT) == [ALERT]  # delivered to the callback
        assert first.stats.failed == 1 and len(got.bodies) == 1
        got.status = 200
        second = AL.Alerter([AL.CallbackSink(got_callback.append, name="pager"), AL.WebhookSink(url)], state=state)
        assert second.send(ALERT) == [ALERT]  # the webhook, retried alone
        assert second.stats.failed == 0 and second.stats.suppressed == 0
        third = AL.Alerter([AL.CallbackSink(got_callback.append, name="pager"), AL.WebhookSink(url)], state=state)
        assert third.send(ALERT) == [] and third.stats.suppressed == 1  # every sink has it now
    assert got_callback == [ALERT]
    assert len(got.bodies) == 2  # the 500 attempt, then the delivered retry


def test_a_delivery_interrupted_by_ctrl_c_is_not_remembered_as_sent(tmp_path):
    """The claim is taken before the delivery. Ctrl-C during one (a cron run stopped by hand, a slow webhook)
    raised KeyboardInterrupt past the claim, which stayed in the state file: every later run took the alert as
    sent, and it never was. The interrupt still stops the run; the claims of the sinks not delivered to are
    released, so the next run sends the alert to them."""
    state = str(tmp_path / "sent.db")
    delivered = []

    def interrupted(alert):
        raise KeyboardInterrupt

    first = AL.Alerter([AL.CallbackSink(delivered.append, name="pager"), AL.CallbackSink(interrupted, name="slack"),
                        AL.CallbackSink(delivered.append, name="mail")], state=state)
    with pytest.raises(KeyboardInterrupt):
        first.send(ALERT)
    assert delivered == [ALERT]  # the pager had it
    got = {"pager": [], "slack": [], "mail": []}
    again = AL.Alerter([AL.CallbackSink(got[name].append, name=name) for name in got], state=state)
    assert again.send(ALERT) == [ALERT]
    assert got == {"pager": [], "slack": [ALERT], "mail": [ALERT]}


def test_ctrl_c_while_an_alert_is_claimed_for_its_sinks_leaves_none_of_its_claims(tmp_path, monkeypatch):
    """Each sink's claim was its own INSERT, committed at once, before the delivery began: Ctrl-C between two of
    them (the state file busy, or just bad luck) left the first sink's claim in the file, and every later run took
    the alert as sent to a sink that never had it. The claims of an alert are one transaction: all or none."""
    import sqlite3

    state = str(tmp_path / "sent.db")
    alerter = AL.Alerter([AL.CallbackSink(lambda alert: None, name=n) for n in ("pager", "slack")], state=state)
    real = sqlite3.connect

    class CtrlCAtTheSecondClaim:  # a real connection; Ctrl-C lands just before its second claim
        def __init__(self, *args, **kwargs):
            self.db, self.claims = real(*args, **kwargs), 0

        def execute(self, sql, *args):
            if sql.startswith("INSERT OR IGNORE"):
                self.claims += 1
                if self.claims == 2:
                    raise KeyboardInterrupt
            return self.db.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self.db, name)

    monkeypatch.setattr(AL.sqlite3, "connect", CtrlCAtTheSecondClaim)
    with pytest.raises(KeyboardInterrupt):
        alerter.send(ALERT)
    monkeypatch.setattr(AL.sqlite3, "connect", real)
    assert AL.SentState(state).claim_each([f"{ALERT.key} -> pager", f"{ALERT.key} -> slack"]) == [True, True]


def test_sinks_of_the_same_name_each_get_the_alert_and_old_state_files_still_count(tmp_path):
    import sqlite3

    a, b = [], []
    alerter = AL.Alerter([AL.CallbackSink(lambda x: a.append(x)), AL.CallbackSink(lambda x: b.append(x))])
    assert alerter.send(ALERT) == [ALERT] and a == b == [ALERT]
    # A state file from before per-sink claims holds the bare key: the alert was delivered then, not again now.
    state = str(tmp_path / "old.db")
    AL.SentState(state)
    with sqlite3.connect(state) as db:
        db.execute("INSERT INTO aicost_alerts_sent (key, sent_at) VALUES (?, 0)", (ALERT.key,))
    again = AL.Alerter(AL.CallbackSink(a.append), state=state)
    assert again.send(ALERT) == [] and again.stats.suppressed == 1 and a == [ALERT]


def test_each_alert_opens_the_state_file_once_whatever_the_sinks(tmp_path, monkeypatch):
    """The old-key check and every sink's claim share one connection: a cron run over many alerts opens the shared
    file once an alert, not once per sink and once more."""
    import sqlite3

    state = str(tmp_path / "sent.db")
    got = [[], [], []]
    alerter = AL.Alerter([AL.CallbackSink(g.append, name=f"s{i}") for i, g in enumerate(got)], state=state)
    opened = []
    real = sqlite3.connect
    monkeypatch.setattr(AL.sqlite3, "connect", lambda *a, **k: opened.append(a) or real(*a, **k))
    second = dataclasses.replace(ALERT, key=ALERT.key + ":2")
    assert alerter.send([ALERT, second]) == [ALERT, second] and got == [[ALERT, second]] * 3
    assert len(opened) == 2
    assert alerter.send(ALERT) == [] and alerter.stats.suppressed == 1 and len(opened) == 3


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_webhook_answering_with_a_redirect_is_a_failed_delivery_retried_next_run(tmp_path, caplog, status):
    """urllib follows a 302 to a POST with a bodiless GET; a 200 to that GET is no delivery of the alert."""
    state = str(tmp_path / "sent.db")
    with receiver() as (url, got):
        got.status, got.location = status, url.rsplit("/", 1)[0] + "/moved"
        alerter = AL.Alerter(AL.WebhookSink(url, timeout_s=2), state=state)
        with caplog.at_level(logging.WARNING, logger="aicost"):
            assert alerter.send(ALERT) == []
        assert alerter.stats.failed == 1 and got.gets == 0
        assert f"HTTP Error {status}" in caplog.text and "moved" not in caplog.text
        got.status, got.location = 200, None
        retry = AL.Alerter(AL.WebhookSink(url, timeout_s=2), state=state)
        assert retry.send(ALERT) == [ALERT]
    assert len(got.bodies) == 2


@pytest.fixture
def trusted_tls(tmp_path, monkeypatch) -> Any:
    """A server SSLContext for 127.0.0.1 whose certificate (signed by a throw-away CA) this process trusts: the
    CA is the environment's SSL_CERT_FILE, which every default client context reads when it is made."""
    import ssl
    from datetime import timedelta
    from ipaddress import ip_address

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.now(timezone.utc)

    def cert(subject, key, issuer, issuer_key, ca):
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
                   .not_valid_after(now + timedelta(hours=1))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                                  critical=False))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                decipher_only=False), critical=True)
        else:
            builder = (builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address("127.0.0.1"))]),
                                             critical=False)
                       .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aicost test CA")])
    ca = cert(ca_name, ca_key, ca_name, ca_key, True)
    leaf = cert(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), key, ca_name, ca_key, False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "server.pem").write_bytes(
        leaf.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "server.pem")
    return context


@contextmanager
def trickling_receiver(answer: bytes, tls: Any = None) -> Iterator[str]:
    """A webhook on 127.0.0.1 that reads the request, sends ``answer``, then one more byte every 0.2 s, for ever
    (:func:`servers.trickling_server`); over HTTPS with ``tls`` (a server SSLContext)."""
    from servers import trickling_server

    with trickling_server(answer, tls) as (base, _):
        yield f"{base}/hooks/T000/B000/secret"


@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"],
                         ids=["no-status", "headers", "body"])
def test_a_webhook_that_trickles_its_answer_fails_within_its_timeout(tmp_path, caplog, answer):
    """``timeout_s`` bounded each read of the socket, not the delivery: a receiver (or a proxy) that sent a byte
    now and then held the delivery, the cron run and the in-app sender thread for ever. It is the whole
    exchange's deadline: the delivery fails after it, counted and logged as a timeout, and is retried next run."""
    with trickling_receiver(answer) as url:
        _delivery_ends_within_its_timeout(url, tmp_path, caplog)


@pytest.mark.parametrize("answer", [b"", b"HTTP/1.1 200 OK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n"],
                         ids=["no-status", "headers", "body"])
def test_an_https_webhook_that_trickles_its_answer_fails_within_its_timeout(tmp_path, caplog, answer, trusted_tls):
    """The deadline shut down the socket http.client connected, but ssl's wrap_socket detaches that socket and
    reads through a new one: over HTTPS (every real webhook), the shutdown failed (a bad file descriptor,
    swallowed) and a trickling answer held the delivery for ever, each read within the timeout."""
    with trickling_receiver(answer, tls=trusted_tls) as url:
        _delivery_ends_within_its_timeout(url, tmp_path, caplog)


def test_an_https_webhook_that_answers_gets_the_alert_once(tmp_path, trusted_tls):
    """The deadline's hold on an HTTPS connection (a duplicate of its socket) leaves a delivery that answers in time
    alone: delivered, once, and no claim released."""
    with receiver(tls=trusted_tls) as (url, got):
        alerter = AL.Alerter(AL.WebhookSink(url, timeout_s=10), state=str(tmp_path / "sent.db"))
        assert alerter.send([ALERT, ALERT]) == [ALERT]
        assert alerter.stats.failed == 0
    assert len(got.bodies) == 1 and got.bodies[0]["text"].startswith("Spend spike: team search")


def _delivery_ends_within_its_timeout(url: str, tmp_path, caplog) -> None:
    import time

    alerter = AL.Alerter(AL.WebhookSink(url, timeout_s=1), state=str(tmp_path / "sent.db"))
    sending = threading.Thread(target=alerter.send, args=(ALERT,), daemon=True)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="aicost"):
        sending.start()
        sending.join(30)  # generous: 1 s is the deadline, the machine is busy
    assert not sending.is_alive(), "the delivery outlived its timeout"
    assert time.monotonic() - started < 30
    assert alerter.stats.failed == 1 and alerter.stats.sent == 0
    assert "TimeoutError" in caplog.text and "secret" not in caplog.text
    assert AL.SentState(str(tmp_path / "sent.db")).claim_each([f"{ALERT.key} -> {alerter.sinks[0].name}"]) == [True]


def test_callback_and_budget_events_in_app_do_not_block_the_caller():
    got = []
    release = threading.Event()

    def slow_callback(alert):
        release.wait(5)
        got.append(alert)

    alerter = AL.Alerter(slow_callback)
    on_threshold = alerter.budget_callback()
    budget = Budget(limit_usd="20", window="day", scope="team", thresholds=[0.5, 0.8])
    event = BudgetEvent(kind="threshold", budget=budget, scope_value="search", window="day:2026-11-26",
                        resets_at=datetime(2026, 11, 27, tzinfo=timezone.utc), limit_usd=Decimal("20"),
                        spent_usd=Decimal("16.5"), reserved_usd=Decimal(0), threshold=Decimal("0.8"))
    on_threshold(event)  # returns at once although the callback is still blocked
    on_threshold(event)  # the same threshold in the same window: deduplicated
    assert got == []
    release.set()
    assert alerter.flush(5)
    assert len(got) == 1 and alerter.stats.suppressed == 1
    assert got[0].key == "budget:team/day:search:day:2026-11-26:0.8"
    assert "passed 80%" in got[0].title and "$16.50 of $20.00" in got[0].text


def test_in_app_alerts_to_a_hung_webhook_or_a_blocked_callback_never_hold_up_the_exit():
    """A webhook that accepts the connection and never answers (a listening socket nobody accepts from: the
    kernel completes the handshake), a callback blocked for ever and one that raises, an alert queued by the
    budget guard while the app runs and one queued by an exit handler: the app's call returns at once, and the
    process exits with status 0, long before the webhook's 60 s timeout would have let it."""
    import textwrap
    import time

    code = textwrap.dedent("""
        import atexit, socket, sys, threading
        from datetime import datetime, timezone
        from decimal import Decimal
        from aicost.budget import Budget
        from aicost.budget.guard import BudgetEvent
        from aicost.reports import alerts as AL

        hung = socket.socket()
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        def blocked(alert):
            threading.Event().wait()
        def raising(alert):
            raise RuntimeError("a bug in the pager")
        alerter = AL.Alerter([AL.WebhookSink(f"http://127.0.0.1:{hung.getsockname()[1]}/hook", timeout_s=60),
                              AL.CallbackSink(blocked, name="blocked"), AL.CallbackSink(raising, name="raising")])
        budget = Budget(limit_usd="20", window="day", scope="team", thresholds=[0.8])
        event = BudgetEvent(kind="threshold", budget=budget, scope_value="search", window="day:2026-11-26",
                            resets_at=datetime(2026, 11, 27, tzinfo=timezone.utc), limit_usd=Decimal("20"),
                            spent_usd=Decimal("16.5"), reserved_usd=Decimal(0), threshold=Decimal("0.8"))
        alerter.budget_callback()(event)  # the guard's on_threshold: returns at once
        late = AL.Alert(AL.ANOMALY, "anomaly:team:search:late", "late", "queued by an exit handler")
        atexit.register(lambda: print("queued at exit:", alerter.submit(late), flush=True))
        print("returned", flush=True)
    """)
    started = time.monotonic()
    done = _ran(code)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert "returned" in done.stdout and "queued at exit: True" in done.stdout
    assert took < 40, f"the exit waited {took:.0f} s for alert deliveries"  # generous: 2 busy cores


def test_in_app_an_alert_whose_delivery_the_exit_cut_short_is_not_remembered_as_sent(tmp_path):
    """The sender thread claims an alert for each sink, then delivers it. The app exiting in the middle of a
    delivery (a daemon thread: the exit does not wait) left that sink's claim in the state file, and every later run
    sharing it (``aicost alerts`` from cron, the app again) took the alert as sent: it never was. At exit the claims
    of deliveries under way are released (a sink that already had the alert keeps its claim: no second copy)."""
    import textwrap

    state = str(tmp_path / "sent.db")
    code = textwrap.dedent(f"""
        import threading
        from aicost.reports import alerts as AL

        delivering = threading.Event()
        def blocked(alert):
            delivering.set()
            threading.Event().wait()  # a pager that never returns
        alerter = AL.Alerter([AL.CallbackSink(lambda alert: None, name="quick"),
                              AL.CallbackSink(blocked, name="blocked")], state={state!r})
        alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:2026-11-26", "spike", "text"))
        assert delivering.wait(60)
        print("exiting mid-delivery", flush=True)
    """)
    done = _ran(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "exiting mid-delivery" in done.stdout
    key = "anomaly:team:search:2026-11-26"
    # The quick sink had it (its claim stays); the blocked one never did (its claim was released at exit).
    assert AL.SentState(state).claim_each([f"{key} -> quick", f"{key} -> blocked"]) == [False, True]


def test_in_app_no_other_sink_of_the_alert_is_delivered_to_once_the_exit_released_its_claims(tmp_path):
    """The exit releases the claims of the delivery under way and no other delivery starts: an alert's delivery to
    its next sink, too. The sender thread went on down the alert's sinks after the release, for as long as the exit
    lasted (other exit handlers: the ledger's flush, up to 10 s), delivering to the next one with its claim released:
    a later run sent that sink the alert a second time."""
    import textwrap

    state = str(tmp_path / "sent.db")
    code = textwrap.dedent(f"""
        import atexit, threading, time
        from aicost.reports import alerts as AL

        delivering, go_on, nexts = threading.Event(), threading.Event(), []
        def later_exit_handler():  # registered before the alerter's hook: runs after it, as the ledger's flush does
            go_on.set()
            time.sleep(1.5)  # the exit goes on a while
            print("next sink had", len(nexts), flush=True)
        atexit.register(later_exit_handler)
        def slow(alert):
            delivering.set()
            go_on.wait()
        alerter = AL.Alerter([AL.CallbackSink(slow, name="slow"), AL.CallbackSink(nexts.append, name="next")],
                             state={state!r})
        alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:2026-11-26", "spike", "text"))
        assert delivering.wait(60)
    """)
    done = _ran(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "next sink had 0" in done.stdout, done.stdout
    # unclaimed, for a later run to send once
    assert AL.SentState(state).claim_each(["anomaly:team:search:2026-11-26 -> next"]) == [True]


def test_in_app_an_alert_the_sender_takes_up_after_the_exit_began_is_never_claimed(tmp_path):
    """Once the exit has released the delivery under way, the sender thread (a daemon, running on while the other
    exit handlers run) took up the next queued alert: it claimed it in the state file, saw the exit, and released
    the claim again. A release the exit cut short (the state file locked by a cron run meanwhile: the release waits
    for it, and the process ends) left the alert marked as sent to the sink: never delivered, and no later run sends
    it. An alert taken up after the exit began is not claimed at all: a later run sends it."""
    import textwrap

    state = str(tmp_path / "sent.db")
    code = textwrap.dedent(f"""
        import atexit, threading, time
        from aicost.reports import alerts as AL

        delivering, go_on = threading.Event(), threading.Event()
        def later_exit_handler():  # registered before the alerter's hook: runs after it, as the ledger's flush does
            go_on.set()
            time.sleep(1.5)  # the exit goes on a while, then ends
        atexit.register(later_exit_handler)
        release = AL.SentState.release
        def locked_release(self, key, **kwargs):  # the sender thread's release waits for a lock the exit outlasts
            if threading.current_thread().name == "aicost-alerts":
                time.sleep(60)
            return release(self, key, **kwargs)
        AL.SentState.release = locked_release
        def pager(alert):
            if alert.key.endswith(":first"):
                delivering.set()
                go_on.wait()
        alerter = AL.Alerter(AL.CallbackSink(pager, name="pager"), state={state!r})
        alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:first", "spike", "text"))
        alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:second", "spike", "text"))
        assert delivering.wait(60)
    """)
    done = _ran(code)
    assert done.returncode == 0, done.stderr[-2000:]
    # never delivered, never claimed: a later run sends it
    assert AL.SentState(state).claim_each(["anomaly:team:search:second -> pager"]) == [True]


def test_bad_webhook_configuration_is_refused():
    with pytest.raises(ConfigurationError, match="WebhookSink"):
        AL.WebhookSink("ftp://example.invalid/hook")
    with pytest.raises(ValueError):
        AL.Alerter([])


@pytest.mark.parametrize("timeout_s, error", [
    (float("inf"), ConfigurationError), (float("nan"), ConfigurationError), (1e12, ConfigurationError),
    (0, ConfigurationError), ("5", ConfigurationTypeError), (True, ConfigurationTypeError),
    (Decimal(5), ConfigurationTypeError),
])
def test_a_webhook_timeout_that_is_no_usable_number_of_seconds_is_refused_when_made(timeout_s, error, capfd):
    """inf, nan or 1e12 were taken: every delivery then failed, inf and 1e12 each with a traceback of the deadline's
    timer thread on the app's stderr (OverflowError: timestamp out of range); "5" raised a bare TypeError."""
    with pytest.raises(error, match=r"WebhookSink\(timeout_s\): must be a number of seconds greater than 0"):
        AL.WebhookSink(dead_url(), timeout_s=timeout_s)
    assert capfd.readouterr().err == ""
    assert AL.WebhookSink(dead_url(), timeout_s=threading.TIMEOUT_MAX).timeout_s == threading.TIMEOUT_MAX


def test_cli_alerts_over_the_ledger_send_each_alert_once(tmp_path):
    ledger = write_ledger(tmp_path / "ledger.db")
    budgets = tmp_path / "budgets.toml"
    budgets.write_text('[[budgets]]\nlimit_usd = "12"\nwindow = "month"\nscope = "team"\nthresholds = [0.5, 0.8]\n')
    state = str(tmp_path / "alerts.db")
    with receiver() as (url, got):
        argv = ["alerts", "--ledger", ledger, "--budgets", str(budgets), "--webhook", url, "--state", state,
                "--at", "2026-11-26T23:00:00+00:00"]
        out = io.StringIO()
        assert main(argv, out=out, err=io.StringIO()) == 0
        first = out.getvalue()
        kinds = [b["blocks"][-1]["elements"][0]["text"] for b in got.bodies]
        assert "aicost budget_threshold" in kinds  # teams past 80 % of $12 this month
        assert "aicost forecast_over_budget" in kinds  # each team heads for ~$14-45 against $12
        assert "aicost anomaly" in kinds
        spike = [b for b in got.bodies if b["text"].startswith(f"Spend spike: team {SPIKE_TEAM}")]
        assert len(spike) == 1 and "gpt-4.1" in spike[0]["text"]  # with the calls that caused it
        sent = len(got.bodies)
        assert f"{sent} sent, 0 already sent before, 0 failed" in first
        out = io.StringIO()
        assert main(argv, out=out, err=io.StringIO()) == 0
        assert len(got.bodies) == sent  # nothing new
        assert f"0 sent, {sent} already sent before" in out.getvalue()


def test_replaying_a_past_moment_does_not_alert_on_spend_after_it(tmp_path):
    """`aicost alerts --at T`: the spike of 2026-11-26 03:00-03:39 UTC has not happened at 02:00, and at 03:20
    only its calls before 03:20 explain it."""
    import re

    from aicost.ledger import open_store

    ledger = write_ledger(tmp_path / "ledger.db")
    with open_store(ledger, create=False) as store:
        before = AL.evaluate_ledger(store, [], now=datetime(2026, 11, 26, 2, tzinfo=timezone.utc))
        during = AL.evaluate_ledger(store, [], now=datetime(2026, 11, 26, 3, 20, tzinfo=timezone.utc))
    assert [a for a in before if a.kind == AL.ANOMALY] == []
    (spike,) = [a for a in during if a.key == f"anomaly:team:{SPIKE_TEAM}:2026-11-26"]
    times = re.findall(r"\((\d\d:\d\d) UTC", spike.text)
    assert times and all(t < "03:20" for t in times), spike.text


@pytest.mark.parametrize("option, value, message", [
    ("--anomaly-days", "-3", "argument --anomaly-days: must be a whole number >= 1, got '-3'"),
    ("--anomaly-days", "0", "argument --anomaly-days: must be a whole number >= 1, got '0'"),
    ("--at", "yesterday", "argument --at: not an ISO date/time: 'yesterday'"),
])
def test_cli_alerts_refuses_bad_options_naming_them(tmp_path, capsys, option, value, message):
    """--anomaly-days -3 scanned nothing and said "0 alert(s)"; --at yesterday was refused without naming --at."""
    with pytest.raises(SystemExit) as exit_:
        main(["alerts", "--ledger", f"sqlite:///{tmp_path / 'none.db'}", "--state", str(tmp_path / "s.db"),
              option, value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "s.db").exists()


def test_a_state_file_that_cannot_be_used_is_refused_naming_it(tmp_path):
    """A --state in a directory that does not exist (or a file that is no database) was a sqlite3 traceback, exit
    status 1: it is bad input, refused naming --state (exit status 2) before the ledger is read, and in Python a
    ConfigurationError naming the file."""
    bad = str(tmp_path / "no-such-dir" / "alerts.db")
    with pytest.raises(ConfigurationError, match="cannot use the alert state file .*no-such-dir"):
        AL.Alerter(lambda alert: None, state=bad)
    out, err = io.StringIO(), io.StringIO()
    assert main(["alerts", "--ledger", f"sqlite:///{tmp_path / 'none.db'}", "--state", bad], out=out, err=err) == 2
    assert "--state: cannot use the alert state file" in err.getvalue() and "no ledger" not in err.getvalue()


def test_alerts_name_the_calls_of_unknown_price_left_out_of_their_amounts(tmp_path):
    """Threshold, forecast and spike alerts over spend that leaves calls of unknown price out say so."""
    from aicost.ledger import open_store

    ledger = write_ledger(tmp_path / "ledger.db")
    with open_store(ledger) as store:
        store.write(unpriced_rows(SPIKE_TEAM, 25, 2) + unpriced_rows(SPIKE_TEAM, 1, 7, start=SPIKE_DAY,
                                                                    first_id=70_000_000, hour=2))
    budgets = [Budget(limit_usd="12", window="month", scope="team", thresholds=[0.5, 0.8])]
    with open_store(ledger, create=False) as store:
        alerts = AL.evaluate_ledger(store, budgets, now=datetime(2026, 11, 26, 23, tzinfo=timezone.utc))
    def of_search(alert):  # not research's
        return f":{SPIKE_TEAM}:" in alert.key or f"[{SPIKE_TEAM}]" in alert.key

    mine = {a.kind: a for a in alerts if of_search(a)}
    assert len(mine) == len([a for a in alerts if of_search(a)]) == 3
    # Nov 2 .. Nov 26: 25 days x 2, and 7 more on the spike day
    assert "57 calls with an unknown price, not in the total." in mine[AL.BUDGET_THRESHOLD].text
    assert ("unknown price", "57 calls, not in the total") in mine[AL.BUDGET_THRESHOLD].fields
    # The forecast counts complete days, to Nov 25: 24 x 2
    assert "48 calls with an unknown price, not in the total." in mine[AL.FORECAST_OVER_BUDGET].text
    assert mine[AL.ANOMALY].text.startswith("$30.51 + 9 calls of unknown price on 2026-11-26")
    others = [a for a in alerts if a.kind == AL.BUDGET_THRESHOLD and not of_search(a)]
    assert others and all("unknown price" not in a.text for a in others)


def test_names_cannot_ping_a_channel():
    """A team name from upstream baggage is text in the message, never a Slack mention or link."""
    alert = AL.Alert(AL.ANOMALY, "k", "Spend spike: team <!channel>", "team <!channel> & <https://x|y> spent $5",
                     (("team", "<!here>"),))
    payload = alert.slack_payload()
    # Everything Slack parses as mrkdwn (the notification text and the mrkdwn blocks); the header is plain_text,
    # which Slack shows as typed.
    parsed = json.dumps([payload["text"], payload["blocks"][1:]])
    assert "<!channel>" not in parsed and "<!here>" not in parsed and "<https://" not in parsed
    assert payload["blocks"][0]["text"]["type"] == "plain_text"
    assert "&lt;!channel&gt; &amp; &lt;https://x|y&gt;" in payload["blocks"][1]["text"]["text"]


def test_cli_alerts_a_failed_webhook_is_retried_by_the_next_run(tmp_path):
    ledger = write_ledger(tmp_path / "ledger.db")
    state = str(tmp_path / "alerts.db")
    argv = ["alerts", "--ledger", ledger, "--state", state, "--at", "2026-11-26T23:00:00+00:00"]
    with receiver() as (url, got):
        got.status = 503
        out = io.StringIO()
        assert main([*argv, "--webhook", url], out=out, err=io.StringIO()) == 1
        failed = len(got.bodies)
        assert failed >= 1 and "0 sent" in out.getvalue()
        got.status = 200
        out = io.StringIO()
        assert main([*argv, "--webhook", url], out=out, err=io.StringIO()) == 0
        assert len(got.bodies) == 2 * failed  # every alert tried again, and delivered
        assert f"{failed} sent, 0 already sent before" in out.getvalue()


def test_the_current_window_is_the_budget_guard_s_calendar_window():
    from aicost.reports.alerts import current_window

    now = datetime(2026, 12, 31, 23, 59, 59, 999_000, tzinfo=timezone.utc)
    utc = lambda *a: datetime(*a, tzinfo=timezone.utc)  # noqa: E731
    assert current_window("month", now) == (utc(2026, 12, 1), utc(2027, 1, 1), "month:2026-12")
    assert current_window("day", now) == (utc(2026, 12, 31), utc(2027, 1, 1), "day:2026-12-31")
    assert current_window("hour", now) == (utc(2026, 12, 31, 23), utc(2027, 1, 1), "hour:2026-12-31T23")
    assert current_window("minute", now) == (utc(2026, 12, 31, 23, 59), utc(2027, 1, 1), "minute:2026-12-31T23:59")
    with pytest.raises(ValueError, match="unknown window"):
        current_window("week", now)


def test_an_alert_refused_at_interpreter_finalization_is_counted(monkeypatch):
    """``submit()`` refuses an alert once the interpreter is finalizing (no thread may start then), and its docstring
    said "(counted)"; it returned False and counted nothing: the alert vanished from ``stats``. It is ``dropped``."""
    delivered = []
    alerter = AL.Alerter(AL.CallbackSink(delivered.append))
    monkeypatch.setattr(AL.sys, "is_finalizing", lambda: True)
    assert alerter.submit(ALERT) is False
    monkeypatch.undo()
    assert alerter.stats.dropped == 1 and alerter._thread is None and delivered == []


@contextmanager
def silent_receiver() -> Iterator[tuple[str, list]]:
    """A webhook on 127.0.0.1 that accepts every connection and never answers: each connection attempt is
    recorded (the connections are held open until the end)."""
    from socketserver import BaseRequestHandler

    held: list[socket.socket] = []

    class Hold(BaseRequestHandler):
        def handle(self) -> None:
            held.append(self.request)
            self.server.stopping.wait()

    with loopback_server(Hold) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks/T000/B000/secret", held


def _alerts(n: int, tag: str = "") -> list[AL.Alert]:
    return [AL.Alert(AL.ANOMALY, f"anomaly:team:t{i}{tag}:2026-11-26", f"spike {i}", "text") for i in range(n)]


def test_a_webhook_that_never_answers_is_tried_once_per_run_and_its_alerts_retried_next_run(tmp_path, caplog):
    """10 alerts to a dead webhook took 10 timeouts: once it timed out, the rest of the run skips it, each of its
    alerts counted as a failed delivery and left unclaimed for the next run; a sink that works still gets them."""
    state = str(tmp_path / "sent.db")
    delivered = []
    with silent_receiver() as (url, attempts):
        alerter = AL.Alerter([AL.WebhookSink(url, timeout_s=0.3), AL.CallbackSink(delivered.append, name="cb")],
                             state=state)
        with caplog.at_level(logging.WARNING, logger="aicost"):
            assert len(alerter.send(_alerts(6))) == 6  # delivered to the callback
        assert len(attempts) == 1
        assert alerter.stats.failed == 6 and alerter.stats.failures_by_sink == {alerter.sinks[0].name: 6}
        assert "unreachable" in caplog.text and "secret" not in caplog.text
        # The next run (another Alerter on the state file) tries the webhook again, and only the webhook.
        again = AL.Alerter([AL.WebhookSink(url, timeout_s=0.3), AL.CallbackSink(delivered.append, name="cb")],
                           state=state)
        assert again.send(_alerts(6)) == []
        assert len(attempts) == 2 and again.stats.failed == 6
    assert len(delivered) == 6


def test_in_app_a_webhook_that_never_answers_is_skipped_for_the_batch_not_for_ever():
    """In the app, one delivery pass is one batch of what was queued: alerts queued behind a delivery that is
    timing out are not each held for the timeout; a later batch tries the webhook again."""
    with silent_receiver() as (url, attempts):
        alerter = AL.Alerter(AL.WebhookSink(url, timeout_s=0.5))
        for alert in _alerts(8):
            alerter.submit(alert)
        assert alerter.flush(30)
        # The first alert may be taken alone before the rest are queued: at most two passes.
        assert 1 <= len(attempts) <= 2
        assert alerter.stats.failed == 8 and alerter.stats.sent == 0
        before = len(attempts)
        alerter.submit(_alerts(1, "later")[0])
        assert alerter.flush(30)
        assert len(attempts) == before + 1


def _wait_for(condition, timeout_s: float = 60.0) -> bool:
    """Whether ``condition()`` came true within ``timeout_s`` (generous: the machine is busy); polled."""
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _threshold_event() -> BudgetEvent:
    budget = Budget(limit_usd="20", window="day", scope="team", thresholds=[0.8])
    return BudgetEvent(kind="threshold", budget=budget, scope_value="search", window="day:2026-11-26",
                       resets_at=datetime(2026, 11, 27, tzinfo=timezone.utc), limit_usd=Decimal("20"),
                       spent_usd=Decimal("16.5"), reserved_usd=Decimal(0), threshold=Decimal("0.8"))


def test_in_app_an_alert_its_webhook_refused_is_retried_and_delivered_once_when_it_is_back():
    """The app has no next run: a budget threshold crossed once, whose webhook refused the connection that one time
    (down for a deploy), had its claim released "for the next pass", and no pass ever came; without a state file
    nothing else would send it either. The sender thread tries it again after a delay: the webhook, back on its
    port, gets it once, and the pager that had it the first time does not get it again."""
    url = dead_url()  # nothing listens there: the connection is refused
    port = int(url.split(":")[2].split("/")[0])
    paged: list[AL.Alert] = []
    alerter = AL.Alerter([AL.CallbackSink(paged.append, name="pager"),
                          AL.WebhookSink(f"http://127.0.0.1:{port}/hooks/T000/B000/secret", timeout_s=5)])
    alerter.RETRY_DELAYS_S = (0.2,) * 100  # whatever the load, the webhook is back before the last retry
    on_threshold = alerter.budget_callback()
    on_threshold(_threshold_event())
    assert alerter.flush(30)
    assert alerter.stats.failed >= 1 and len(paged) == 1
    with receiver(port=port) as (_, got):
        assert _wait_for(lambda: got.bodies, 30), "the refused alert was never tried again"
        on_threshold(_threshold_event())  # the guard again: handled after the retry's pass, deduplicated
        assert alerter.flush(30)
        assert alerter._retries == {}
    assert len(got.bodies) == 1 and got.answered == [200]
    assert got.bodies[0]["text"].startswith("Budget team/day (search) passed 80%")
    assert len(paged) == 1
    assert alerter.stats.sent == 1 and alerter.stats.suppressed == 1 and alerter.stats.given_up == 0


@pytest.mark.parametrize("status", [500, 503, 429])
def test_in_app_an_alert_its_webhook_answered_with_a_5xx_or_429_is_retried_until_delivered_once(status):
    """A server error or "too many requests" passes: retried by the sender thread, delivered once."""
    with receiver() as (url, got):
        got.status = status
        alerter = AL.Alerter(AL.WebhookSink(url, timeout_s=5))
        alerter.RETRY_DELAYS_S = (0.2,) * 100
        assert alerter.submit(ALERT)
        assert _wait_for(lambda: len(got.bodies) >= 2, 30), "the failed alert was never tried again"
        got.status = 200
        assert _wait_for(lambda: 200 in got.answered, 30)
        assert alerter.submit(ALERT) and alerter.flush(30)  # after the delivering pass: deduplicated
        assert alerter._retries == {}
    assert got.answered.count(200) == 1 and got.answered[-1] == 200 and set(got.answered[:-1]) == {status}
    assert alerter.stats.sent == 1 and alerter.stats.suppressed == 1
    assert alerter.stats.failed == len(got.answered) - 1 and alerter.stats.given_up == 0


@pytest.mark.parametrize("status", [400, 404, 410, 302])
def test_in_app_an_alert_its_webhook_refused_with_a_4xx_or_a_redirect_is_given_up_at_once(status, caplog):
    """A 4xx (a revoked or mistyped webhook, a body it refuses) or a redirect would be answered again: not retried,
    given up and counted at once; queued again (a budget's next event), it is tried again."""
    with receiver() as (url, got):
        got.status, got.location = status, (url.rsplit("/", 1)[0] + "/moved" if status == 302 else None)
        alerter = AL.Alerter(AL.WebhookSink(url, timeout_s=5))
        alerter.RETRY_DELAYS_S = (0.01,) * 10
        with caplog.at_level(logging.WARNING, logger="aicost"):
            assert alerter.submit(ALERT) and alerter.flush(30)
        assert alerter._retries == {} and len(got.bodies) == 1
        assert alerter.stats.given_up == 1 and alerter.stats.failed == 1
        assert alerter.submit(ALERT) and alerter.flush(30)
        assert len(got.bodies) == 2 and alerter.stats.given_up == 2 and alerter.stats.suppressed == 0
    assert "secret" not in caplog.text


def test_in_app_alerts_to_a_webhook_down_for_good_are_given_up_after_their_retries_counted_and_logged_once(caplog):
    """Each alert is tried 1 + len(RETRY_DELAYS_S) times, then given up: counted in ``stats.given_up``, logged
    once; the other sink had each of them once, and the app's calls were never held."""
    from aicost._log import forget

    forget("alerts:given_up")  # logged once per process: another test may have had it logged
    paged: list[AL.Alert] = []
    with receiver() as (url, got):
        got.status = 503
        alerter = AL.Alerter([AL.WebhookSink(url, timeout_s=5), AL.CallbackSink(paged.append, name="pager")])
        alerter.RETRY_DELAYS_S = (0.05, 0.1, 0.2)
        with caplog.at_level(logging.WARNING, logger="aicost"):
            for alert in _alerts(3, "down"):
                assert alerter.submit(alert)  # returns at once
            assert _wait_for(lambda: alerter.stats.given_up == 3, 60), "never given up"
            assert alerter.flush(30)
        assert alerter._retries == {}
        assert len(got.bodies) == 3 * 4 and alerter.stats.failed == 3 * 4
    assert len(paged) == 3 and alerter.stats.sent == 3
    assert caplog.text.count("gave up delivering an alert") == 1 and "4 attempts failed" in caplog.text
    assert "secret" not in caplog.text


def test_in_app_an_alert_queued_again_while_its_retry_waits_is_counted_sent_once_and_ends_the_retry():
    """Delivered to the pager, refused by the webhook (503): one alert sent, the webhook's delivery waiting for
    its retry. Queued again (a budget's next event) once the webhook is back, it reaches the webhook before the
    retry does: still one alert sent, as when the retry delivers it (it counted 2), and the retry, left with no
    sink to deliver to, no longer waits, holding one of the RETRY_LIMIT places for minutes."""
    paged: list[AL.Alert] = []
    with receiver() as (url, got):
        got.status = 503
        alerter = AL.Alerter([AL.CallbackSink(paged.append, name="pager"), AL.WebhookSink(url, timeout_s=5)])
        alerter.RETRY_DELAYS_S = (3600.0,)  # the retry never comes within the test
        assert alerter.submit(ALERT) and alerter.flush(30)
        assert alerter.stats.sent == 1 and list(alerter._retries) == [ALERT.key]
        got.status = 200
        assert alerter.submit(ALERT) and alerter.flush(30)
    assert got.answered == [503, 200] and len(paged) == 1
    assert alerter.stats.sent == 1 and alerter.stats.suppressed == 0 and alerter.stats.given_up == 0
    assert alerter._retries == {}


def test_in_app_at_most_retry_limit_alerts_wait_for_a_retry_the_others_are_given_up():
    """The alerts kept for a retry are bounded: past RETRY_LIMIT, a failed delivery is given up at once."""
    alerter = AL.Alerter(AL.WebhookSink(dead_url(), timeout_s=5))
    alerter.RETRY_DELAYS_S = (3600.0,)  # no retry within the test
    alerter.RETRY_LIMIT = 2
    for alert in _alerts(5, "limit"):
        assert alerter.submit(alert)
    assert alerter.flush(30)
    assert len(alerter._retries) == 2
    assert alerter.stats.failed == 5 and alerter.stats.given_up == 3


def test_in_app_alerts_waiting_for_a_retry_never_hold_up_the_exit_nor_stay_claimed(tmp_path):
    """A webhook down: the alert waits minutes for its retry (the default delays). The app exits at once, status 0
    (the sender thread is a daemon, its wait no join); no claim is left in the state file, so a later run
    (``aicost alerts`` from cron) sends it."""
    import textwrap

    state, url = str(tmp_path / "sent.db"), dead_url()
    code = textwrap.dedent(f"""
        from aicost.reports import alerts as AL

        alerter = AL.Alerter(AL.WebhookSink({url!r}, timeout_s=5), state={state!r})
        alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:2026-11-26", "spike", "text"))
        assert alerter.flush(60)
        print("waiting for a retry:", len(alerter._retries), alerter.stats.failed, flush=True)
    """)
    done = _ran(code)  # the retries would take > 6 minutes
    assert done.returncode == 0, done.stderr[-2000:]
    assert "waiting for a retry: 1 1" in done.stdout
    assert AL.SentState(state).claim_each([f"anomaly:team:search:2026-11-26 -> {AL.WebhookSink(url).name}"]) == [True]


def test_a_threshold_spelled_0_80_in_the_app_and_0_8_in_a_budgets_file_is_one_alert(tmp_path):
    """The app's Budget(thresholds=[Decimal("0.80")]) and the cron run's budgets file (TOML's 0.80 is a float,
    read as 0.8) share the state file: the threshold's alert is delivered once, not once per spelling."""
    from aicost.budget.config import parse_config
    from aicost.ledger import open_store

    ledger = write_ledger(tmp_path / "ledger.db")
    budgets_file = tmp_path / "budgets.toml"
    budgets_file.write_text('[[budgets]]\nname = "monthly"\nlimit_usd = "12"\nwindow = "month"\nscope = "team"\n'
                            'thresholds = [0.80]\n')
    from_file = list(parse_config(str(budgets_file))["budgets"])
    in_app = [Budget(name="monthly", limit_usd="12", window="month", scope="team", thresholds=[Decimal("0.80")])]
    now = datetime(2026, 11, 26, 23, tzinfo=timezone.utc)
    state = str(tmp_path / "alerts.db")
    delivered: list[AL.Alert] = []
    with open_store(ledger, create=False) as store:
        app_alerts = AL.budget_threshold_alerts(store, in_app, now=now)
        cron_alerts = AL.budget_threshold_alerts(store, from_file, now=now)
    assert app_alerts and len(app_alerts) == len(cron_alerts)
    AL.Alerter(AL.CallbackSink(delivered.append, name="pager"), state=state).send(app_alerts)
    AL.Alerter(AL.CallbackSink(delivered.append, name="pager"), state=state).send(cron_alerts)
    assert len(delivered) == len(app_alerts)
    assert all(a.key.endswith(":0.8") for a in delivered)


def _alerts_argv(tmp_path) -> list[str]:
    return ["alerts", "--ledger", write_ledger(tmp_path / "ledger.db"), "--state", str(tmp_path / "alerts.db"),
            "--at", "2026-11-26T23:00:00+00:00"]


def test_cli_alerts_takes_the_webhook_from_the_environment_never_printing_it(tmp_path, monkeypatch):
    """A webhook's URL is its secret: on the command line it shows in `ps` and the crontab,
    $AICOST_ALERT_WEBHOOK keeps it out of both."""
    with receiver() as (url, got):
        monkeypatch.setenv("AICOST_ALERT_WEBHOOK", url)
        out, err = io.StringIO(), io.StringIO()
        assert main(_alerts_argv(tmp_path), out=out, err=err) == 0, err.getvalue()
        assert got.bodies and f"{len(got.bodies)} sent" in out.getvalue()
        assert "secret" not in out.getvalue() + err.getvalue()


def test_cli_alerts_takes_webhooks_from_a_file_never_printing_them(tmp_path, monkeypatch):
    monkeypatch.delenv("AICOST_ALERT_WEBHOOK", raising=False)
    with receiver() as (url, got), receiver() as (url2, got2):
        hooks = tmp_path / "hooks"
        hooks.write_text(f"# the team's channel\n{url}\n\n  {url2}  \n")
        out, err = io.StringIO(), io.StringIO()
        assert main([*_alerts_argv(tmp_path), "--webhook-file", str(hooks)], out=out, err=err) == 0, err.getvalue()
        assert got.bodies and len(got.bodies) == len(got2.bodies)
        assert "secret" not in out.getvalue() + err.getvalue()


def test_cli_alerts_webhooks_given_on_the_command_line_win_over_the_environment(tmp_path, monkeypatch):
    with receiver() as (url, got), receiver() as (env_url, env_got):
        monkeypatch.setenv("AICOST_ALERT_WEBHOOK", env_url)
        assert main([*_alerts_argv(tmp_path), "--webhook", url], out=io.StringIO(), err=io.StringIO()) == 0
        assert got.bodies and not env_got.bodies


@pytest.mark.parametrize("where", ["env", "file"])
def test_cli_alerts_refuses_an_unsendable_webhook_from_a_file_or_the_environment_without_printing_it(
        tmp_path, monkeypatch, where):
    bad = "htps://hooks.slack.com/services/T000/B000/s3cret"
    argv = ["alerts", "--ledger", f"sqlite:///{tmp_path / 'none.db'}", "--state", str(tmp_path / "s.db")]
    if where == "env":
        monkeypatch.setenv("AICOST_ALERT_WEBHOOK", bad)
    else:
        (tmp_path / "hooks").write_text(bad + "\n")
        argv += ["--webhook-file", str(tmp_path / "hooks")]
    out, err = io.StringIO(), io.StringIO()
    assert main(argv, out=out, err=err) == 2
    assert "WebhookSink(url)" in err.getvalue() and "s3cret" not in err.getvalue() + out.getvalue()


def test_cli_alerts_refuses_a_webhook_file_without_a_url_naming_it(tmp_path):
    (tmp_path / "hooks").write_text("# nothing yet\n")
    err = io.StringIO()
    assert main(["alerts", "--ledger", f"sqlite:///{tmp_path / 'none.db'}", "--state", str(tmp_path / "s.db"),
                 "--webhook-file", str(tmp_path / "hooks")], out=io.StringIO(), err=err) == 2
    assert "--webhook-file" in err.getvalue() and "no URL" in err.getvalue()


def test_cli_alerts_refuses_a_webhook_url_given_as_the_webhook_file_never_quoting_it(tmp_path):
    """`--webhook-file https://hooks.../secret` (the URL where the file's path belongs) was an error quoting the
    path, the secret with it, into the cron mail: refused, saying what was expected, the URL not shown."""
    err = io.StringIO()
    assert main(["alerts", "--ledger", f"sqlite:///{tmp_path / 'none.db'}", "--state", str(tmp_path / "s.db"),
                 "--webhook-file", "https://hooks.slack.com/services/T000/B000/s3cret"], out=io.StringIO(),
                err=err) == 2
    assert "--webhook-file: expected the path of a file" in err.getvalue() and "s3cret" not in err.getvalue()


def test_cli_alerts_help_names_the_ways_to_give_a_webhook(capsys):
    with pytest.raises(SystemExit):
        main(["alerts", "--help"])
    text = capsys.readouterr().out
    assert "--webhook-file" in text and "AICOST_ALERT_WEBHOOK" in text


@pytest.mark.parametrize("with_state", [False, True], ids=["in-memory", "state-file"])
def test_in_app_deliveries_waiting_for_a_retry_at_exit_are_counted_and_logged_once_never_the_url(tmp_path,
                                                                                                   with_state):
    """An alert whose webhook was down and whose callback raised waits for its retry; the app exits first. The
    process took both deliveries with it and said nothing (without a state file no later run can send them either).
    They are counted (``stats.lost_at_exit``, one per sink) and logged once at exit, naming the sinks' hosts, never
    the webhook's path or query."""
    import textwrap

    state = str(tmp_path / "sent.db") if with_state else None
    url = dead_url().replace("/hook", "/hooks/T000/B000/s3cret?token=t0ken")
    code = textwrap.dedent(f"""
        import atexit
        from aicost.reports import alerts as AL

        def raising(alert):
            raise RuntimeError("pager down")
        alerter = AL.Alerter([AL.WebhookSink({url!r}, timeout_s=5), AL.CallbackSink(raising, name="pager")],
                             state={state!r})
        alerter.RETRY_DELAYS_S = (3600.0,)  # the retry is never due before the exit
        # registered before the alerter's exit hook: runs after it
        atexit.register(lambda: print("lost at exit:", getattr(alerter.stats, "lost_at_exit", None), flush=True))
        alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:2026-11-26", "spike", "text"))
        alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:2026-11-27", "spike", "text"))
        assert alerter.flush(60)
        print("waiting for a retry:", len(alerter._retries), flush=True)
    """)
    done = _ran(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "waiting for a retry: 2" in done.stdout and "lost at exit: 4" in done.stdout, done.stdout
    assert done.stderr.count("waiting for a retry at exit") == 1, done.stderr
    assert f"webhook {url.split('/')[2]}" in done.stderr and "pager" in done.stderr
    assert "s3cret" not in done.stderr and "t0ken" not in done.stderr


def test_in_app_a_retry_counted_lost_at_exit_is_not_tried_while_the_exit_runs():
    """The exit counts the deliveries waiting for a retry as lost; the sender thread, a daemon running on while the
    other exit handlers run (the ledger's flush, up to 10 s), must not try one of them then: counted lost and sent
    both. A later exit handler makes the retry due and wakes the thread with another alert: the retry is not
    tried, the other alert is delivered."""
    import textwrap

    code = textwrap.dedent("""
        import atexit
        from aicost.reports import alerts as AL

        calls = []
        def pager(alert):
            calls.append(alert.key)
            if len(calls) == 1:
                raise RuntimeError("pager down")
        alerter = AL.Alerter(AL.CallbackSink(pager, name="pager"))
        alerter.RETRY_DELAYS_S = (3600.0,)
        def later_exit_handler():  # registered before the alerter's exit hook: runs after it
            for retry in list(alerter._retries.values()):
                retry.due = 0.0  # due now, if it were still waiting
            alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:late", "spike", "text"))  # wakes the thread
            assert alerter.flush(60)
            print("calls:", calls, "lost:", getattr(alerter.stats, "lost_at_exit", None), flush=True)
        atexit.register(later_exit_handler)
        alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:first", "spike", "text"))
        assert alerter.flush(60) and len(alerter._retries) == 1
    """)
    done = _ran(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "calls: ['anomaly:team:search:first', 'anomaly:team:search:late'] lost: 1" in done.stdout, done.stdout


@pytest.mark.parametrize("with_state", [False, True], ids=["in-memory", "state-file"])
def test_in_app_alerts_still_queued_at_exit_are_counted_lost_once_and_never_delivered_after(tmp_path, with_state):
    """Alerts queued behind a delivery under way when the app exits were never tried once: they vanished with the
    process, counted nowhere (with a state file the thread, once the exit began, took them up and let them go;
    without one it went on delivering them while the exit lasted, or not, as the exit allowed). At exit they are
    counted in ``stats.lost_at_exit`` (one per sink, each alert key once: a copy of an alert queued twice is not a
    second loss), logged once on the existing line (a webhook by its host, never its path or query), and not
    delivered afterwards: decided once, never counted lost and sent both."""
    import textwrap

    state = str(tmp_path / "sent.db") if with_state else None
    with receiver() as (url, got):
        url += "?token=t0ken"
        code = textwrap.dedent(f"""
            import atexit, threading
            from aicost.reports import alerts as AL

            delivering, go_on = threading.Event(), threading.Event()
            def pager(alert):
                if alert.key.endswith(":first"):
                    delivering.set()
                    go_on.wait()  # the delivery under way when the exit comes
            alerter = AL.Alerter([AL.CallbackSink(pager, name="pager"), AL.WebhookSink({url!r}, timeout_s=5)],
                                 state={state!r})
            def later_exit_handler():  # registered before the alerter's exit hook: runs after it
                print("lost at exit:", alerter.stats.lost_at_exit, flush=True)
                go_on.set()  # the exit goes on a while (the ledger's flush): the sender thread with it
                print("flushed:", alerter.flush(60), "sent:", alerter.stats.sent, "lost:", alerter.stats.lost_at_exit,
                      flush=True)
            atexit.register(later_exit_handler)
            alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:first", "spike", "text"))
            assert delivering.wait(60)
            for key in ("second", "third", "third"):  # the same alert queued twice (a budget's exceeded is)
                assert alerter.submit(AL.Alert(AL.ANOMALY, f"anomaly:team:search:{{key}}", "spike", "text"))
        """)
        done = _ran(code)
        delivered = [body["text"] for body in got.bodies]
    assert done.returncode == 0, done.stderr[-2000:]
    # second and third, to both sinks; with a state file the exit also stops the first alert's delivery before its
    # webhook (its claims released): that delivery, never tried, is lost too, counted by the sender thread
    lost = 5 if with_state else 4
    assert "lost at exit: 4" in done.stdout and f"flushed: True sent: 1 lost: {lost}" in done.stdout, done.stdout
    assert len(delivered) == (0 if with_state else 1), delivered  # the first alert only, never a lost one
    assert done.stderr.count("at exit and are not made") == 1, done.stderr
    assert "queued" in done.stderr and f"webhook {url.split('/')[2]}" in done.stderr and "pager" in done.stderr
    assert "secret" not in done.stderr and "t0ken" not in done.stderr


def test_in_app_each_alerter_s_deliveries_lost_at_exit_are_logged_once_for_it():
    """Two alerters (a webhook answering 503, a pager that raises), each with a delivery waiting for its retry when
    the app exits: both are counted, but the log line was once per process, so only the first alerter's loss was
    logged and the other's went unsaid. Each alerter logs its own once, naming its own sinks."""
    import textwrap

    with receiver() as (url, got):
        got.status = 503  # worth a retry
        code = textwrap.dedent(f"""
            import atexit
            from aicost.reports import alerts as AL

            def raising(alert):
                raise RuntimeError("pager down")
            hook = AL.Alerter(AL.WebhookSink({url!r}, timeout_s=5))
            pager = AL.Alerter(AL.CallbackSink(raising, name="pager"))
            # registered before the alerters' exit hook: runs after it
            atexit.register(lambda: print("lost:", hook.stats.lost_at_exit, pager.stats.lost_at_exit, flush=True))
            for alerter in (hook, pager):
                alerter.RETRY_DELAYS_S = (3600.0,)  # the retry is never due before the exit
                alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:2026-11-26", "spike", "text"))
                assert alerter.flush(60) and len(alerter._retries) == 1
        """)
        done = _ran(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lost: 1 1" in done.stdout, done.stdout
    lines = [line for line in done.stderr.splitlines() if "at exit and are not made" in line]
    assert len(lines) == 2, done.stderr
    assert sorted(line.split("(to ")[1].split(")")[0] for line in lines) == sorted(
        [f"webhook {url.split('/')[2]}", "pager"]), lines
    assert "secret" not in done.stderr


def test_in_app_an_alert_taken_up_with_a_retry_whose_delivery_the_exit_meets_is_counted_lost():
    """The sender thread takes up a new alert in the same pass as a due retry and delivers the retry first: while
    the retry's delivery was under way the new alert sat in neither the queue nor the thread's untried alerts, so
    an exit then found it nowhere. Never tried, it was counted nowhere. It is counted lost at exit (and then not
    tried: decided once)."""
    import textwrap

    code = textwrap.dedent("""
        import atexit, threading
        from aicost.reports import alerts as AL

        calls, retrying, go_on = [], threading.Event(), threading.Event()
        def pager(alert):
            calls.append(alert.key[-1])
            if calls == ["A"]:
                raise RuntimeError("pager down")
            if alert.key.endswith("A"):
                retrying.set()
                go_on.wait()  # the retry's delivery under way when the exit comes
        alerter = AL.Alerter(AL.CallbackSink(pager, name="pager"))
        alerter.RETRY_DELAYS_S = (3600.0,)
        def later_exit_handler():  # registered before the alerter's exit hook: runs after it
            print("lost at exit:", alerter.stats.lost_at_exit, flush=True)
            go_on.set()
            print("flushed:", alerter.flush(60), "calls:", calls, "sent:", alerter.stats.sent, "lost:",
                  alerter.stats.lost_at_exit, flush=True)
        atexit.register(later_exit_handler)
        alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:A", "spike", "text"))
        assert alerter.flush(60) and len(alerter._retries) == 1
        for retry in alerter._retries.values():
            retry.due = 0.0  # due at the next pass, which B (below) starts
        alerter.submit(AL.Alert(AL.ANOMALY, "anomaly:team:search:B", "spike", "text"))
        assert retrying.wait(60)
    """)
    done = _ran(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lost at exit: 1" in done.stdout, done.stdout
    assert "flushed: True calls: ['A', 'A'] sent: 1 lost: 1" in done.stdout, done.stdout


@pytest.mark.parametrize("succeeds", [False, True], ids=["fails", "delivers"])
def test_in_app_an_alert_in_flight_at_exit_while_its_retry_waits_is_lost_as_its_delivery_ends(succeeds):
    """An alert waits for its retry; a fresh copy of it (queued again, as a budget's ``exceeded`` is) is being
    delivered when the exit begins. The exit counted the waiting retry lost, and then the fresh copy's outcome
    counted again: failed, the same sink lost twice; delivered, lost and sent both. That delivery decides: lost
    once if it fails, not lost if it delivers."""
    import textwrap

    code = textwrap.dedent(f"""
        import atexit, threading
        from aicost.reports import alerts as AL

        calls, delivering, go_on = [], threading.Event(), threading.Event()
        def pager(alert):
            calls.append(alert.key)
            if len(calls) == 1:
                raise RuntimeError("pager down")
            delivering.set()
            go_on.wait()  # the fresh copy's delivery under way when the exit comes
            if not {succeeds!r}:
                raise RuntimeError("pager still down")
        alerter = AL.Alerter(AL.CallbackSink(pager, name="pager"))
        alerter.RETRY_DELAYS_S = (3600.0,)
        def later_exit_handler():  # registered before the alerter's exit hook: runs after it
            print("lost at exit:", alerter.stats.lost_at_exit, flush=True)
            go_on.set()
            print("flushed:", alerter.flush(60), "calls:", len(calls), "sent:", alerter.stats.sent, "lost:",
                  alerter.stats.lost_at_exit, flush=True)
        atexit.register(later_exit_handler)
        alert = AL.Alert(AL.ANOMALY, "anomaly:team:search:K", "spike", "text")
        alerter.submit(alert)
        assert alerter.flush(60) and len(alerter._retries) == 1
        alerter.submit(alert)
        assert delivering.wait(60)
    """)
    done = _ran(code)
    assert done.returncode == 0, done.stderr[-2000:]
    sent, lost = (1, 0) if succeeds else (0, 1)
    assert f"flushed: True calls: 2 sent: {sent} lost: {lost}" in done.stdout, done.stdout
    assert done.stderr.count("at exit and are not made") == lost, done.stderr


def test_in_app_a_copy_queued_behind_its_alert_s_delivery_at_exit_is_no_second_loss(tmp_path):
    """With a state file: an alert is being delivered to its first sink (the second waits its turn) and a copy of it
    is queued when the exit begins. The exit counted the copy lost to both sinks, then the delivery, stopped by the
    exit before the second sink, counted that one again: 3 losses, one of them delivered. Lost is the delivery's
    outcome: the second sink, once."""
    import textwrap

    code = textwrap.dedent(f"""
        import atexit, threading
        from aicost.reports import alerts as AL

        delivering, go_on = threading.Event(), threading.Event()
        def slow(alert):
            delivering.set()
            go_on.wait()  # the delivery under way when the exit comes; it succeeds
        alerter = AL.Alerter([AL.CallbackSink(slow, name="slow"), AL.CallbackSink(lambda alert: None, name="fast")],
                             state={str(tmp_path / "sent.db")!r})
        def later_exit_handler():  # registered before the alerter's exit hook: runs after it
            go_on.set()
            print("flushed:", alerter.flush(60), "sent:", alerter.stats.sent, "lost:", alerter.stats.lost_at_exit,
                  flush=True)
        atexit.register(later_exit_handler)
        alert = AL.Alert(AL.ANOMALY, "anomaly:team:search:K", "spike", "text")
        alerter.submit(alert)
        assert delivering.wait(60)
        alerter.submit(alert)
    """)
    done = _ran(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "flushed: True sent: 1 lost: 1" in done.stdout, done.stdout
    assert done.stderr.count("(to fast)") == 1, done.stderr


@pytest.mark.parametrize("with_state", [False, True], ids=["in-memory", "state-file"])
def test_in_app_an_alert_queued_again_by_a_later_exit_handler_is_no_second_loss(tmp_path, with_state):
    """An alert waits for its retry at exit (counted lost); a later exit handler queues it again, twice (a budget's
    ``exceeded`` is, at each refused call), and its sink is still down (with a state file the exit stops every
    delivery). Each copy's failure counted the same sink lost again: 3 for 1. Each key and sink counts once."""
    import textwrap

    state = str(tmp_path / "sent.db") if with_state else None
    code = textwrap.dedent(f"""
        import atexit
        from aicost.reports import alerts as AL

        calls = []
        def pager(alert):
            calls.append(alert.key)
            raise RuntimeError("pager down")
        alerter = AL.Alerter(AL.CallbackSink(pager, name="pager"), state={state!r})
        alerter.RETRY_DELAYS_S = (3600.0,)
        alert = AL.Alert(AL.ANOMALY, "anomaly:team:search:K", "spike", "text")
        def later_exit_handler():  # registered before the alerter's exit hook: runs after it
            print("lost at exit:", alerter.stats.lost_at_exit, flush=True)
            alerter.submit(alert)
            alerter.submit(alert)
            print("flushed:", alerter.flush(60), "lost:", alerter.stats.lost_at_exit, flush=True)
        atexit.register(later_exit_handler)
        alerter.submit(alert)
        assert alerter.flush(60) and len(alerter._retries) == 1
    """)
    done = _ran(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "lost at exit: 1" in done.stdout and "flushed: True lost: 1" in done.stdout, done.stdout
