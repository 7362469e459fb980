"""Run test code in a real forked child of the test process, and get back what it reports."""

from __future__ import annotations

import json
import os
import select
import signal
import time
import traceback


def run_forked(child, timeout_s: float = 20.0) -> list[dict]:
    """Run ``child(send)`` in a forked process; return the JSON messages it sent. The child always leaves through
    ``os._exit`` (pytest must not go on running in it) and is killed if it has not finished within ``timeout_s``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            os.close(read_fd)

            def send(message: dict) -> None:
                os.write(write_fd, (json.dumps(message) + "\n").encode())

            try:
                child(send)
                code = 0
            except BaseException:
                send({"error": traceback.format_exc()})
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks, finished = [], False
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            chunk = os.read(read_fd, 65536)
            if not chunk:
                finished = True
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if not finished:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    messages = [json.loads(line) for line in b"".join(chunks).decode().splitlines()]
    errors = [m["error"] for m in messages if "error" in m]
    assert not errors, errors[0]
    assert finished, f"forked child did not finish within {timeout_s}s (hung?); it reported {messages}"
    assert os.waitstatus_to_exitcode(status) == 0, messages
    return messages
