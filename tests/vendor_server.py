"""A loopback HTTP server that replays recorded (or hand-made) OpenAI / Anthropic responses to the real SDKs.

Why it exists: aicost must be proven against the real ``openai`` 3.x and ``anthropic`` 2.x SDKs over real HTTP,
never against mocks of their HTTP layer, and without calling the vendors. The recordings in
``tests/fixtures/recordings`` are genuine vendor traffic, so replaying them byte for byte (SSE streams event by
event, with HTTP/1.1 chunked encoding and keep-alive, as the vendors send them) exercises exactly the parsing
paths a production app hits.

How a test uses it::

    with ReplayServer() as server:
        server.enqueue(Reply.from_recording(load_recording("openai-chat-nonstream-001")))
        client = openai.OpenAI(api_key="test", base_url=server.openai_base_url, max_retries=0)
        client.chat.completions.create(model="gpt-4o", messages=[...])
        server.requests[-1].json["model"]  # what the SDK sent

Replies are served first-in first-out, one per request. When the queue is empty the server answers with a
generated response (``generate=True``, the default: any endpoint, any chunk count via the ``x-replay-chunks``
request header or ``server.generated_chunks``) or, with ``generate=False``, with a 599 error that names the
request, so a test that forgot to enqueue fails loudly. Only the standard library is used; the server binds
127.0.0.1 on a free port and runs in a daemon thread (or as ``python tests/vendor_server.py`` in its own
process, for benchmarks that must not share the client's GIL).
"""

from __future__ import annotations

import argparse
import collections
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "RECORDINGS_DIR",
    "ReceivedRequest",
    "Reply",
    "ReplayServer",
    "all_recording_ids",
    "load_recording",
    "split_sse_events",
    "sse",
    "openai_error_reply",
    "anthropic_error_reply",
    "openai_chat_reply",
    "openai_chat_stream_reply",
    "openai_responses_reply",
    "openai_responses_stream_reply",
    "anthropic_message_reply",
    "anthropic_stream_reply",
    "openai_client",
    "anthropic_client",
]

RECORDINGS_DIR = Path(__file__).resolve().parent / "fixtures" / "recordings"

# Hop-by-hop and framing headers: the server frames bodies itself (Content-Length or chunked), and recorded
# bodies are stored decoded, so replaying these would corrupt the response.
_SKIPPED_RESPONSE_HEADERS = frozenset(
    {"content-length", "content-encoding", "transfer-encoding", "connection", "keep-alive", "date", "server"}
)

Chunk = Union[bytes, str]


# ------------------------------------------------------------------------------------------------ recordings
@lru_cache(maxsize=None)
def _recording_paths() -> dict[str, Path]:
    return {p.stem: p for p in sorted(RECORDINGS_DIR.glob("*/*.json"))}


def all_recording_ids(vendors: Iterable[str] = ("openai", "anthropic")) -> list[str]:
    """Every recording id of ``vendors`` (the sub-directories: ``openai``, ``anthropic``, ``google``, ``bedrock``),
    sorted (``openai-chat-nonstream-001``, ...)."""
    wanted = set(vendors)
    return [rid for rid, path in _recording_paths().items() if path.parent.name in wanted]


def load_recording(recording_id: str) -> dict[str, Any]:
    """The recording's JSON (a fresh copy each time, so tests may mutate it)."""
    path = _recording_paths().get(recording_id)
    if path is None:
        raise KeyError(f"no recording {recording_id!r} under {RECORDINGS_DIR}")
    return json.loads(path.read_text(encoding="utf-8"))


def split_sse_events(body: str) -> list[str]:
    """Split a raw event-stream body into whole events (each ending in a blank line), as the vendor sent them.

    Sending one event per HTTP chunk reproduces the vendor's pacing: a client sees each event as it arrives,
    so "no chunk is delayed or buffered" can be observed.
    """
    text = body.replace("\r\n", "\n")
    events = [block.strip("\n") + "\n\n" for block in text.split("\n\n") if block.strip()]
    return events


