"""What a forked child must not take over from its parent.

``os.fork()`` copies the whole process but only the thread that called it. The child therefore starts with the
parent's running totals (cost counters, budget spend, journalled settlements, calls in flight), with background
threads that no longer run, and with locks that another parent thread may have held at that instant, which
nothing in the child would ever release: its first call would wait on one for ever. Left as they are, the child
re-exports the parent's totals as its own (a backend summing the processes counts them twice), applies the
parent's journal to a shared store a second time, and waits on calls that will never finish.

This module is the one place that handles it, with three kinds of registration:

* every lock, condition and event aicost creates comes from :func:`lock`, :func:`rlock`, :func:`condition` or
  :func:`event`; in the child each one is made free (unlocked, no waiters) in place, so every holder of a
  reference sees the fresh one;
* module state registers a function with :func:`on_fork_in_child`;
* an object registers with :func:`reset_in_child`; its ``_after_fork_in_child()`` forgets what belongs to the
  parent (and marks its background thread as not started: the child starts its own when it needs one).

In the child the locks are freed first (so the resets can take them, and log), then the module functions run in
the order registered, then the objects' methods in no particular order (each forgets only its own state, so no
order is needed). The parent keeps its state and records it once. Registration of locks and objects is weak: one
that is garbage goes from the set by itself. Registering costs a lock ~4 k instructions: a lock made per request
(a scope, a call collector) is shared by its class instead.
"""

from __future__ import annotations

import os
import threading
import weakref
from typing import Any, Callable, TypeVar

T = TypeVar("T")

_objects: "weakref.WeakSet[Any]" = weakref.WeakSet()
_primitives: "weakref.WeakSet[Any]" = weakref.WeakSet()  # locks, conditions, events: freed in place
_functions: list[Callable[[], None]] = []


def _freed_in_child(primitive: T) -> T:
    _primitives.add(primitive)
    return primitive


def lock() -> Any:
    """A ``threading.Lock`` that is free in every process forked from this one."""
    return _freed_in_child(threading.Lock())


def rlock() -> Any:
    """A ``threading.RLock`` that is free in every process forked from this one."""
    return _freed_in_child(threading.RLock())


def condition() -> threading.Condition:
    """A ``threading.Condition`` (on its own lock) that is free and has no waiters in a forked child."""
    return _freed_in_child(threading.Condition(threading.Lock()))


def event() -> threading.Event:
    """A ``threading.Event`` whose internal lock is free in a forked child (its flag is kept)."""
    return _freed_in_child(threading.Event())


def on_fork_in_child(reset: Callable[[], None]) -> Callable[[], None]:
    """Call ``reset()`` (a module's function: kept for the life of the process) in every forked child."""
    _functions.append(reset)
    return reset


def reset_in_child(obj: T) -> T:
    """Call ``obj._after_fork_in_child()`` in every process forked from this one after now; returns ``obj``."""
    _objects.add(obj)
    return obj


def _after_fork_in_child() -> None:
    # Only the forking thread exists here: nothing changes the sets meanwhile.
    for primitive in list(_primitives):
        try:
            primitive._at_fork_reinit()  # what the standard library does to its own locks (logging, threading)
        except Exception:  # out of memory: the others are still freed
            pass
    for name, reset in [(f.__module__, f) for f in _functions] + [(type(o).__name__, o._after_fork_in_child)
                                                                  for o in list(_objects)]:
        try:
            reset()
        except Exception:  # one failure must not leave the others with the parent's state
            from ._log import error_once  # not at import: the log's own lock comes from this module

            error_once(f"fork:{name}", "aicost: could not reset %s in a forked child", name)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
