"""A loopback OTLP receiver: what an OpenTelemetry Collector is to an application, on 127.0.0.1.

It speaks both OTLP transports the standard exporters use: gRPC (the SDK's default for ``OTEL_*_EXPORTER=otlp``)
and HTTP/protobuf (``/v1/traces``, ``/v1/metrics``, ``/v1/logs``). Every span it receives is kept, flattened to
``{"name": ..., "attributes": {...}}``, so a test can check what reached the collector. Built on the
``opentelemetry-proto`` messages and ``grpcio`` that the OTLP exporters install.
"""

from __future__ import annotations

import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, kind) if kind else None


class OtlpReceiver:
    """``with OtlpReceiver() as rx:`` -> ``rx.grpc_endpoint`` / ``rx.http_endpoint``; spans in ``rx.spans``."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.metric_requests = 0
        self._lock = threading.Lock()
        self._grpc: Any = None
        self._http: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ what arrives
    def _add_traces(self, request: Any) -> None:
        with self._lock:
            for resource_spans in request.resource_spans:
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        self.spans.append({"name": span.name,
                                           "attributes": {a.key: _value(a.value) for a in span.attributes}})

    def _add_metrics(self, request: Any) -> None:
        with self._lock:
            self.metric_requests += 1

    # ------------------------------------------------------------------ servers
    def __enter__(self) -> "OtlpReceiver":
        import grpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

        receiver = self

        class Traces(tgrpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - the gRPC method name
                receiver._add_traces(request)
                return tpb.ExportTraceServiceResponse()

        class Metrics(mgrpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
                receiver._add_metrics(request)
                return mpb.ExportMetricsServiceResponse()

        self._grpc = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        tgrpc.add_TraceServiceServicer_to_server(Traces(), self._grpc)
        mgrpc.add_MetricsServiceServicer_to_server(Metrics(), self._grpc)
        grpc_port = self._grpc.add_insecure_port("127.0.0.1:0")
        self._grpc.start()
        self.grpc_endpoint = f"http://127.0.0.1:{grpc_port}"

        class Http(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/v1/traces":
                    request = tpb.ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    receiver._add_traces(request)
                    reply = tpb.ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    receiver._add_metrics(None)
                    reply = mpb.ExportMetricsServiceResponse().SerializeToString()
                else:
                    reply = b""
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Http)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self.http_endpoint = f"http://127.0.0.1:{self._http.server_address[1]}"
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self._grpc is not None:
            self._grpc.stop(grace=None)

    def costed_spans(self) -> list[dict[str, Any]]:
        with self._lock:
            return [s for s in self.spans if "gen_ai.usage.cost" in s["attributes"]]