def sse(data: Any, event: Optional[str] = None) -> str:
    """One server-sent event; ``data`` is JSON-encoded unless it is already a string."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return (f"event: {event}\n" if event else "") + f"data: {payload}\n\n"


# ------------------------------------------------------------------------------------------------ replies
@dataclass
class Reply:
    """One HTTP response to serve.

    ``body`` is sent with a Content-Length. ``chunks`` (a list, or a zero-argument callable returning a fresh
    iterable, for lazily generated streams) is sent with chunked transfer encoding, one HTTP chunk each.
    ``first_chunk_delay`` / ``chunk_delay`` (seconds) pace the stream. ``disconnect_after`` drops the
    connection after that many chunks without the terminating chunk (a vendor dying mid-stream).
    ``reuse=True`` keeps the reply at the head of the queue for every request (benchmarks).
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: Optional[Chunk] = None
    chunks: Optional[Union[Iterable[Chunk], Callable[[], Iterable[Chunk]]]] = None
    content_type: Optional[str] = None
    first_chunk_delay: float = 0.0
    chunk_delay: float = 0.0
    disconnect_after: Optional[int] = None
    reuse: bool = False

    @classmethod
    def json(cls, data: Any, status: int = 200, headers: Optional[Mapping[str, str]] = None) -> "Reply":
        return cls(status=status, body=json.dumps(data), content_type="application/json", headers=dict(headers or {}))

    @classmethod
    def stream(cls, events: Iterable[Chunk] | Callable[[], Iterable[Chunk]], **kwargs: Any) -> "Reply":
        kwargs.setdefault("content_type", "text/event-stream")
        return cls(chunks=events if callable(events) else list(events), **kwargs)

    @classmethod
    def from_recording(cls, recording: Mapping[str, Any] | str, **kwargs: Any) -> "Reply":
        """The recorded response: status, headers (minus framing ones), body; SSE bodies split per event."""
        rec = load_recording(recording) if isinstance(recording, str) else recording
        response = rec["response"]
        headers = {
            k: v[-1] if isinstance(v, list) else v
            for k, v in (response.get("headers") or {}).items()
            if k.lower() not in _SKIPPED_RESPONSE_HEADERS and not k.lower() == "content-type"
        }
        content_type = response.get("content_type") or response.get("content_type_inferred") or "application/json"
        body = response["body"] or ""
        if response.get("body_base64"):  # binary bodies (AWS event streams), byte for byte as recorded
            import base64

            return cls(status=response["status"], headers=headers, chunks=[base64.b64decode(response["body_base64"])],
                       content_type=content_type, **kwargs)
        if "text/event-stream" in content_type:
            return cls(status=response["status"], headers=headers, chunks=split_sse_events(body),
                       content_type=content_type, **kwargs)
        return cls(status=response["status"], headers=headers, body=body, content_type=content_type, **kwargs)

    def iter_chunks(self) -> Iterator[Chunk]:
        source = self.chunks() if callable(self.chunks) else self.chunks
        return iter(source or ())


@dataclass
class ReceivedRequest:
    """What the SDK sent: for assertions on paths, query, headers (lower-case names) and the JSON body."""

    method: str
    path: str  # with the query string, as sent
    headers: dict[str, str]
    body: bytes
    received_at: float

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query)

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


# ------------------------------------------------------------------------------------------------ generators
# Synthetic vendor-shaped responses, used by the generate mode, by stream tests and by the benchmark. Shapes
# follow the recordings (e.g. openai-chat-stream-006, openai-responses-stream-001, anthropic-messages-stream-011).

def _openai_chat_usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def openai_chat_reply(model: str = "gpt-4o-mini-2024-07-18", *, text: str = "Hello there", prompt_tokens: int = 9,
                      completion_tokens: int = 2, cached_tokens: int = 0, reasoning_tokens: int = 0,
                      service_tier: str = "default") -> Reply:
    return Reply.json({
        "id": "chatcmpl-replay", "object": "chat.completion", "created": 1_700_000_000, "model": model,
        "service_tier": service_tier, "system_fingerprint": "fp_replay",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                     "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []}}],
        "usage": _openai_chat_usage(prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens),
    }, headers={"x-request-id": "req_replay"})


