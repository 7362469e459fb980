"""Real servers on 127.0.0.1 for the tests that need them: redis-server and prometheus started as processes
(:func:`redis_server`, :func:`redis_process`, :func:`prometheus_server`); an HTTP or TCP server of a test's own
handler in a thread (:func:`loopback_server`: a webhook, a redirect target), over TLS if asked, and one that trickles
its answer for ever (:func:`trickling_server`); a proxy in front of PostgreSQL that a test switches off and on
(:class:`OutageProxy`); and what a PostgreSQL connection runs with (:func:`libpq_settings`, :func:`tcp_limits`,
:func:`pg_service_file`).

A test that needs a server binary that is not installed is skipped with the reason, so the suite runs on a
laptop. CI sets ``AICOST_REQUIRE_SERVERS=1`` (see ``.ci/run``), which turns those skips into failures: in CI every
server test must really run.
"""

from __future__ import annotations

import os
import shutil
import socket
import socketserver
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any, Iterator

import pytest


_PACKAGES = {"redis-server": "redis-server", "prometheus": "prometheus"}


def require_binary(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/bin/{name}", f"/usr/sbin/{name}", f"/usr/local/bin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        reason = f"{name} is not installed (Debian: apt-get install {_PACKAGES.get(name, name)})"
        if os.environ.get("AICOST_REQUIRE_SERVERS") == "1":
            pytest.fail(f"AICOST_REQUIRE_SERVERS=1 but {reason}")
        pytest.skip(reason)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on 127.0.0.1:{port} within {timeout}s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextmanager
def redis_server() -> Iterator[str]:
    """Yield a ``redis://127.0.0.1:PORT/0`` URL of a fresh, persistence-free redis-server."""
    binary = require_binary("redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aicost-redis-") as workdir:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", workdir, "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port, proc)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            _stop(proc)


class RedisProcess:
    """A redis-server on 127.0.0.1 that a fault-injection test can stall, kill and restart on the same port and
    data directory (so an append-only file, when enabled, is what the restarted server loads)."""

    def __init__(self, binary: str, port: int, workdir: str, appendonly: bool) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", workdir,
                      "--protected-mode", "yes"]
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
        major = version.split("v=", 1)[-1].split(".", 1)[0]
        if major.isdigit() and int(major) >= 7:  # DEBUG is off by default from Redis 7 (the option is new there)
            self._args += ["--enable-debug-command", "local"]
        self._args += ["--appendonly", "yes", "--appendfsync", "always"] if appendonly else ["--appendonly", "no"]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self._args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for_port(self.port, self.proc)

    def kill(self) -> None:
        """SIGKILL: no shutdown save, exactly what a crash or an OOM kill does."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None

    def stall(self, seconds: float) -> "threading.Thread":
        """Block the server for ``seconds`` (DEBUG SLEEP) from a thread; returns once the server is asleep."""
        import threading

        import redis

        ready = threading.Event()

        def sleep() -> None:
            client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=seconds + 10)
            try:
                ready.set()
                client.execute_command("DEBUG", "SLEEP", str(seconds))
            finally:
                client.close()

        thread = threading.Thread(target=sleep, daemon=True)
        thread.start()
        ready.wait(5)
        time.sleep(0.05)  # the command is on the wire and the server is asleep
        return thread


@contextmanager
def redis_process(appendonly: bool = False) -> Iterator[RedisProcess]:
    """Yield a started :class:`RedisProcess` (``appendonly``: AOF with ``appendfsync always``); stopped after."""
    binary = require_binary("redis-server")
    with tempfile.TemporaryDirectory(prefix="aicost-redis-") as workdir:
        server = RedisProcess(binary, free_port(), workdir, appendonly)
        server.start()
        try:
            yield server
        finally:
            server.stop()


@contextmanager
def prometheus_server(scrape_targets: list[str], scrape_interval: str = "1s") -> Iterator[str]:
    """Yield the base URL of a Prometheus server scraping ``scrape_targets`` (``host:port`` strings)."""
    binary = require_binary("prometheus")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="aicost-prom-") as workdir:
        config = os.path.join(workdir, "prometheus.yml")
        targets = ", ".join(f'"{t}"' for t in scrape_targets)
        with open(config, "w") as f:
            f.write(
                "global:\n"
                f"  scrape_interval: {scrape_interval}\n"
                f"  evaluation_interval: {scrape_interval}\n"
                "scrape_configs:\n"
                "  - job_name: aicost\n"
                f"    static_configs:\n      - targets: [{targets}]\n"
            )
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir}/data",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_for_port(port, proc, timeout=30)
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"{base}/-/ready", timeout=1) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.2)
            yield base
        finally:
            _stop(proc)


class OutageProxy:
    """TCP proxy in front of the real PostgreSQL server, which the test switches off and on: an outage as the
    client sees one (refused connections, broken sessions) while the database keeps its data."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.up = True
        self.silent = False  # new connections are taken and never answered (a server that no longer responds)
        # A list: each new connection's cancel request is read, kept ``(time.monotonic(), backend pid)`` and the
        # connection closed, as the server does, but passed on to no one (every cancel is lost)
        self.cancels: list[tuple[float, int]] | None = None
        self.conns: list[socket.socket] = []
        self.held: list[socket.socket] = []
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            if self.silent:
                self.held.append(client)
                continue
            if (cancels := self.cancels) is not None:
                self._take_cancel(client, cancels)
                continue
            upstream = socket.create_connection(("127.0.0.1", self.target))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _take_cancel(client: socket.socket, cancels: list[tuple[float, int]]) -> None:
        """Read a cancel request as the server does (refusing libpq's SSL or GSS encryption request first)."""
        at = time.monotonic()
        client.settimeout(5)

        def read(n: int) -> bytes:
            data = b""
            while len(data) < n and (more := client.recv(n - len(data))):
                data += more
            return data

        try:
            while len(head := read(8)) == 8:
                length, code = struct.unpack("!ii", head)
                if length == 8 and code in (80877103, 80877104):  # SSLRequest, GSSENCRequest: not here
                    client.sendall(b"N")
                    continue
                if length == 16 and code == 80877102 and len(rest := read(8)) == 8:  # CancelRequest
                    cancels.append((at, struct.unpack("!ii", rest)[0]))
                return
        except OSError:
            pass
        finally:
            client.close()

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.close()
                except OSError:
                    pass

    def down(self) -> None:
        self.up = False
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.conns.clear()

    def close(self) -> None:
        self.down()
        self.sock.close()
        for c in self.held:
            c.close()


