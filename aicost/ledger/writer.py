"""The background writer: calls hand their rows to a bounded queue; one thread stores them in batches.

Why this shape:

* **Never on the call's path.** The hook listener (:meth:`LedgerWriter.on_call`) copies a few values into a
  tuple and appends it to a ``deque`` (about a microsecond; ``benchmarks/ledger_enqueue.py``). Building rows,
  rollups and SQL happens on the writer thread. A full queue drops the row, counted in :meth:`stats` and logged
  once: the app is never slowed or failed by its ledger.
* **One thread uses the database.** The writer thread starts on the first row, never while the interpreter is
  finalizing and never once the exit has begun. :meth:`LedgerWriter.flush` and :meth:`LedgerWriter.close` ask it
  and wait for it on a condition. A forked child starts its own thread and connection on its first row (the
  parent's queue stays the parent's).
* **Nothing lost that can be kept, and exit bounded.** ``close(timeout_s)`` and the exit (10 s at most, for all
  writers together) give the writer thread a deadline: it writes what is queued until then, begins no write
  after it, and a write under way has its waits bounded by then (the store's :meth:`~LedgerStore.time_limit`:
  another process's lock on SQLite, each statement on PostgreSQL; a write that ends late is also spilled, and
  stored once). A write begun before the deadline was set, which no limit bounds (waiting for another
  connection's lock), is cut short at the deadline (:meth:`~LedgerStore.cut`; counted ``writes_cut``, its rows
  spilled). A reopen of the store (after an outage closed it, or in a forked child) waits for a lock no longer
  than :data:`_REOPEN_WAIT_S`, nor past the deadline: the thread ends soon after it. What it has
  not written (batches it took, from the rows it built, and the queue) the closing side spills, encoding no
  more than the spill file holds; Ctrl-C while the exit waits still spills. A row queued once closing has begun
  is dropped, counted and logged. When the database is unreachable, a batch goes to a local spill file (JSON lines, bounded
  by ``spill_max_bytes``; past it rows are dropped, counted and logged) and is replayed, oldest first, once a
  write succeeds again; retries back off up to 30 s. A replay stopped early keeps the rest on disk. Inserts are
  idempotent by span id, so a replay that was half written, or a batch both written and spilled, never double
  counts. A spill file left by a process that died (or that it was replaying) is adopted and replayed by the
  next writer of the same ledger.
* **A bad row takes no good row with it.** When the database refuses a batch's data (:class:`LedgerRefused`: a
  value it cannot hold or sum, not an outage), retrying would fail the same way for ever, and every later batch
  would wait behind it in the spill file. The batch is written in halves instead, each refused half halved again
  (each part its own transaction; rows stored by a part are skipped by any later write of them), so the rows
  the database takes are written and only a row refused alone is dropped, counted (``dropped_refused``) and
  logged once with the reason, never a value. A spill file being replayed is written the same way.
* **Other features' rows ride along.** A feature that writes its own tables (``aicost.pools``' closed
  intervals) queues :class:`Record` objects with :meth:`LedgerWriter.add`: same queue, same spill and replay,
  in order. A record stores itself idempotently and says how it is spilled (``to_dict`` / ``from_dict``). What
  such a feature still holds at exit it hands over in the exit's flush, before the writers close
  (:func:`before_exit`).
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import itertools
import json
import logging
import math
import numbers
import os
import queue
import re
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from .. import _fork, _gc
from .._log import forget, log_once
from ..errors import ConfigurationError, ConfigurationTypeError
from ..hooks import CallResult
from .capture import call_item, event_item, row_from_item
from .identity import ledger_identity
from .row import FeatureRun, LedgerRow, bounded_id
from .store import (_CUT_MIN_S, LedgerRefused, LedgerStore, LedgerUnavailable, PreparedBatch, open_store,
                    redact_url)

__all__ = ["LedgerWriter", "Record"]

logger = logging.getLogger("aicost.ledger")

_MAX_BACKOFF_S = 30.0
_EXIT_FLUSH_S = 10.0  # the exit's bound, for all writers together: what is not written by then is spilled
# How long close() and the exit wait, past their deadline, for a spill the writer thread has begun (a batch it could
# not write, taken back from the closing side: an append to a local file, well under this)
_SPILL_WAIT_S = 5.0
# How long the writer thread's reopen of a SQLite ledger (after an outage closed it, or in a forked child) waits for
# another process's lock on the file, at most: an outage then (spilled, retried), never a thread held 30 s, past
# close()'s or the exit's deadline. In WAL mode an open only reads: what holds it is a lock that may last (a
# connection holding the file exclusively), not another writer's transaction. As long as PostgreSQL's connect.
_REOPEN_WAIT_S = 5.0
# How long close() and the exit wait, past their deadline, for a write they cut short (begun before the deadline was
# set: LedgerStore.cut) to end, asking again meanwhile (PostgreSQL loses a cancel that arrives between statements)
_CUT_WAIT_S = 2.0
PAIR_INTERVAL_S = 60.0  # how often the writer thread looks for rows to sum into the pair cells (_sum_pairs)
_MAX_BATCH_FACTOR = 4  # a backlog's batches grow up to this factor times batch_size (see _drain)


class Record:
    """Rows of a feature's own ledger tables, queued, spilled and replayed like call rows. Subclasses store
    themselves idempotently (a replayed record changes nothing already stored) and round-trip through JSON."""

    def store_into(self, store: LedgerStore) -> None:
        """Write in one transaction; raise LedgerUnavailable when the database cannot be reached, LedgerRefused
        when it refuses the record's data (the record is then dropped, counted)."""
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Record":
        raise NotImplementedError


def _record_line(record: Record) -> str:
    kind = type(record)
    return json.dumps({"record": f"{kind.__module__}:{kind.__qualname__}", "data": record.to_dict()},
                      separators=(",", ":"))


def _record_from(data: dict[str, Any]) -> Record:
    import importlib

    module, _, name = str(data["record"]).partition(":")
    if not module.startswith("aicost."):  # a spill file names aicost's own record types, nothing else
        raise ValueError(f"not an aicost record type: {data['record']!r}")
    kind = getattr(importlib.import_module(module), name)
    if not (isinstance(kind, type) and issubclass(kind, Record)):
        raise ValueError(f"not a ledger record type: {data['record']!r}")
    return kind.from_dict(data["data"])


class _Batch:
    """Items the writer thread took off the queue for one write, and their rows once built: what the closing side
    spills when the write has not begun by the deadline, without building the rows a second time."""

    __slots__ = ("items", "built")

    def __init__(self, items: list) -> None:
        self.items = items
        self.built: tuple[list, list, list] | None = None  # its rows, runs and records (set by _prepare)


