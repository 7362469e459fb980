"""Log-once: an aicost problem on a hot path is reported once per kind, never once per call.

Every aicost module reports its swallowed errors and one-time warnings through :func:`log_once`, with a key
that names the module and the problem (``"metrics:record_call"``), so the host's logs are not flooded and the
set of remembered keys stays bounded.
"""

from __future__ import annotations

import logging

from . import _fork

logger = logging.getLogger("aicost")

_seen: set[str] = set()
_lock = _fork.lock()
_MAX_KEYS = 10_000  # keys may embed model names from requests: bound the memory, never the hot path


def log_once(key: str, level: int, message: str, *args: object, exc_info: bool = False) -> bool:
    """Log ``message`` the first time ``key`` is seen; True if it was logged."""
    if key in _seen:
        return False
    with _lock:
        if key in _seen:
            return False
        if len(_seen) >= _MAX_KEYS:
            _seen.clear()
        _seen.add(key)
    logger.log(level, message, *args, exc_info=exc_info)
    return True


def forget(key: str) -> None:
    """Let ``key`` be logged again (tests, and states that can recur: a store going down twice)."""
    with _lock:
        _seen.discard(key)


def warn_once(key: str, message: str, *args: object) -> None:
    log_once(key, logging.WARNING, message, *args)


def error_once(key: str, message: str, *args: object) -> None:
    """Log an internal aicost error with its traceback, once per key. Used wherever aicost swallows errors."""
    log_once(key, logging.ERROR, message, *args, exc_info=True)