def openai_chat_stream_reply(n_chunks: int = 200, model: str = "gpt-4o-mini-2024-07-18", *,
                             include_usage: bool = True, prompt_tokens: int = 9, error_after: Optional[int] = None,
                             **kwargs: Any) -> Reply:
    """A chat stream of ``n_chunks`` content chunks (one token each), then finish, usage, ``[DONE]``.

    ``error_after=k`` replaces everything after the k-th content chunk with the error event the API sends when
    a stream fails server-side (the SDK raises ``openai.APIError``).
    """
    def events() -> Iterator[str]:
        base = {"id": "chatcmpl-replay", "object": "chat.completion.chunk", "created": 1_700_000_000,
                "model": model, "service_tier": "default", "system_fingerprint": "fp_replay"}
        extra = {"usage": None} if include_usage else {}
        yield sse({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "", "refusal": None},
                                        "logprobs": None, "finish_reason": None}], **extra})
        for i in range(n_chunks):
            if error_after is not None and i == error_after:
                yield sse({"error": {"message": "The server had an error while processing your request.",
                                     "type": "server_error", "param": None, "code": None}})
                return
            yield sse({**base, "choices": [{"index": 0, "delta": {"content": " tok"}, "logprobs": None,
                                            "finish_reason": None}], **extra})
        yield sse({**base, "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}], **extra})
        if include_usage:
            yield sse({**base, "choices": [], "usage": _openai_chat_usage(prompt_tokens, n_chunks)})
        yield sse("[DONE]")

    return Reply.stream(events, headers={"x-request-id": "req_replay_stream"}, **kwargs)


def _response_object(model: str, status: str, n_tokens: int, input_tokens: int, text: str) -> dict[str, Any]:
    done = status == "completed"
    message = {"id": "msg_replay", "type": "message", "role": "assistant", "status": "completed",
               "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]}
    return {
        "id": "resp_replay", "object": "response", "created_at": 1_700_000_000, "status": status, "model": model,
        "output": [message] if done else [], "parallel_tool_calls": True, "tool_choice": "auto", "tools": [],
        "error": None, "incomplete_details": None, "instructions": None, "metadata": {}, "temperature": 1.0,
        "top_p": 1.0, "service_tier": "default", "text": {"format": {"type": "text"}}, "truncation": "disabled",
        "usage": {"input_tokens": input_tokens, "input_tokens_details": {"cached_tokens": 0},
                  "output_tokens": n_tokens, "output_tokens_details": {"reasoning_tokens": 0},
                  "total_tokens": input_tokens + n_tokens} if done else None,
    }


def openai_responses_reply(model: str = "gpt-4.1-nano-2025-04-14", *, output_tokens: int = 2,
                           input_tokens: int = 9, tool_items: Sequence[dict[str, Any]] = ()) -> Reply:
    """A completed Responses API object; ``tool_items``: output items of hosted tool calls, before the message."""
    body = _response_object(model, "completed", output_tokens, input_tokens, "Hello there")
    body["output"] = [*tool_items, *body["output"]]
    return Reply.json(body)


def openai_responses_stream_reply(n_chunks: int = 200, model: str = "gpt-4.1-nano-2025-04-14", *,
                                  input_tokens: int = 9, **kwargs: Any) -> Reply:
    """A Responses API event stream with ``n_chunks`` ``response.output_text.delta`` events."""
    def events() -> Iterator[str]:
        seq = iter(range(1_000_000))

        def ev(kind: str, **fields: Any) -> str:
            return sse({"type": kind, "sequence_number": next(seq), **fields}, event=kind)

        text = " tok" * n_chunks
        yield ev("response.created", response=_response_object(model, "in_progress", 0, input_tokens, ""))
        yield ev("response.in_progress", response=_response_object(model, "in_progress", 0, input_tokens, ""))
        item = {"id": "msg_replay", "type": "message", "role": "assistant", "status": "in_progress", "content": []}
        yield ev("response.output_item.added", output_index=0, item=item)
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        yield ev("response.content_part.added", item_id="msg_replay", output_index=0, content_index=0, part=part)
        for _ in range(n_chunks):
            yield ev("response.output_text.delta", item_id="msg_replay", output_index=0, content_index=0,
                     delta=" tok", logprobs=[])
        yield ev("response.output_text.done", item_id="msg_replay", output_index=0, content_index=0, text=text,
                 logprobs=[])
        yield ev("response.content_part.done", item_id="msg_replay", output_index=0, content_index=0,
                 part={**part, "text": text})
        yield ev("response.output_item.done", output_index=0,
                 item={**item, "status": "completed", "content": [{**part, "text": text}]})
        yield ev("response.completed", response=_response_object(model, "completed", n_chunks, input_tokens, text))

    return Reply.stream(events, **kwargs)


def anthropic_message_reply(model: str = "claude-3-5-haiku-20241022", *, input_tokens: int = 9,
                            output_tokens: int = 2, cache_read: int = 0, cache_write: int = 0) -> Reply:
    return Reply.json({
        "id": "msg_replay", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": "Hello there"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_creation_input_tokens": cache_write, "cache_read_input_tokens": cache_read,
                  "service_tier": "standard"},
    }, headers={"request-id": "req_replay"})


def anthropic_stream_reply(n_chunks: int = 200, model: str = "claude-3-5-haiku-20241022", *, input_tokens: int = 9,
                           cache_read: int = 0, cache_write: int = 0, error_after: Optional[int] = None,
                           **kwargs: Any) -> Reply:
    """An Anthropic message stream with ``n_chunks`` text deltas; usage in message_start and (cumulative) in
    message_delta, as the API sends it. ``error_after=k`` sends an ``overloaded_error`` event after k deltas."""
    def events() -> Iterator[str]:
        start_usage = {"input_tokens": input_tokens, "cache_creation_input_tokens": cache_write,
                       "cache_read_input_tokens": cache_read, "output_tokens": 1, "service_tier": "standard"}
        yield sse({"type": "message_start", "message": {
            "id": "msg_replay", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": start_usage}}, "message_start")
        yield sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  "content_block_start")
        yield sse({"type": "ping"}, "ping")
        for i in range(n_chunks):
            if error_after is not None and i == error_after:
                yield sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")
                return
            yield sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " tok"}},
                      "content_block_delta")
        yield sse({"type": "content_block_stop", "index": 0}, "content_block_stop")
        yield sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                   "usage": {"input_tokens": input_tokens, "cache_creation_input_tokens": cache_write,
                             "cache_read_input_tokens": cache_read, "output_tokens": n_chunks}}, "message_delta")
        yield sse({"type": "message_stop"}, "message_stop")

    return Reply.stream(events, headers={"request-id": "req_replay_stream"}, **kwargs)


