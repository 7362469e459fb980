"""What a forked child must not take over from its parent.

``os.fork()`` copies the whole process but only the thread that called it. The child therefore starts with the
parent's running totals (cost counters, budget spend, journalled settlements, calls in flight) and with locks that
another parent thread may have held at that instant, which nothing in the child would ever release. Left as they
are, the child re-exports the parent's totals as its own (a backend summing the processes counts them twice),
applies the parent's journal to a shared store a second time, and waits on calls that will never finish.

Objects holding such state register here; in the child each one's ``_after_fork_in_child()`` gives it fresh locks
and forgets what belongs to the parent. The parent keeps its state and records it once. Registration is weak: an
object that is garbage goes from the list by itself.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, TypeVar

from ._log import error_once

T = TypeVar("T")

_objects: "weakref.WeakSet[Any]" = weakref.WeakSet()


def reset_in_child(obj: T) -> T:
    """Call ``obj._after_fork_in_child()`` in every process forked from this one after now; returns ``obj``."""
    _objects.add(obj)
    return obj


def _after_fork_in_child() -> None:
    for obj in list(_objects):  # only the forking thread exists here: nothing changes the set meanwhile
        try:
            obj._after_fork_in_child()
        except Exception:  # one object's failure must not leave the others with the parent's state
            error_once(f"fork:{type(obj).__name__}", "aicost: could not reset %s in a forked child",
                       type(obj).__name__)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
