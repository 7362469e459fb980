"""A downstream service for the two-process baggage test (run as ``python tests/attribution_downstream_app.py``).

It is a plain ``http.server`` app (no OpenTelemetry server instrumentation, so the extraction is visible):
``POST /answer`` runs its handler inside ``aicost.attribution.attributes_from_headers(request headers)`` and
makes one instrumented OpenAI call to a loopback fake vendor it starts itself. The response is the JSON of
that call's span attributes and trace id, so the upstream test can check who the call was charged to.

Prints ``READY <port>`` on stdout once it listens on 127.0.0.1; exits when stdin closes.
"""

from __future__ import annotations

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # vendor_server
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # aicost from the checkout

import openai  # noqa: E402
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace import TracerProvider  # noqa: E402

import aicost  # noqa: E402
from aicost.attribution import attributes_from_headers, configure_propagation  # noqa: E402
from aicost.hooks import collect_calls  # noqa: E402
from vendor_server import ReplayServer  # noqa: E402


def main() -> None:
    provider = TracerProvider()
    trace.set_tracer_provider(provider)
    aicost.instrument(tracer_provider=provider)
    if len(sys.argv) > 1:  # "--trust team,feature,...": the upstream is the test process, a service of our own
        configure_propagation(trust_upstream=sys.argv[2].split(",") if sys.argv[2] else ())
    vendor = ReplayServer(record_requests=False).start()
    client = openai.OpenAI(api_key="test", base_url=vendor.openai_base_url, max_retries=0)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("content-length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            with attributes_from_headers(self.headers):
                with collect_calls() as calls:
                    client.chat.completions.create(
                        model="gpt-4o-mini", messages=[{"role": "user", "content": body.get("question", "hi")}]
                    )
            (result,) = calls.results
            span = result.span
            payload = json.dumps({
                "attributes": {k: v for k, v in span.attributes.items() if isinstance(v, (str, int, float, bool))},
                "trace_id": format(span.get_span_context().trace_id, "032x"),
                "parent_span_id": format(span.parent.span_id, "016x") if span.parent else None,
            }).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        request_queue_size = 128  # the concurrency test opens dozens of connections at once

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"READY {server.server_address[1]}", flush=True)
    sys.stdin.read()  # the parent closes stdin to stop us
    server.shutdown()
    vendor.stop()


if __name__ == "__main__":
    main()