def _count(name: str, value: Any, least: int, what: str) -> int:
    """A writer setting that counts rows or bytes: an int (a bool is not one) of at least ``least``."""
    accepted = f"ledger writer: {name} must be an int of at least {least}, got {value!r} ({what})"
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigurationTypeError(accepted)
    if value < least:
        raise ConfigurationError(accepted)
    return int(value)


def _seconds(name: str, value: Any, what: str) -> float:
    """A writer setting in seconds: a finite number (a bool is not one) greater than 0."""
    accepted = f"ledger writer: {name} must be a number of seconds greater than 0, got {value!r} ({what})"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigurationTypeError(accepted)
    if not (math.isfinite(value) and value > 0):
        raise ConfigurationError(accepted)
    return float(value)


def _file_path(name: str, value: Any, what: str) -> Path | None:
    """A writer setting that names a file: None (the default place), or a str or os.PathLike of one, with a file
    name (a directory alone, "" or "/", would name the files "-<pid>.jsonl")."""
    if value is None:
        return None
    accepted = f"ledger writer: {name} must be a file path (a str or os.PathLike), got {value!r} ({what})"
    try:
        path = os.fspath(value)
    except TypeError:
        path = None
    if not isinstance(path, str):  # (bytes too: pathlib refuses them)
        raise ConfigurationTypeError(accepted)
    if not Path(path).name:
        raise ConfigurationError(accepted)
    return Path(path)