def tcp_limits(conn: Any) -> tuple[int, int, int, int, int]:
    """The socket options libpq set on a connection: SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT and
    TCP_USER_TIMEOUT (ms), as the kernel reports them."""
    sock = socket.socket(fileno=os.dup(conn.fileno()))
    try:
        return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) != 0,
                *(sock.getsockopt(socket.IPPROTO_TCP, opt) for opt in (
                    socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT, socket.TCP_USER_TIMEOUT)))
    finally:
        sock.close()


def libpq_settings(conn: Any) -> tuple[str | None, tuple[int, int, int, int, int]]:
    """What a PostgreSQL connection runs with: the connect_timeout libpq used, from wherever it came (None: none,
    wait for ever), and the socket's :func:`tcp_limits`."""
    timeout = next(option.val for option in conn.pgconn.info if option.keyword == b"connect_timeout")
    return None if timeout is None else timeout.decode(), tcp_limits(conn)


def pg_service_file(path: Any, service: str, dsn: str, settings: str) -> str:
    """Write a pg_service.conf at ``path`` whose one entry, ``service``, connects where ``dsn`` does (its host,
    port, user and dbname) with ``settings`` (``key=value`` lines); returns the path, for PGSERVICEFILE."""
    from psycopg.conninfo import conninfo_to_dict

    where = conninfo_to_dict(dsn)
    with open(path, "w") as f:
        f.write(f"[{service}]\n" + "".join(f"{key}={where[key]}\n" for key in ("host", "port", "user", "dbname"))
                + settings)
    return str(path)


class LoopbackServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer whose ``stopping`` is set as it stops (:func:`loopback_server`); ``server_close()``
    does not wait for a handler: one that holds its connection ends on ``stopping``."""

    block_on_close = False

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.stopping = threading.Event()


@contextmanager
def loopback_server(handler: type[socketserver.BaseRequestHandler], port: int = 0,
                    tls: Any = None) -> Iterator[LoopbackServer]:
    """A server on 127.0.0.1 at a free port (or ``port``: a server coming back where it was down), serving each
    connection with ``handler`` in a daemon thread of its own, from a daemon thread; over TLS with ``tls`` (a server
    SSLContext, wrapping the listening socket). Yields the server (its port: ``server.server_address[1]``). On exit
    it sets ``server.stopping`` (a handler that holds its connection waits on it), shuts down and closes."""
    server = LoopbackServer(("127.0.0.1", port), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextmanager
def trickling_server(answer: bytes, tls: Any = None) -> Iterator[tuple[str, list[int]]]:
    """A server on 127.0.0.1 that reads each request, sends ``answer``, then one more byte every 0.2 s, for ever:
    each read of the socket waits less than any timeout, so only a deadline for the whole exchange ends it (a vendor
    API, a webhook, or a proxy in front of them). With ``tls`` (a server SSLContext), over HTTPS. Yields its base
    URL and the list of connections it took (one item each)."""
    connections: list[int] = []

    class Trickle(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            connections.append(1)
            client = self.request
            try:
                if tls is not None:
                    client = tls.wrap_socket(client, server_side=True)
                client.recv(65536)
                client.sendall(answer)
                while not self.server.stopping.wait(0.2):
                    client.sendall(b"X")
            except OSError:  # the client gave up
                pass
            finally:
                client.close()

    with loopback_server(Trickle) as server:
        yield f"{'https' if tls is not None else 'http'}://127.0.0.1:{server.server_address[1]}", connections
