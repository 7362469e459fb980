"""A loopback stand-in for the OpenAI and Anthropic APIs that answers with real recorded responses.

It lets the examples run on a fresh machine with no API key and no network: the real ``openai`` and
``anthropic`` SDKs talk HTTP to 127.0.0.1, and each request gets the next recorded response, byte for byte as
the live API sent it (JSON bodies, or server-sent event streams). The recordings in ``examples/recordings`` come
from Apache-2.0 projects' test suites; see ``examples/recordings/NOTICE.md``.
"""

from __future__ import annotations

import collections
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).with_name("recordings")


def load(recording_id: str) -> dict[str, Any]:
    return json.loads((RECORDINGS / f"{recording_id}.json").read_text())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        with self.server.lock:  # type: ignore[attr-defined]
            queue = self.server.queue  # type: ignore[attr-defined]
            recording = queue.popleft() if queue else None
        if recording is None:
            body = b'{"error": {"message": "no recorded response queued", "type": "replay_error"}}'
            self.send_response(500)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        response = recording["response"]
        content_type = response.get("content_type") or response.get("content_type_inferred") or "application/json"
        body = (response["body"] or "").encode()
        self.send_response(response["status"])
        self.send_header("content-type", content_type)
        if "text/event-stream" in content_type:
            # Send the stream event by event, as the vendor does.
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            for event in body.split(b"\n\n"):
                if event.strip():
                    chunk = event + b"\n\n"
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)


class RecordedVendor:
    """``with RecordedVendor() as vendor: vendor.queue("openai-chat-nonstream-014"); ...``"""

    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.queue = collections.deque()  # type: ignore[attr-defined]
        self._server.lock = threading.Lock()  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def queue(self, recording_id: str) -> dict[str, Any]:
        recording = load(recording_id)
        with self._server.lock:  # type: ignore[attr-defined]
            self._server.queue.append(recording)  # type: ignore[attr-defined]
        return recording

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "RecordedVendor":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