def openai_error_reply(status: int, message: str = "replayed error", *, type_: str = "invalid_request_error",
                       code: Optional[str] = None) -> Reply:
    return Reply.json({"error": {"message": message, "type": type_, "param": None, "code": code}}, status=status)


_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                          404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                          500: "api_error", 529: "overloaded_error"}


def anthropic_error_reply(status: int, message: str = "replayed error") -> Reply:
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return Reply.json({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_replay"},
                      status=status)


def _generated_reply(request: ReceivedRequest, n_chunks: int) -> Reply:
    """A plausible reply for any endpoint, shaped by what was asked (path, model, stream flag)."""
    body = request.json if isinstance(request.json, dict) else {}
    model = str(body.get("model") or "replay-model")
    stream = bool(body.get("stream"))
    n = int(request.headers.get("x-replay-chunks") or n_chunks)
    route = request.route
    if route.endswith("/messages/count_tokens"):
        return Reply.json({"input_tokens": 9})
    if route.endswith("/messages"):
        return anthropic_stream_reply(n, model) if stream else anthropic_message_reply(model)
    if route.endswith("/chat/completions"):
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        return openai_chat_stream_reply(n, model, include_usage=include) if stream else openai_chat_reply(model)
    if route.endswith("/responses"):
        return openai_responses_stream_reply(n, model) if stream else openai_responses_reply(model)
    if route.endswith("/embeddings"):
        return Reply.json({"object": "list", "model": model,
                           "data": [{"object": "embedding", "index": 0, "embedding": [0.0, 0.5, 1.0]}],
                           "usage": {"prompt_tokens": 9, "total_tokens": 9}})
    if route.endswith("/completions"):
        return Reply.json({"id": "cmpl-replay", "object": "text_completion", "created": 1_700_000_000,
                           "model": model, "choices": [{"index": 0, "text": " hi", "finish_reason": "stop",
                                                        "logprobs": None}],
                           "usage": {"prompt_tokens": 9, "completion_tokens": 1, "total_tokens": 10}})
    return Reply.json({"error": {"message": f"replay server: no generator for {route}"}}, status=404)


# ------------------------------------------------------------------------------------------------ server
class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; streamed bodies use chunked transfer encoding
    disable_nagle_algorithm = True  # small SSE writes would otherwise wait ~40 ms for delayed ACKs
    server: "_Server"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        request = ReceivedRequest(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, raw,
                                  time.monotonic())
        reply = self.server.owner._take(request)
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            # The client closed early (a test breaking out of a stream): nothing left to deliver.
            self.close_connection = True

    do_POST = do_GET = do_DELETE = do_PUT = do_PATCH = _handle  # noqa: N815

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        self.send_header("content-type", reply.content_type or "application/json")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunks is None:
            data = reply.body.encode() if isinstance(reply.body, str) else (reply.body or b"")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            if reply.first_chunk_delay:
                self.wfile.flush()
                time.sleep(reply.first_chunk_delay)
            self.wfile.write(data)
            self.wfile.flush()
            return
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self.end_headers()
        self.wfile.flush()
        for index, chunk in enumerate(reply.iter_chunks()):
            if reply.disconnect_after is not None and index >= reply.disconnect_after:
                self._drop_connection()
                return
            delay = reply.first_chunk_delay if index == 0 else reply.chunk_delay
            if delay:
                time.sleep(delay)
            data = chunk.encode() if isinstance(chunk, str) else chunk
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        if reply.disconnect_after is not None:
            self._drop_connection()
            return
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _drop_connection(self) -> None:
        """Close the socket mid-body, as a crashing upstream would: the client sees an incomplete chunked body."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: "ReplayServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients dropping keep-alive connections (closed clients, early-closed streams) are normal here."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class ReplayServer:
    """Serves queued :class:`Reply` objects on 127.0.0.1 (free port); records every request it receives."""

    def __init__(self, *, port: int = 0, generate: bool = True, generated_chunks: int = 20,
                 record_requests: bool = True) -> None:
        self.generate = generate
        self.record_requests = record_requests  # off for long benchmark runs: the list would only grow
        self.generated_chunks = generated_chunks
        self.requests: list[ReceivedRequest] = []
        self._queue: collections.deque[Reply] = collections.deque()
        self._lock = threading.Lock()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.owner = self
        self._thread: Optional[threading.Thread] = None

    # -------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> "ReplayServer":
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                            name="replay-vendor-server", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._httpd.server_close()

    def __enter__(self) -> "ReplayServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -------------------------------------------------------------------------------------------- queue
    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def enqueue_recording(self, recording: Mapping[str, Any] | str, **kwargs: Any) -> None:
        self.enqueue(Reply.from_recording(recording, **kwargs))

    def reset(self) -> None:
        """Forget queued replies and received requests (between tests)."""
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def _take(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            if self.record_requests:
                self.requests.append(request)
            if self._queue:
                reply = self._queue[0]
                if not reply.reuse:
                    self._queue.popleft()
                return reply
        if self.generate:
            return _generated_reply(request, self.generated_chunks)
        return Reply.json({"error": {"message": f"replay server: no reply enqueued for {request.method} "
                                                f"{request.path}", "type": "replay_error"}}, status=599)

    # -------------------------------------------------------------------------------------------- addresses
    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Also the ``azure_endpoint`` for ``openai.AzureOpenAI`` (the SDK adds ``/openai/deployments/...``)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        return self.url


# ------------------------------------------------------------------------------------------------ SDK clients
_SSL_CONTEXT: Any = None


def _ssl_context() -> Any:
    """One SSL context for every test client: building one costs ~30 ms, i.e. most of a client's construction,
    and the replay server is plain HTTP anyway."""
    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        import ssl

        _SSL_CONTEXT = ssl.create_default_context()
    return _SSL_CONTEXT


def openai_client(server: ReplayServer, *, is_async: bool = False, azure_deployment: Optional[str] = None,
                  api_version: str = "2024-10-21", **kwargs: Any) -> Any:
    """A real ``openai`` client (``AzureOpenAI`` when ``azure_deployment`` is given) aimed at the server,
    with ``api_key="test"`` and ``max_retries=0``."""
    import openai

    http_cls = openai.DefaultAsyncHttpx2Client if is_async else openai.DefaultHttpx2Client
    kwargs.setdefault("http_client", http_cls(verify=_ssl_context()))
    kwargs.setdefault("max_retries", 0)
    if azure_deployment is not None:
        cls = openai.AsyncAzureOpenAI if is_async else openai.AzureOpenAI
        return cls(api_key="test", azure_endpoint=server.url, api_version=api_version,
                   azure_deployment=azure_deployment, **kwargs)
    cls = openai.AsyncOpenAI if is_async else openai.OpenAI
    return cls(api_key="test", base_url=server.openai_base_url, **kwargs)


def anthropic_client(server: ReplayServer, *, is_async: bool = False, **kwargs: Any) -> Any:
    """A real ``anthropic`` client aimed at the server; native OpenTelemetry tracing left at the SDK default."""
    import anthropic

    http_cls = anthropic.DefaultAsyncHttpxClient if is_async else anthropic.DefaultHttpxClient
    kwargs.setdefault("http_client", http_cls(verify=_ssl_context()))
    kwargs.setdefault("max_retries", 0)
    cls = anthropic.AsyncAnthropic if is_async else anthropic.Anthropic
    return cls(api_key="test", base_url=server.anthropic_base_url, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve generated OpenAI/Anthropic responses on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=200, help="stream length when x-replay-chunks is not sent")
    args = parser.parse_args()
    with ReplayServer(port=args.port, generated_chunks=args.chunks, record_requests=False) as server:
        print(server.url, flush=True)  # the parent process reads the address from the first line
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
