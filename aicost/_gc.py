"""Work the cyclic garbage collector would otherwise run wherever the thread happened to be.

A stream the application dropped in a reference cycle is finished by the cyclic collector, and the collector runs
inside whatever allocation crossed its threshold: perhaps while that thread holds a lock the finish needs (the
memory budget store's, a span processor's, the single-flight cache's). Taken again by its holder, a plain lock
waits for ever, and the host app hangs. So what :func:`collecting` says is being run by a collection on this
thread is handed to :func:`defer` instead, and a daemon thread runs it a moment later, holding nothing. Finalizers
that finish a call hand it over the same way (an Anthropic stream manager dropped without being entered).

The hook costs every collection a Python call (about 3 k instructions with its ``info`` dict), so it is in
``gc.callbacks`` only while some call could be finished by a collection (:func:`watch`: a stream, or a response
whose close ends the call, not finished yet); a process making calls that are not streams never pays it.
``queue.SimpleQueue.put`` is reentrant (it is made for ``__del__`` and weakref callbacks), so deferring takes no
lock the interrupted code could hold. The worker is started by :func:`install` (``aicost.instrument()``), never at
interpreter shutdown. What is still queued at exit runs on the exiting thread (:func:`drain`), and the job the
worker is running is waited for (at most :data:`_WAIT_S`), before the ledger and the metrics flush what it
records. A forked child has no worker: its deferred work runs at its next call's finish, or at its exit.
"""

from __future__ import annotations

import atexit
import gc
import queue
import sys
import threading
from typing import Any, Callable

from . import _fork
from ._log import error_once, warn_once

__all__ = ["install", "watch", "unwatch", "collecting", "defer", "drain"]

_collecting: int | None = None  # the thread id of the collection under way (the collector runs one at a time)
_hooked = False  # _on_collection is in gc.callbacks: what _collecting says counts only then (see _hook)
_installed = False  # install() has run (it stays for the life of the process)
_watched = 0  # calls a collection could finish (watch() less unwatch()): the hook is in gc.callbacks while > 0
_jobs: "queue.SimpleQueue[Callable[[], None]]" = queue.SimpleQueue()
_worker: threading.Thread | None = None
orphaned = False  # jobs were deferred with no worker to run them (a forked child): the next finish drains
_state_lock = _fork.lock()
_get_ident = threading.get_ident
_WAIT_S = 5.0  # the longest the exit and uninstrument() wait for the job the worker is running
_stuck: "_Fence | None" = None  # the fence a drain stopped waiting for: not waited for again until it is passed


def _on_collection(phase: str, info: Any) -> None:
    """``gc.callbacks``: note which thread is collecting, from start to stop."""
    global _collecting
    _collecting = _get_ident() if phase == "start" else None


def _hook(on: bool) -> None:
    """Put the hook in ``gc.callbacks`` or take it out (under ``_state_lock``).

    The hook takes no lock (it runs inside the collector), so taking it out can race a collection on another
    thread: that thread may have begun calling it for "start" and store its id *after* this cleared it, then,
    the hook gone, never call it for "stop". Its id would stay, and every later finish on that thread be
    handed to the worker as if inside a collection: the call's span ended a moment after the call returned,
    its context left attached. So what the hook stored counts only while it is in ``gc.callbacks``
    (``_hooked``, cleared before it is taken out), and putting it back clears what a stale store left (after
    it is in: a store still to come is by a collection that will now call it for "stop")."""
    global _collecting, _hooked
    if on:
        if _on_collection not in gc.callbacks:
            gc.callbacks.append(_on_collection)
            _hooked = True
            _collecting = None
        return
    _hooked = False
    try:
        gc.callbacks.remove(_on_collection)
    except ValueError:
        pass
    _collecting = None


def watch() -> None:
    """A call that a collection could finish has begun (a stream is watched); :func:`unwatch` when it finishes."""
    global _watched
    with _state_lock:
        _watched += 1
        if _watched == 1 and _installed:
            _hook(True)


def unwatch() -> None:
    global _watched
    with _state_lock:
        if _watched > 0:  # (a forked child finishing a call its parent began counts from 0)
            _watched -= 1
            if _watched == 0:
                _hook(False)


def collecting() -> bool:
    """Whether this thread is inside a garbage collection (known while :func:`watch` has a call watched, after
    :func:`install`)."""
    return _hooked and _collecting is not None and _collecting == _get_ident()


def defer(job: Callable[[], None]) -> None:
    """Run ``job`` later on the worker, outside the collection. Takes no lock: safe inside the collector."""
    global orphaned
    _jobs.put(job)
    if _worker is None:
        orphaned = True


def drain(wait: float = _WAIT_S) -> None:
    """Run every job queued, here and now, then wait (at most ``wait`` seconds) for the one the worker took from
    the queue before: at exit and at ``uninstrument()`` what it records must be in before the ledger closes."""
    global orphaned, _stuck
    orphaned = False
    _run_queued()
    worker = _worker
    if wait > 0 and worker is not None and worker is not threading.current_thread() and worker.is_alive() and (
            _stuck is None or _stuck.passed.is_set()):  # a job that outlasted one wait is not waited for again
        fence = _Fence()  # the worker runs one job at a time, in order: this one after the one it runs
        _jobs.put(fence)
        if not fence.passed.wait(wait):
            _stuck = fence
            warn_once("gc:wait", "aicost: a call the garbage collector reached was still being finished after "
                      "%g s; it may not be recorded", wait)
        _run_queued()  # what that job deferred in turn


class _Fence:
    """A job that tells :func:`drain` the worker has got past the jobs queued before it: only the worker runs it
    (a draining thread drops one it meets: a fence it ran would say nothing of the worker)."""

    __slots__ = ("passed",)

    def __init__(self) -> None:
        self.passed = _fork.event()

    def __call__(self) -> None:
        self.passed.set()


def _run_queued() -> None:
    while True:
        try:
            job = _jobs.get_nowait()
        except queue.Empty:
            return
        if type(job) is not _Fence:
            _run(job)


def _run(job: Callable[[], None]) -> None:
    try:
        job()
    except Exception:
        error_once("gc:deferred", "aicost: could not finish a call the garbage collector had reached")


def _work() -> None:
    while True:
        _run(_jobs.get())


def install() -> None:
    """Start the worker and watch collections while :func:`watch` says a call could be finished by one
    (idempotent). Both stay for the life of the process, through ``uninstrument()``: a call in flight then is
    finished as before, and may still be dropped in a cycle. The exit drain is registered again each time so that
    it runs before the exit flushes registered until now (``atexit`` runs the last registered first); the
    ledger's, registered when it is first configured, drains first itself."""
    global _worker, _installed
    with _state_lock:
        _installed = True
        if _watched:
            _hook(True)
        if _worker is None and not sys.is_finalizing():
            worker = threading.Thread(target=_work, name="aicost-gc-finish", daemon=True)
            try:
                worker.start()
            except RuntimeError:  # no thread can start: deferred jobs run at the next finish or at exit
                pass
            else:
                _worker = worker
    atexit.unregister(drain)
    atexit.register(drain)


@_fork.on_fork_in_child
def _after_fork_in_child() -> None:
    """The parent's queued jobs are the parent's calls; the child has no worker (threads do not survive fork)."""
    global _jobs, _worker, orphaned, _stuck, _watched
    _jobs = queue.SimpleQueue()
    _worker = None
    _stuck = None
    orphaned = False
    _watched = 0  # the parent's streams are the parent's to finish
    _hook(False)
