"""Log-once helpers: an aicost bug on a hot path must not flood the host's logs."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("aicost")

_seen: set[str] = set()
_lock = threading.Lock()


def _first(key: str) -> bool:
    if key in _seen:
        return False
    with _lock:
        if key in _seen:
            return False
        _seen.add(key)
        return True


def warn_once(key: str, message: str, *args: object) -> None:
    if _first(key):
        logger.warning(message, *args)


def error_once(key: str, message: str, *args: object) -> None:
    """Log an internal aicost error with its traceback, once per key. Used wherever aicost swallows errors."""
    if _first(key):
        logger.error(message, *args, exc_info=True)