class LedgerWriter:
    """Queue + background writer for one ledger URL. Thread-safe; one per process and URL is enough.

    Only the writer thread uses the database (the constructor opens it, to refuse a bad URL at configure time,
    before the thread exists). :meth:`flush` and :meth:`close` ask that thread and wait for it on a condition;
    what it has not written by :meth:`close`'s (or the exit's) deadline, the closing side spills."""

    def __init__(self, url: str, *, setting: str = "instrument(ledger=...) / AICOST_LEDGER", max_queue: int = 100_000,
                 batch_size: int = 5_000, flush_interval_s: float = 0.5, spill_path: str | os.PathLike[str] | None = None,
                 spill_max_bytes: int = 64 * 1024 * 1024, prepare_ahead: bool = True) -> None:
        # (Fewer than 30 attributes: past that, CPython 3.11 stops sharing instance dict keys, and each attribute
        # on_call reads costs more: ~380 instructions per call measured at 30, benchmarks/ledger_enqueue.py.)
        # Checked before the database is opened: a batch of 0 rows spun the writer thread, an interval of 0
        # busy-waited, a queue of 0 or less dropped every row. Nothing is clamped: a bad setting is the caller's.
        self.max_queue = _count("max_queue", max_queue, 1, "the rows queued at most before rows are dropped")
        self.batch_size = _count("batch_size", batch_size, 1, "the rows written per batch")
        self.flush_interval_s = _seconds("flush_interval_s", flush_interval_s,
                                         "how long queued rows wait for a batch to fill")
        self.spill_max_bytes = _count("spill_max_bytes", spill_max_bytes, 0,
                                      "the spill file's bound while the database is down; 0: no spill file")
        spill_path = _file_path("spill_path", spill_path, "the spill file's directory and stem")
        self.url = url
        self.prepare_ahead = bool(prepare_ahead)  # a second thread prepares the next batch (see _drain)
        self._setting = setting
        self._queue: collections.deque = collections.deque()
        # Guards what the writer thread and the threads waiting for it share (below). Held only for moments, never
        # across a write or a file's I/O: the writer waits on it for work, flush() and close() for the writer.
        self._cond = _fork.condition()
        self._spill_lock = _fork.lock()  # one append to the spill file at a time (its bound), or a replay taking it
        self._thread: threading.Thread | None = None
        self._ended = False  # the writer thread has ended (it closed the database)
        self._preparer: _Preparer | None = None
        self._closed = False  # close() or the exit began: rows are refused (dropped_closed)
        self._exiting = False  # the exit began: no thread is started any more, not even the preparing one
        self._stop_by: float | None = None  # close()'s or the exit's deadline: no write begins after it
        self._given_up = False  # the closing side took what was left to spill (_give_up): the writer takes nothing
        self._taken: list[_Batch] = []  # taken off the queue by the writer thread, not yet stored or spilled
        self._spilling = 0  # batches the writer thread took back from _taken to spill itself, not spilled yet
        self._asked = self._answered = 0  # flush requests, and the last one a finished drain answered
        self._retry_at = 0.0
        self._backoff = 1.0
        self._counts = collections.Counter()
        self._enqueued = 0
        self._check_spill = True  # a replay pass is due: something was spilled, or a first look for files left
        self._store: LedgerStore | None = None
        self._spill_dir, self._spill_stem, self._earlier_stems = _spill_location(url, spill_path)
        try:
            self._store = open_store(url, setting=setting)  # bad URL / missing database: raised here, at configure
        except LedgerUnavailable as exc:
            self._down(exc)
        _writers.add(self)
        _fork.reset_in_child(self)

    # -- the calling thread ---------------------------------------------------------------------------------------
    def on_call(self, result: CallResult) -> None:
        """Hook listener (``aicost.hooks.add_listener``): queue the call's row. Never raises, never blocks.

        The common case is inlined (one Python call less per vendor call): room in the queue, thread running.
        ``_closed`` is looked at again after the append: a close() may have taken the queue in between."""
        try:
            queue = self._queue
            if len(queue) < self.max_queue and self._thread is not None and not self._closed:
                queue.append(call_item(result))
                self._enqueued += 1
                if len(queue) >= self.batch_size or self._closed:
                    self._nudge()
                return
            self._put(call_item(result))
        except Exception:
            log_once("ledger:enqueue", logging.ERROR, "aicost ledger: could not queue a call's row", exc_info=True)

    def on_event(self, event: Any) -> None:
        """Event listener (``aicost.hooks.add_event_listener``): cache hits and finished feature runs."""
        try:
            item = event_item(event)
            if item is not None:
                self._put(item)
        except Exception:
            log_once("ledger:enqueue", logging.ERROR, "aicost ledger: could not queue a row", exc_info=True)

    def add(self, rows: Iterable[LedgerRow | FeatureRun | Record]) -> None:
        """Queue ready-made rows (the span exporter's path) or records, with the same bounds and accounting."""
        for row in rows:
            self._put(row)

    def count_unreadable(self) -> None:
        """Count a row a feeder could not make (a span the span exporter cannot read): it never reaches the
        queue, so nothing else would count it; ``dropped_unreadable`` in :meth:`stats`."""
        self._counts["dropped_unreadable"] += 1

    def _put(self, item: Any) -> None:
        if self._closed:
            self._drop_closed(1)
            return
        if len(self._queue) >= self.max_queue:
            self._counts["dropped_queue_full"] += 1
            log_once("ledger:queue-full", logging.WARNING, "aicost ledger: the queue is full (%d rows); rows are "
                     "being dropped (counted in the writer's stats())", self.max_queue)
            return
        self._queue.append(item)
        self._enqueued += 1
        if self._thread is None:
            self._start()
        if len(self._queue) >= self.batch_size or self._closed:
            self._nudge()

    def _nudge(self) -> None:
        """Wake the writer thread: a batch is ready, or the row just queued raced close(). If the closing side has
        taken what was left already, that row (and any other such) is dropped here, counted and logged."""
        with self._cond:
            if not self._given_up:
                self._cond.notify_all()
                return
            late = self._pop(len(self._queue))
        self._drop_closed(len(late))

    def _drop_closed(self, n: int) -> None:
        if n:
            self._counts["dropped_closed"] += n
            log_once("ledger:closed", logging.WARNING, "aicost ledger: a row arrived after the ledger was closed "
                     "(uninstrument, or the exit's flush); it is dropped (counted in the writer's stats())")

    def _start(self) -> bool:
        """Start the writer thread if it is not running; False when there is none to do the work: never one started
        once the exit has begun (the exit's flush) or the interpreter is finalizing, and none after the writer's
        has ended."""
        with self._cond:
            if self._thread is not None:
                return not self._ended
            if self._exiting or _exit_begun or self._given_up or sys.is_finalizing():
                return False
            thread = threading.Thread(target=self._run, name="aicost-ledger", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                return False
            self._thread = thread
            return True

    # -- the writer thread ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        pairs_due = time.monotonic() + PAIR_INTERVAL_S  # not in a first burst of batches
        try:
            while True:
                with self._cond:
                    if not (self._closed or self._asked > self._answered or len(self._queue) >= self.batch_size):
                        self._cond.wait(self.flush_interval_s)
                    asked, closing = self._asked, self._closed
                try:
                    self._drain()
                except Exception:
                    log_once("ledger:writer", logging.ERROR, "aicost ledger: the writer failed; retrying",
                             exc_info=True)
                with self._cond:
                    self._answered = asked
                    self._cond.notify_all()
                if closing:  # a drain begun once close() had begun: the queue is written, or the deadline passed
                    return
                pairs_due = self._sum_pairs(pairs_due)
        finally:
            self._end()

    def _end(self) -> None:
        """The writer thread's last act: stop the preparing thread, close the database, tell the closing side."""
        with self._cond:
            preparer, self._preparer = self._preparer, None
        if preparer is not None:
            preparer.stop()
        self._close_store()
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            try:
                store.close()
            except Exception:
                pass
        _writers.discard(self)

    def _sum_pairs(self, due: float) -> float:
        """Behind the batches, on the writer thread, after a drain has answered its flushes (never in a close or
        the exit's): one chunk of the rows already stored summed into the pair cells
        (:meth:`LedgerStore.compact_pairs`, :mod:`aicost.ledger.pairs`), once ``due``: every
        :data:`PAIR_INTERVAL_S`, or at the next wake while chunks are left, unless a batch's worth of rows is
        queued, for at most one interval past ``due`` (a writer kept busy would never sum). Returns when it is
        next due. A failure
        is logged once and counted (``pair_errors``); the rows stay in the ledger, a later chunk sums them, and
        reports read them raw meanwhile."""
        now = time.monotonic()
        if now < due or now < self._retry_at or self._closed or self._store is None:
            return due
        if len(self._queue) >= self.batch_size and now < due + PAIR_INTERVAL_S:
            return due  # a batch's worth waits: batches first (a chunk holds the thread a second or two), for a while
        try:
            if self._store.compact_pairs():
                self._counts["pair_chunks"] += 1
                return now  # more to sum: the next wake, after its batches
        except LedgerUnavailable:
            pass  # the next batch finds the outage and spills
        except Exception:
            self._counts["pair_errors"] += 1
            log_once("ledger:pairs", logging.ERROR, "aicost ledger: summing rows into the pair cells failed; "
                     "reports read those rows raw until a later try succeeds", exc_info=True)
        return now + PAIR_INTERVAL_S

    def _drain(self) -> None:
        """Write the queue in batches. While one batch is in the database, the next is prepared (rows built and
        encoded and staged: :meth:`LedgerStore.prepare`) on the preparing thread; the two overlap
        because the database drivers release the GIL while the database works. A backlog is written in batches
        that double up to 4 x ``batch_size`` (a rollup cell is updated once per batch, so on PostgreSQL a batch of
        20,000 costs the server a fifth less per row than four of 5,000) and shrink again, to half of what is
        left, towards its end. Once close()'s or the exit's deadline has passed no batch is taken, and none
        taken is begun (:meth:`_store_taken`): the closing side spills them."""
        if self._check_spill:  # rows spilled here, or a first look for files left by a process that died
            self._replay_spill()
        ahead: tuple[_Batch, Future] | None = None
        size = self.batch_size
        while True:
            nxt = None
            batch = self._take(size)
            if batch is not None:
                size = min(2 * size, _MAX_BATCH_FACTOR * self.batch_size)
                nxt = batch, self._prepare_soon(batch, pipeline=ahead is not None or bool(self._queue))
            if ahead is not None:
                try:
                    self._store_taken(ahead[0], *ahead[1].result())
                except BaseException:
                    # A failure past the write's own handling (a bug). The next batch, taken and being prepared,
                    # goes back to be written later; this one is spilled (replayed later, it holds up no other)
                    if nxt is not None and self._release(nxt[0]):
                        with self._cond:
                            self._queue.extendleft(reversed(nxt[0].items))
                    self._spill_taken(ahead[0], ahead[0].items)
                    raise
            if nxt is None:
                return
            ahead = nxt

    def _take(self, size: int) -> _Batch | None:
        """The next batch from the queue (None: the queue is empty, or the close / exit deadline has passed), kept
        in ``_taken`` until stored or spilled. Per batch, not per row: the lock costs nothing measurable."""
        with self._cond:
            if not self._queue or self._past_stop():
                return None
            # at most half of what is left, so the end of a backlog goes in shrinking batches and the
            # last write, which nothing overlaps, is short
            batch = _Batch(self._pop(min(size, max(self.batch_size, len(self._queue) // 2), len(self._queue))))
            self._taken.append(batch)
        return batch

    def _pop(self, n: int) -> list:
        """The first ``n`` items off the queue (under ``_cond``: the calls only append)."""
        pop = self._queue.popleft
        return [pop() for _ in range(n)]

    def _release(self, batch: _Batch) -> bool:
        """Take ``batch`` out of ``_taken``: True if it was still there (the closing side has not spilled it)."""
        with self._cond:
            return self._release_held(batch)

    def _release_held(self, batch: _Batch) -> bool:
        """:meth:`_release`, under ``_cond``."""
        for i, taken in enumerate(self._taken):
            if taken is batch:
                del self._taken[i]
                return True
        return False

    def _past_stop(self) -> bool:
        """True once the closing side gave up, or close()'s or the exit's deadline has passed."""
        return self._given_up or (self._stop_by is not None and time.monotonic() >= self._stop_by)

    def _store_taken(self, batch: _Batch, rows: list[LedgerRow], runs: list[FeatureRun], records: list[Record],
                     prepared: PreparedBatch | None) -> None:
        """Write a batch taken off the queue, unless the deadline has passed (the batch stays taken: the closing
        side spills it); what cannot be written is spilled here, unless the closing side has spilled it already
        (it does for a batch still being written at the deadline; a row both written and spilled is stored once)."""
        if self._past_stop():
            return
        left = self._store_batch(rows, runs, records, prepared)
        if left:
            self._spill_taken(batch, left)
        else:
            self._release(batch)

    def _spill_taken(self, batch: _Batch, items: Sequence[Any]) -> None:
        """Spill ``items`` (what was not written of ``batch``), unless the closing side has spilled ``batch``
        already: taken back under the lock, so the closing side, finding it gone, waits for this spill."""
        with self._cond:
            if not self._release_held(batch):
                return
            self._spilling += 1
        try:
            self._spill(items)
        finally:
            with self._cond:
                self._spilling -= 1
                self._cond.notify_all()

    def _prepare_soon(self, batch: _Batch, pipeline: bool) -> Future:
        """:meth:`_prepare` of ``batch``, on the preparing thread when more than one batch is to be written (and
        a thread may be started: never at exit), else here. The result is a future either way."""
        preparer = self._preparer
        if preparer is None and pipeline and self.prepare_ahead:
            with self._cond:  # the exit sets _exiting under it: no thread is started once the exit has begun
                if self._preparer is None and not (self._exiting or _exit_begun or sys.is_finalizing()):
                    try:
                        self._preparer = _Preparer()
                    except RuntimeError:  # "can't create new thread at interpreter shutdown": prepared here
                        pass
                preparer = self._preparer
        if pipeline and preparer is not None:
            return preparer.submit(self._prepare, batch)
        done: Future = Future()
        done.set_result(self._prepare(batch))
        return done

    def _prepare(self, batch: _Batch) -> tuple[list[LedgerRow], list[FeatureRun], list[Record], PreparedBatch | None]:
        """Rows and runs built from the queued items (:meth:`_built`), and the store's preparation of them (None
        if there is no store now, or it failed: the write then prepares them itself). Never raises."""
        rows, runs, records = self._built(batch.items)
        batch.built = (rows, runs, records)
        prepared = None
        store = self._store
        if store is not None and (rows or runs):
            try:
                prepared = store.prepare(rows, runs)
            except LedgerRefused:
                pass  # the write refuses it again, and writes the batch around the rows refused
            except Exception:
                log_once("ledger:prepare", logging.ERROR, "aicost ledger: could not prepare a batch; it is written "
                         "unprepared", exc_info=True)
        return rows, runs, records, prepared

    def _built(self, items: Iterable[Any]) -> tuple[list[LedgerRow], list[FeatureRun], list[Record]]:
        """The rows, runs and records of queued items (an item that cannot be made a row is dropped, counted)."""
        rows, runs, records = [], [], []
        for item in items:
            made = self._made(item)
            if isinstance(made, LedgerRow):
                rows.append(made)
            elif isinstance(made, FeatureRun):
                runs.append(made)
            elif made is not None:
                records.append(made)
        return rows, runs, records

    def _made(self, item: Any) -> LedgerRow | FeatureRun | Record | None:
        """The row, run or record of one queued item (None: it cannot be made one; dropped, counted)."""
        if isinstance(item, (LedgerRow, FeatureRun, Record)):
            return item
        try:
            return row_from_item(item)
        except Exception:
            self._counts["dropped_invalid"] += 1
            log_once("ledger:convert", logging.ERROR, "aicost ledger: could not build a row", exc_info=True)
            return None

    def _store_batch(self, rows: list[LedgerRow], runs: list[FeatureRun], records: Sequence[Record] = (),
                     prepared: PreparedBatch | None = None) -> list | None:
        """Write one batch in one transaction (past close()'s or the exit's deadline it gives up: the store's
        :meth:`~LedgerStore.time_limit`). None when stored; else the rows, runs and records not stored (the
        caller spills them, or keeps them in the spill file being replayed)."""
        if time.monotonic() >= self._retry_at:
            try:
                store = self._connected()
                with store.time_limit(_left(self._stop_by)):
                    left = self._write_rows(store, rows, runs, prepared)
                    if left:  # an outage (_down has seen it) or the deadline stopped a write in parts
                        return [*left, *records]
                    for i, record in enumerate(records):
                        try:
                            record.store_into(store)
                        except LedgerUnavailable:
                            records = records[i:]  # the ones stored stay stored; these are not
                            rows, runs = [], []
                            raise
                        except LedgerRefused as exc:
                            self._drop_refused(record, exc)
                            continue
                        self._counts["records_written"] += 1
                self._up()
                return None
            except LedgerUnavailable as exc:
                self._failed(exc)
            except Exception:
                log_once("ledger:write", logging.ERROR, "aicost ledger: a batch could not be written; spilled",
                         exc_info=True)
                self._counts["write_errors"] += 1
                self._retry_at = time.monotonic() + self._backoff
        return [*rows, *runs, *records]

    def _write_rows(self, store: LedgerStore, rows: list[LedgerRow], runs: list[FeatureRun],
                    prepared: PreparedBatch | None) -> list:
        """Write ``rows`` and ``runs`` in one transaction, or, when the database refuses their data, in parts
        (:meth:`_write_around`). What is left unwritten (an outage or the deadline stopped the parts: the caller
        spills it); raises LedgerUnavailable when the database cannot be reached for the whole."""
        if not rows and not runs:
            return []
        try:
            written = store.write_prepared(prepared) if prepared is not None else store.write(rows, runs)
        except LedgerRefused as exc:
            return self._write_around(store, [*rows, *runs], exc)
        self._count_written(rows, runs, written)
        return []

    def _write_around(self, store: LedgerStore, items: list, refusal: LedgerRefused) -> list:
        """Write ``items`` (rows and runs), which the database refused together, in halves, in order, each in a
        transaction of its own, a refused half halved again: the rows it takes are written, and a row refused
        alone is dropped (:meth:`_drop_refused`). A row stored by one part is skipped by any later write of it
        (by its id), so writing in parts, or a part again after a spill, stores each row once. The parts stop at
        close()'s or the exit's deadline and at an outage: what is left is returned, for the caller to spill
        (replayed later, it is written around the refused rows again). One bad row in n costs about 2 log2(n)
        transactions."""
        parts: collections.deque = collections.deque([(items, refusal)])  # (part, its refusal, or None: untried)
        while parts:
            part, refused = parts.popleft()
            if refused is None:
                if self._past_stop():
                    return [*part, *(item for rest, _ in parts for item in rest)]
                rows = [item for item in part if isinstance(item, LedgerRow)]
                runs = [item for item in part if not isinstance(item, LedgerRow)]
                try:
                    self._count_written(rows, runs, store.write(rows, runs))
                    continue
                except LedgerRefused as exc:
                    refused = exc
                except LedgerUnavailable as exc:
                    self._failed(exc)
                    return [*part, *(item for rest, _ in parts for item in rest)]
            if len(part) == 1:
                self._drop_refused(part[0], refused)
                continue
            half = len(part) // 2
            parts.extendleft([(part[half:], None), (part[:half], None)])  # the first half first
        return []

    def _count_written(self, rows: Sequence[LedgerRow], runs: Sequence[FeatureRun], written: int) -> None:
        self._counts["written"] += written
        self._counts["duplicates"] += len(rows) - written
        self._counts["runs_written"] += len(runs)

    def _drop_refused(self, item: Any, refusal: LedgerRefused) -> None:
        """A row, run or record the database refused alone: dropped, counted (``dropped_refused``), logged once with
        the reason and its id (never a value of it: a tag or a name could hold anything). The id as the ledger
        keeps it (:func:`_logged_id`): the row or run is the one given, not yet held to the bounds. The reason
        (:class:`LedgerRefused`) names the error or the field, never a value; a record is named by its class."""
        self._counts["dropped_refused"] += 1
        what = (f"row (span id{_logged_id(item.span_id)})" if isinstance(item, LedgerRow) else
                f"feature run (run id{_logged_id(item.run_id)})" if isinstance(item, FeatureRun) else
                f"{type(item).__name__} record")
        log_once("ledger:refused", logging.ERROR, "aicost ledger: %s refused a %s, alone (%s); it is dropped and "
                 "the rest of its batch written (each row dropped so is counted in the writer's "
                 "stats()['dropped_refused'])", redact_url(self.url), what, refusal.reason)

    def _connected(self) -> LedgerStore:
        """The store, opened again if an outage closed it (or in a forked child, which opens its own). Its URL was
        accepted when the writer was made: a database dropped since is an outage like any other (LedgerUnavailable,
        spilled and retried, logged once saying the database is missing), not a configuration error. The open waits
        for another process's lock no longer than :data:`_REOPEN_WAIT_S`, nor past close()'s or the exit's
        deadline: a close begun during it finds the thread ending soon after (it begins nothing more)."""
        if self._store is None:
            left = _left(self._stop_by)
            self._store = open_store(self.url, setting=self._setting, reopen=True,
                                     wait_s=_REOPEN_WAIT_S if left is None else min(left, _REOPEN_WAIT_S))
        return self._store

    def _failed(self, exc: LedgerUnavailable) -> None:
        """A write the database did not take: an outage (:meth:`_down`), unless the closing side cut it short
        (:meth:`_cut`: counted there; the thread is ending, and closes the store)."""
        store = self._store
        if store is None or not store.cut_short:
            self._down(exc)

    def _down(self, exc: LedgerUnavailable) -> None:
        self._counts["outages"] += 1
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(_MAX_BACKOFF_S, self._backoff * 2)
        # Opened again at the next try where the store cannot be trusted: PostgreSQL's connection, a SQLite file found
        # damaged (a file restored in its place is then the one written). A SQLite file locked stays open.
        if self._store is not None and (exc.state == "damaged" or getattr(self._store, "dialect", "") == "postgresql"):
            try:
                self._store.close()
            except Exception:
                pass
            self._store = None
        # logged once per state of the outage: a connection lost, then found dropped, is told both
        if log_once(f"ledger:down:{exc.state}", logging.WARNING, "aicost ledger: %s; rows are spilled to %s and "
                    "replayed when it can be written again", exc.sentence(), self._spill_dir):
            forget("ledger:up")

    def _up(self) -> None:
        if self._backoff > 1.0:
            self._backoff = 1.0
            for state in LedgerUnavailable.STATES:
                forget(f"ledger:down:{state}")
            log_once("ledger:up", logging.INFO, "aicost ledger: %s is reachable again", redact_url(self.url))

    # -- spill --------------------------------------------------------------------------------------------------
    # A spill file is <stem>-<pid>.jsonl, appended to by process <pid>'s writers. Replaying one, a writer renames it
    # <stem>-<pid>.<n>.replay.jsonl (its own pid: no other writer takes it while this process lives); what a replay
    # stopped early did not write is kept as <stem>-<pid>.<n>.jsonl, for any writer of this process to take up
    # again. A file whose process is gone is adopted whatever its name, and so is <stem>-<pid>.replay-<replayer>,
    # the name an earlier aicost gave a file it was replaying.
    def _own_spill(self) -> Path:
        return self._spill_dir / f"{self._spill_stem}-{os.getpid()}.jsonl"

    def _spill_files(self) -> list[Path]:
        """This process's spill file and the rest of its stopped replays, and the files of processes that are gone
        (oldest first)."""
        try:
            candidates = [path for stem in (self._spill_stem, *self._earlier_stems)
                          for pattern in (f"{stem}-*.jsonl", f"{stem}-*.replay-*")
                          for path in self._spill_dir.glob(pattern)]
            candidates.sort(key=lambda p: p.stat().st_mtime)
        except OSError:
            return []
        mine = self._own_spill()
        found = []
        for path in candidates:
            name = _SPILL_NAME.fullmatch(path.name) or _OLD_REPLAY_NAME.fullmatch(path.name)
            if name is None:
                continue
            pid = int(name["pid"])
            if pid != os.getpid():
                if not _alive(pid):
                    found.append(path)
            elif path == mine or (name.groupdict().get("n") and not name.groupdict().get("replay")):
                found.append(path)
        return found

    def _spill(self, items: Sequence[Any]) -> None:
        """Append ``items`` (rows, runs, records, or queued items not built yet) to this process's spill file, as far
        as its bound allows: each is built and encoded once, and none past the bound (they are counted dropped)."""
        if not items:
            return
        path = self._own_spill()
        kept = invalid = 0
        with self._spill_lock:
            try:
                room = self.spill_max_bytes - (path.stat().st_size if path.exists() else 0)
                data = bytearray()
                for item in items:
                    line = self._spill_line(item)
                    if line is None:
                        invalid += 1
                        continue
                    if len(data) + len(line) > room:
                        break
                    data += line
                    kept += 1
                if data:
                    with open(path, "ab") as f:
                        f.write(data)
                    self._check_spill = True
            except OSError:
                self._counts["dropped_spill_error"] += len(items) - invalid
                log_once("ledger:spill-error", logging.ERROR, "aicost ledger: cannot write the spill file %s; rows "
                         "are being dropped", path, exc_info=True)
                return
        self._counts["spilled"] += kept
        if kept + invalid < len(items):
            self._counts["dropped_spill_full"] += len(items) - kept - invalid
            log_once("ledger:spill-full", logging.ERROR, "aicost ledger: the spill file %s is full (%d bytes); "
                     "rows are being dropped (counted in stats())", path, self.spill_max_bytes)

    def _spill_line(self, item: Any) -> bytes | None:
        """One spill file line (None: the item cannot be made one; dropped, counted)."""
        made = self._made(item)
        if made is None:
            return None
        try:
            if isinstance(made, Record):
                return (_record_line(made) + "\n").encode()
            key = "row" if isinstance(made, LedgerRow) else "run"
            return (json.dumps({key: made.to_dict()}, separators=(",", ":")) + "\n").encode()
        except Exception:
            self._counts["dropped_invalid"] += 1
            log_once("ledger:encode", logging.ERROR, "aicost ledger: could not encode a row to spill", exc_info=True)
            return None

    def _replay_spill(self) -> None:
        """Write the spill files (:meth:`_spill_files`) batch by batch. A file is deleted once written; stopped
        early (the database fails again, or close()'s or the exit's deadline passes), what was not written is
        kept in a file of its own (:meth:`_keep_rest`), never spilled again into the bounded spill file."""
        if time.monotonic() < self._retry_at:
            return
        self._check_spill = False  # set again by any spill meanwhile, or if this pass stops early
        for path in self._spill_files():
            if self._past_stop():
                self._check_spill = True
                return
            # taken: another writer will not replay it too, while this process lives; if it dies before the
            # file is replayed, the next writer adopts the file as it adopts a spill file
            # numbered per process, not per writer: two writers of one ledger share its spill files
            replaying = self._spill_dir / f"{self._spill_stem}-{os.getpid()}.{next(_REPLAY_NUMBERS)}.replay.jsonl"
            try:
                with self._spill_lock:  # not while a spill appends to it (that spill's rows would be lost)
                    os.replace(path, replaying)
                with open(replaying, "rb") as f:
                    lines = f.readlines()
            except OSError:
                continue
            entries = [(line, obj) for line in lines if line.strip()
                       for obj in [self._spilled(line)] if obj is not None]
            done = self._replay(entries)
            if done < len(entries):
                self._keep_rest(replaying, [line for line, _ in entries[done:]])
                self._check_spill = True
                return
            try:
                os.unlink(replaying)
            except OSError:
                pass

    def _spilled(self, line: bytes) -> LedgerRow | FeatureRun | Record | None:
        """The row, run or record of one spill file line (None: unreadable, dropped, counted)."""
        try:
            data = json.loads(line)
            if "row" in data:
                return LedgerRow.from_dict(data["row"])
            if "record" in data:
                return _record_from(data)
            return FeatureRun.from_dict(data["run"])
        except Exception:
            self._counts["dropped_invalid"] += 1
            return None

    def _replay(self, entries: list[tuple[bytes, Any]]) -> int:
        """Write the entries of a spill file in batches, in file order; how many were written (all of them, unless
        a write failed or the deadline passed)."""
        size = self.batch_size
        for i in range(0, len(entries), size):
            if self._past_stop():
                return i
            rows, runs, records = self._built(obj for _, obj in entries[i:i + size])
            refused = self._counts["dropped_refused"]
            if self._store_batch(rows, runs, records):
                return i
            refused = self._counts["dropped_refused"] - refused  # counted dropped, not replayed
            self._counts["replayed"] += len(rows) + len(runs) + len(records) - refused
        return len(entries)

    def _keep_rest(self, replaying: Path, rest: list[bytes]) -> None:
        """Keep the lines a replay did not write as ``<stem>-<pid>.<n>.jsonl``, for a later pass (or the next writer
        of the ledger). The replayed file is deleted only once the rest is safe; failing that, it is kept whole
        (what was written is found stored when replayed again)."""
        pending = self._spill_dir / f"{self._spill_stem}-{os.getpid()}.{next(_REPLAY_NUMBERS)}.jsonl"
        part = pending.with_suffix(".part")
        try:
            with open(part, "wb") as f:
                f.writelines(line if line.endswith(b"\n") else line + b"\n" for line in rest)
            os.replace(part, pending)
        except OSError:
            try:
                os.replace(replaying, pending)
            except OSError:
                pass  # left as it is: adopted by the next writer once this process is gone
            return
        try:
            os.unlink(replaying)
        except OSError:
            pass

    # -- control ------------------------------------------------------------------------------------------------
    def flush(self, timeout_s: float | None = 30.0) -> bool:
        """Have the writer thread write everything queued now (and replay a spill if the database is back); wait
        for it no longer than ``timeout_s``. True when the writer thread answered in time and nothing is queued
        (a batch it has taken off the queue but not written yet is not done)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._retry_at = 0.0  # an explicit flush tries the database now
        if self._closed or threading.current_thread() is self._thread or not self._start():
            return not self._queue
        with self._cond:
            self._asked += 1
            asked = self._asked
            self._cond.notify_all()
            answered = self._cond.wait_for(lambda: self._answered >= asked or self._ended, _left(deadline))
        return answered and not self._queue

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Have the writer thread write what is queued, then end and close the database; return within
        ``timeout_s`` (None: as long as it takes). Rows queued afterwards are dropped (counted). No write begins
        after the time is up, and one under way then gives up by then (the store's time limit, or, for a write
        begun before close() and waiting for a lock, a cut: :meth:`_cut`, then waited for up to
        :data:`_CUT_WAIT_S` to end); what is not written is spilled here, for the next writer of this ledger to
        replay."""
        self._begin_close(None if timeout_s is None else time.monotonic() + timeout_s)
        self._finish_close()

    def _begin_close(self, deadline: float | None, exiting: bool = False) -> None:
        """Refuse rows from now on, and have the writer thread write what is queued by ``deadline`` (or an earlier
        close's, if sooner) and end. It is started for that if it never was (not at exit)."""
        self._retry_at = 0.0
        with self._cond:
            if deadline is not None and (self._stop_by is None or deadline < self._stop_by):
                self._stop_by = deadline
            self._closed = True
            self._exiting = self._exiting or exiting
            self._cond.notify_all()
        if self._thread is None and (self._queue or self._check_spill):
            self._start()

    def _finish_close(self) -> None:
        """Wait for the writer thread to end, until the deadline; then cut a write its deadline does not bound
        (:meth:`_cut`) and spill what it left (:meth:`_give_up`). Interrupted (Ctrl-C at exit), it still spills.
        The exit does this for all its writers at once: :func:`_finish_closes`."""
        _finish_closes([self])

    def _wait_end(self) -> bool:
        """Wait for the writer thread to end, until the deadline: True if it has ended (or there is none to wait
        for)."""
        if self._thread is None or self._thread is threading.current_thread():
            return True
        with self._cond:
            return self._cond.wait_for(lambda: self._ended, _left(self._stop_by))

    def _cut(self, deadline: float) -> LedgerStore | None:
        """The deadline has passed with the writer thread in a write its own time limit does not end by then (one
        begun before close() or the exit set the deadline: waiting, with no limit, for another connection's lock):
        cut it short (:meth:`LedgerStore.cut`), counted (``writes_cut``) and logged once. The store cut, to wait
        for (:func:`_finish_closes`: up to :data:`_CUT_WAIT_S` past the deadline, cutting again meanwhile), or
        None. Its batch is spilled as the others (by :meth:`_give_up`, or by the writer thread, which finds the
        write failed), never counted as an outage. The cut returns within :data:`~aicost.ledger.store._CUT_MIN_S`
        (a PostgreSQL cancel request the server has not taken by then is sent again, given longer, by the cuts
        that follow, :meth:`_cut_ended`): the other writers' writes are cut next, and their servers are not to
        wait for this one's."""
        store = self._store
        if store is None or not store.cut(deadline, until=time.monotonic() + _CUT_MIN_S):
            return None
        self._counts["writes_cut"] += 1
        log_once("ledger:cut", logging.WARNING, "aicost ledger: a write to %s was still waiting for the database at "
                 "the end of close() or the exit's flush; it is cut short, and its rows are spilled to %s for the "
                 "next writer of this ledger", redact_url(self.url), self._spill_dir)
        return store

    def _cut_ended(self, store: LedgerStore, end: float) -> bool:
        """A write :meth:`_cut` cut: True once it has ended (or the writer thread has), or ``end`` has passed;
        else it is cut again (PostgreSQL loses a cancel that reaches it between two statements)."""
        return self._ended or time.monotonic() >= end or not store.cut(until=end)

    def _give_up(self) -> None:
        """The closing side, once the writer thread has ended or the deadline has passed: spill the batches it took
        and has not begun to write (rows it built are not built again) and what is queued. The writer thread takes
        and begins nothing after this; a write still under way at the deadline ends by itself (its time limit) or
        was cut (:meth:`_cut`), and its batch is spilled too: here if still taken, else by the writer thread,
        which took it back, and whose spill :func:`_finish_closes` then waits for (up to :data:`_SPILL_WAIT_S`:
        the exit would end the thread mid-spill and lose the rows)."""
        with self._cond:
            self._given_up = True
            taken, self._taken = self._taken, []
            left = [item for batch in taken
                    for item in (batch.items if batch.built is None else itertools.chain(*batch.built))]
            left += self._pop(len(self._queue))
        if left:
            log_once("ledger:close-spill", logging.WARNING, "aicost ledger: %d rows were not written by the end of "
                     "close() or the exit's flush; they are spilled to %s for the next writer of this ledger",
                     len(left), self._spill_dir)
            self._spill(left)

    def _spilled_by_thread(self, end: float) -> None:
        """After :meth:`_give_up`: wait, until ``end``, for a batch the writer thread could not write and took back
        to be spilled before the exit ends. Without a writer thread, the database is closed here."""
        with self._cond:
            self._cond.wait_for(lambda: not self._spilling, _left(end))
        if self._thread is None:
            self._close_store()

    def _after_fork_in_child(self) -> None:
        """The parent's threads are not in the child: it starts its own on its first row. The rows queued in the
        parent are the parent's to write (the locks are freed by ``_fork``)."""
        self._thread = None
        self._ended = False
        self._preparer = None
        self._stop_by = None  # a close() under way in the parent is not the child's
        self._queue = collections.deque()
        self._taken = []
        self._spilling = 0
        self._asked = self._answered = 0
        # A connection must not be used across fork: the child opens its own, and keeps the parent's object
        # unclosed (closing it here could disturb the parent's session).
        if self._store is not None:
            _inherited.append(self._store)
        self._store = None
        self._counts = collections.Counter()
        self._enqueued = 0

    def stats(self) -> dict[str, int]:
        """Counters: enqueued, queued (now), written, duplicates, runs_written, records_written, spilled,
        replayed, outages, writes_cut (writes close() or the exit cut short at its deadline: :meth:`_cut`),
        write_errors, pair_chunks and pair_errors (the pair summing), and every kind of drop
        (dropped_queue_full, dropped_spill_full, dropped_spill_error, dropped_invalid, dropped_closed,
        dropped_refused: rows the database refused alone, and dropped_unreadable: spans the span exporter could
        not read). A counter that has not moved is absent."""
        out = dict(self._counts)
        out["enqueued"] = self._enqueued
        out["queued"] = len(self._queue)
        return out

    def __repr__(self) -> str:
        return f"<LedgerWriter {redact_url(self.url)} queued={len(self._queue)}>"


class _Preparer:
    """The writer's second thread: prepares the next batch while the writer thread writes the current one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # not from _fork: a forked child drops the whole preparer (the writer does)
        self._stopped = False
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="aicost-ledger-prepare", daemon=True)
        self._thread.start()

    def submit(self, fn: Any, *args: Any) -> Future:
        future: Future = Future()
        with self._lock:
            if not self._stopped:
                self._jobs.put((future, fn, args))
                return future
        future.set_result(fn(*args))  # a writer thread that outlived close(): done here, never left waiting
        return future

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._jobs.put(None)  # after every job submitted before it
        self._thread.join(timeout=5)  # never called from this thread: its jobs only prepare

    def _run(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            future, fn, args = job
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # the waiting writer re-raises it
                future.set_exception(exc)


def _logged_id(value: object) -> str:
    """A row's or run's id as a log line names it (after "span id"): the id the ledger keeps, an over-long one its
    digest (:func:`~aicost.ledger.row.bounded_id`), so never more than a bounded text, quoted as :func:`repr`
    quotes it, so that a control character (a newline, a carriage return, an escape: an id from a span elsewhere
    may hold any) is escaped and cannot end the line or forge another; one that is no text only by its type (a
    huge int has no str at all: Python refuses more than 4,300 digits)."""
    if type(value) is str:
        return f" {bounded_id(value)!r}"
    return f": no text ({type(value).__name__})"


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (0 once past it), or None without one."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _spill_location(url: str, spill_path: str | os.PathLike[str] | None) -> tuple[Path, str, tuple[str, ...]]:
    """The spill directory and the files' stem, named after the ledger (:func:`ledger_identity`), not the URL's
    words: a relative SQLite path names another ledger in each working directory, and its rows must not be
    replayed into the wrong one. Also the stem an earlier aicost gave them (the URL's words), whose files left by a
    process that is gone are adopted too, where those words name one ledger wherever the writer runs."""
    identity = ledger_identity(url)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    if spill_path is not None:
        path = Path(spill_path)
        return path.parent, path.stem, ()
    words = url.strip()
    sqlite_path = words[len("sqlite:///"):] if words.lower().startswith("sqlite:///") else words
    earlier = ()
    if words != identity and (not identity.startswith("sqlite:///") or os.path.isabs(sqlite_path)):
        earlier = (f"ledger-spill-{hashlib.sha256(url.encode()).hexdigest()[:12]}",)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aicost"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        base = Path(tempfile.gettempdir())
    return base, f"ledger-spill-{digest}", earlier


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_writers: "weakref.WeakSet[LedgerWriter]" = weakref.WeakSet()
_inherited: list[LedgerStore] = []  # a forked child's copies of its parent's stores: never used, never closed
_REPLAY_NUMBERS = itertools.count(1)  # names of the spill files this process has taken to replay, or kept the rest of
_SPILL_NAME = re.compile(r".*-(?P<pid>\d+)(?:\.(?P<n>\d+))?(?P<replay>\.replay)?\.jsonl")
_OLD_REPLAY_NAME = re.compile(r".*\.replay-(?P<pid>\d+)")  # <stem>-<pid>.replay-<replayer>: an earlier aicost's


_exit_begun = False  # the exit's flush has begun: no writer starts a thread any more (one created since, too)
_before_exit: list[Callable[[float], None]] = []


def before_exit(hand_over: Callable[[float], None]) -> Callable[[float], None]:
    """Have ``hand_over(deadline)`` run at the exit, before the writers close: a feature that holds rows until an
    event that will not come (``aicost.pools``' open intervals) queues them there. It runs once the exit has begun
    (rows it queues start no thread: a writer whose thread is running writes them, the others spill them for the
    next writer of their ledger) and must return by ``deadline`` (``time.monotonic()``), the exit's bound for
    the writers too. Kept for the life of the process (a module's function)."""
    _before_exit.append(hand_over)
    return hand_over


def _flush_all_at_exit() -> None:
    """Close every writer by one deadline (exit waits 10 s for all of them, not 10 s each): the calls the garbage
    collector reached are finished (:mod:`aicost._gc`), the features' last rows are handed over
    (:func:`before_exit`), then all writers are told (their threads write at once), then all are waited for
    together, and what they left is spilled (:func:`_finish_closes`)."""
    global _exit_begun
    _gc.drain()  # their rows (and their pool calls) first
    end = time.monotonic() + _EXIT_FLUSH_S
    _exit_begun = True
    for hand_over in _before_exit:
        try:
            hand_over(end)
        except BaseException:  # Ctrl-C too: the writers still close and spill what they hold
            log_once("ledger:before-exit", logging.ERROR, "aicost ledger: a feature could not hand its last rows "
                     "over at exit", exc_info=True)
    writers = list(_writers)
    for writer in writers:
        try:
            writer._begin_close(end, exiting=True)
        except BaseException:
            pass
    try:
        _finish_closes(writers)
    except BaseException:  # Ctrl-C at exit, too: every writer has spilled (_finish_closes' finally)
        pass


def _finish_closes(writers: Sequence[LedgerWriter]) -> None:
    """The closing side of :meth:`LedgerWriter.close` for several writers at once (the exit's, by one deadline),
    so that none waits for another's cut: each writer thread is waited for until its deadline; then every write
    still under way that its deadline does not bound is cut (:meth:`LedgerWriter._cut`), all of them before any
    is waited for, and all are waited for together, up to :data:`_CUT_WAIT_S` past the deadline (cutting again
    meanwhile); then each writer spills what it left (:meth:`LedgerWriter._give_up`), and the spills their
    threads took back are waited for together, up to :data:`_SPILL_WAIT_S`. The first cut of each returns within
    0.1 s (:meth:`LedgerStore.cut`'s ``until``: a PostgreSQL cancel request to a server that does not take it
    is given no longer), so every write's first cancel goes out within 0.1 s per writer cut before it; a cut
    again returns by the end of the cut wait (the cancel request is given what is left of it, 1 s at most, 0.1 s
    at least). (Closed one after another, each writer was cut only once the one before had been waited for,
    each of its cancel requests could wait 1 s, and each writer waited 5 s of its own for its thread's spill:
    the exit ran past its bound by about 2 s per PostgreSQL writer cut. Then the first cuts, though all before
    any wait, gave each cancel request up to 1 s: behind a server that took none, the next writers' first
    cancels went out 1 s, 2 s past the deadline.)
    Interrupted (Ctrl-C at exit), every writer still spills; the interruption is raised after that."""
    interrupted: BaseException | None = None
    try:
        late = [w for w in writers if not w._wait_end()]
        cuts = []
        for w in late:
            deadline = w._stop_by
            store = None if deadline is None else w._cut(deadline)
            if store is not None:
                cuts.append((w, store, deadline + _CUT_WAIT_S))
        while cuts:
            w, store, end = cuts[0]
            with w._cond:  # (a write's end is not notified: looked at again every 50 ms)
                w._cond.wait_for(lambda: w._ended or not store.writing, min(0.05, _left(end)))
            cuts = [(w, store, end) for w, store, end in cuts if not w._cut_ended(store, end)]
    except BaseException as exc:
        interrupted = exc
    for w in writers:
        try:
            w._give_up()
        except BaseException as exc:
            interrupted = interrupted or exc
    end = time.monotonic() + _SPILL_WAIT_S
    for w in writers:
        try:
            w._spilled_by_thread(end)
        except BaseException as exc:
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted


atexit.register(_flush_all_at_exit)


# -- the process's ledger (what instrument(ledger=...) / AICOST_LEDGER turn on) -----------------------------------
_active: LedgerWriter | None = None
_active_lock = _fork.lock()
ENV = "AICOST_LEDGER"


def configure(url: str, *, setting: str = "instrument(ledger=...)", **options: Any) -> LedgerWriter:
    """Record every call, cache hit, refusal and feature run of this process in the ledger at ``url``.

    Idempotent: the same URL keeps the running writer; another URL flushes and replaces it. A malformed URL or a
    missing database raises :class:`~aicost.errors.ConfigurationError` here, naming ``setting``."""
    global _active
    from .. import hooks

    with _active_lock:
        if _active is not None and _active.url == url and not _active._closed:
            return _active
        writer = LedgerWriter(url, setting=setting, **options)
        previous, _active = _active, writer
        hooks.add_listener(writer.on_call)
        hooks.add_event_listener(writer.on_event)
    if previous is not None:
        _detach(previous)
    return writer


def disable() -> None:
    """Stop recording: flush what is queued and close the ledger (``uninstrument()`` calls it)."""
    global _active
    with _active_lock:
        previous, _active = _active, None
    if previous is not None:
        _detach(previous)


def active() -> LedgerWriter | None:
    """The writer ``instrument(ledger=...)`` configured, or None."""
    return _active


def _detach(writer: LedgerWriter) -> None:
    from .. import hooks

    hooks.remove_listener(writer.on_call)
    hooks.remove_event_listener(writer.on_event)
    writer.close()
