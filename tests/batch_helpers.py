"""Vendor-shaped Batch API replies for the loopback server: OpenAI ``/v1/batches`` and output files, Anthropic
``/v1/messages/batches`` and their JSONL results. Shapes follow the vendors' API references (the SDKs' ``Batch``,
``MessageBatch`` and ``MessageBatchIndividualResponse`` models)."""

from __future__ import annotations

import json
from typing import Any

from vendor_server import Reply


def openai_batch(batch_id: str, *, status: str = "validating", metadata: dict | None = None,
                 output_file_id: str | None = None, completed_at: int | None = None,
                 endpoint: str = "/v1/chat/completions") -> dict[str, Any]:
    return {"id": batch_id, "object": "batch", "endpoint": endpoint, "input_file_id": "file-in",
            "completion_window": "24h", "status": status, "created_at": 1764800000, "metadata": metadata,
            "output_file_id": output_file_id, "error_file_id": None, "completed_at": completed_at,
            "request_counts": {"total": 3, "completed": 2, "failed": 1}}


def openai_chat_result(line_id: str, custom_id: str, *, model: str = "gpt-4o-mini-2024-07-18", prompt: int = 1000,
                       completion: int = 200, usage: Any = None, created: int = 1764801000) -> dict[str, Any]:
    body = {"id": f"chatcmpl-{line_id}", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": usage if usage is not None else {"prompt_tokens": prompt, "completion_tokens": completion,
                                                      "total_tokens": prompt + completion},
            "service_tier": "default"}
    return {"id": line_id, "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": f"req_{line_id}", "body": body}, "error": None}


def openai_failed_result(line_id: str, custom_id: str) -> dict[str, Any]:
    return {"id": line_id, "custom_id": custom_id,
            "response": {"status_code": 400, "request_id": f"req_{line_id}",
                         "body": {"error": {"message": "bad request", "type": "invalid_request_error"}}},
            "error": None}


def openai_expired_result(line_id: str, custom_id: str) -> dict[str, Any]:
    return {"id": line_id, "custom_id": custom_id, "response": None,
            "error": {"code": "batch_expired", "message": "This request could not be executed before the window"}}


def jsonl_reply(lines: list[dict[str, Any]], content_type: str = "application/octet-stream") -> Reply:
    return Reply(body="".join(json.dumps(line) + "\n" for line in lines), content_type=content_type)


def anthropic_batch(batch_id: str, *, ended: bool = False, results_url: str | None = None,
                    ended_at: str = "2026-12-01T01:00:00Z") -> dict[str, Any]:
    return {"id": batch_id, "type": "message_batch", "processing_status": "ended" if ended else "in_progress",
            "created_at": "2026-12-01T00:00:00Z", "expires_at": "2026-12-02T00:00:00Z",
            "ended_at": ended_at if ended else None, "archived_at": None, "cancel_initiated_at": None,
            "request_counts": {"processing": 0 if ended else 4, "succeeded": 2 if ended else 0,
                               "errored": 1 if ended else 0, "canceled": 0, "expired": 1 if ended else 0},
            "results_url": results_url}


def anthropic_succeeded(custom_id: str, *, model: str = "claude-sonnet-4-5-20250929", input_tokens: int = 1000,
                        output_tokens: int = 200, cache_read: int = 0, usage: Any = None) -> dict[str, Any]:
    return {"custom_id": custom_id, "result": {"type": "succeeded", "message": {
        "id": f"msg_{custom_id}", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": "ok"}], "stop_reason": "end_turn", "stop_sequence": None,
        "usage": usage if usage is not None else {"input_tokens": input_tokens, "output_tokens": output_tokens,
                                                  "cache_read_input_tokens": cache_read,
                                                  "cache_creation_input_tokens": 0}}}}


def anthropic_unbilled(custom_id: str, kind: str) -> dict[str, Any]:
    result: dict[str, Any] = {"type": kind}
    if kind == "errored":
        result["error"] = {"type": "error", "error": {"type": "invalid_request_error", "message": "bad"}}
    return {"custom_id": custom_id, "result": result}
