"""The background writer: calls hand their rows to a bounded queue; one thread stores them in batches.

Why this shape:

* **Never on the call's path.** The hook listener (:meth:`LedgerWriter.on_call`) copies a few values into a
  tuple and appends it to a ``deque`` (about a microsecond; ``benchmarks/ledger_enqueue.py``). Building rows,
  rollups and SQL happens on the writer thread. A full queue drops the row, counted in :meth:`stats` and logged
  once: the app is never slowed or failed by its ledger.
* **No thread at shutdown.** The writer thread starts on the first row, never while the interpreter is
  finalizing and never after the at-exit flush has begun; rows that arrive then are written by the flush itself.
  A forked child starts its own thread and connection on its first row (the parent's queue stays the parent's).
* **Nothing lost that can be kept.** At normal exit the queue is flushed, for 10 s at most: what is not written
  by then (even a batch the writer thread is writing) is spilled, like what ``close(timeout_s)`` could not
  write in time. When the database is unreachable, a
  batch goes to a local spill file (JSON lines, bounded by ``spill_max_bytes``; past it rows are dropped,
  counted and logged) and is replayed, oldest first, once a write succeeds again; retries back off up to 30 s.
  Inserts are idempotent by span id, so a replay that was half written never double counts. A spill file left
  by a process that died (or that it was replaying) is adopted and replayed by the next writer of the same ledger.
* **Other features' rows ride along.** A feature that writes its own tables (``aicost.pools``' closed
  intervals) queues :class:`Record` objects with :meth:`LedgerWriter.add`: same queue, same spill and replay,
  in order. A record stores itself idempotently and says how it is spilled (``to_dict`` / ``from_dict``).
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import itertools
import json
import logging
import os
import queue
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import _fork
from .._log import forget, log_once
from ..hooks import CallResult
from .capture import call_item, event_item, row_from_item
from .row import FeatureRun, LedgerRow
from .store import LedgerStore, LedgerUnavailable, PreparedBatch, open_store

__all__ = ["LedgerWriter", "Record"]

logger = logging.getLogger("aicost.ledger")

_MAX_BACKOFF_S = 30.0
PAIR_INTERVAL_S = 60.0  # how often the writer thread looks for rows to sum into the pair cells (_sum_pairs)
_EXIT_FLUSH_S = 10.0  # the at-exit flush's bound: what is not written by then is spilled
_MAX_BATCH_FACTOR = 4  # a backlog's batches grow up to this factor times batch_size (see _drain)


class Record:
    """Rows of a feature's own ledger tables, queued, spilled and replayed like call rows. Subclasses store
    themselves idempotently (a replayed record changes nothing already stored) and round-trip through JSON."""

    def store_into(self, store: LedgerStore) -> None:
        """Write in one transaction; raise LedgerUnavailable when the database cannot be reached."""
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


class LedgerWriter:
    """Queue + background writer for one ledger URL. Thread-safe; one per process and URL is enough."""

    def __init__(self, url: str, *, setting: str = "instrument(ledger=...) / AICOST_LEDGER", max_queue: int = 100_000,
                 batch_size: int = 5_000, flush_interval_s: float = 0.5, spill_path: str | os.PathLike[str] | None = None,
                 spill_max_bytes: int = 64 * 1024 * 1024, prepare_ahead: bool = True) -> None:
        self.url = url
        self.prepare_ahead = bool(prepare_ahead)  # a second thread prepares the next batch (see _drain)
        self._setting = setting
        self.max_queue = int(max_queue)
        self.batch_size = int(batch_size)
        self.flush_interval_s = float(flush_interval_s)
        self.spill_max_bytes = int(spill_max_bytes)
        self._queue: collections.deque = collections.deque()
        self._wake = _fork.event()
        self._write_lock = _fork.lock()
        self._state_lock = _fork.lock()
        self._thread: threading.Thread | None = None
        self._preparer: _Preparer | None = None
        self._closed = False
        self._shut_down = False  # closed, and the database with it (_shut)
        self._exiting = False
        self._stop_by: float | None = None  # closing or exiting: no batch is taken after this (see _take)
        self._taken: list[list] = []  # batches taken from the queue and not yet stored or spilled
        self._retry_at = 0.0
        self._backoff = 1.0
        self._counts = collections.Counter()
        self._enqueued = 0
        self._check_spill = True
        # when the writer thread next sums a chunk of rows into the pair cells (not in a first burst of batches)
        self._pairs_at = time.monotonic() + PAIR_INTERVAL_S
        self._inherited: Any = None
        self._store: LedgerStore | None = None
        self._spill_dir, self._spill_stem = _spill_location(url, spill_path)
        self._pid = os.getpid()
        try:
            self._store = open_store(url, setting=setting)  # bad URL / missing database: raised here, at configure
        except LedgerUnavailable as exc:
            self._down(exc)
        _writers.add(self)
        _fork.reset_in_child(self)

    # -- the calling thread ---------------------------------------------------------------------------------------
    def on_call(self, result: CallResult) -> None:
        """Hook listener (``aicost.hooks.add_listener``): queue the call's row. Never raises, never blocks.

        The common case is inlined (one Python call less per vendor call): room in the queue, thread running."""
        try:
            queue = self._queue
            if len(queue) < self.max_queue and self._thread is not None and not self._closed:
                queue.append(call_item(result))
                self._enqueued += 1
                if len(queue) >= self.batch_size:
                    self._wake.set()
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

    def _put(self, item: Any) -> None:
        if self._closed:
            self._counts["dropped_closed"] += 1
            log_once("ledger:closed", logging.WARNING, "aicost ledger: a row arrived after the ledger was closed "
                     "(uninstrument); it is dropped (counted in the writer's stats())")
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
        elif len(self._queue) >= self.batch_size:
            self._wake.set()

    def _start(self) -> None:
        if self._exiting:  # after the at-exit flush: written here, since no thread may start now
            self.flush(timeout_s=5.0)
            self._abandon()  # past the exit's deadline: spilled
            return
        if sys.is_finalizing():
            return  # never a thread at shutdown: the at-exit flush writes what is queued
        with self._state_lock:
            if self._thread is not None or self._exiting:
                return
            thread = threading.Thread(target=self._run, name="aicost-ledger", daemon=True)
            self._thread = thread
        try:
            thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown"
            self._thread = None

    # -- the writer thread ----------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            if self._closed:
                return
            try:
                self._drain(deadline=None)
                self._sum_pairs()
            except Exception:
                log_once("ledger:writer", logging.ERROR, "aicost ledger: the writer failed; retrying", exc_info=True)

    def _sum_pairs(self) -> None:
        """Behind the batches, on the writer thread only (never in a flush, a close or the exit's): one chunk of
        the rows already stored summed into the pair cells (:meth:`LedgerStore.compact_pairs`,
        :mod:`aicost.ledger.pairs`), at most once a :data:`PAIR_INTERVAL_S`, or at the next wake while chunks
        are left. A failure is logged once and counted (``pair_errors``); the rows stay in the ledger and are
        summed by a later chunk, and reports read them raw meanwhile."""
        now = time.monotonic()
        if now < self._pairs_at or now < self._retry_at or self._closed:
            return
        self._pairs_at = now + PAIR_INTERVAL_S
        with self._write_lock:
            if self._closed or self._store is None:
                return
            try:
                if self._store.compact_pairs():
                    self._pairs_at = now  # more to sum: the next wake, after its batches
                    self._counts["pair_chunks"] += 1
            except LedgerUnavailable:
                pass  # the next batch finds the outage and spills
            except Exception:
                self._counts["pair_errors"] += 1
                log_once("ledger:pairs", logging.ERROR, "aicost ledger: summing rows into the pair cells failed; "
                         "reports read those rows raw until a later try succeeds", exc_info=True)

    def _drain(self, deadline: float | None) -> None:
        """Write the queue in batches. While one batch is in the database, the next is prepared (rows built and
        encoded and staged: :meth:`LedgerStore.prepare`) on the preparing thread; the two overlap
        because the database drivers release the GIL while the database works. A backlog is written in batches
        that double up to 4 x ``batch_size`` (a rollup cell is updated once per batch, so on PostgreSQL a batch of
        20,000 costs the server a fifth less per row than four of 5,000) and shrink again, to half of what is
        left, towards its end.

        Waits for the write lock (another thread's write) no later than ``deadline``, and takes no batch after
        it, nor after the close or exit deadline (:meth:`_take`). A drain that ends after :meth:`close` began
        ends the writer's use of the database (:meth:`_shut`, which spills what is still queued): the thread
        holding the write lock is the only one that closes the database."""
        if not self._write_lock.acquire(timeout=-1 if deadline is None else _left(deadline)):
            return  # another thread is writing past this flush's deadline; the queue is left to it
        try:
            if not self._shut_down:
                self._drain_locked(deadline)
        finally:
            try:
                if self._closed:
                    self._shut()
            finally:
                self._write_lock.release()

    def _drain_locked(self, deadline: float | None) -> None:
        if self._check_spill:  # rows spilled here, or a first look for files left by a process that died
            self._replay_spill(deadline)
        ahead: Future | None = None
        size = self.batch_size
        while True:
            nxt = None
            batch = self._take(size, deadline)
            if batch:
                size = min(2 * size, _MAX_BATCH_FACTOR * self.batch_size)
                nxt = self._prepare_soon(batch, pipeline=ahead is not None or bool(self._queue))
            if ahead is not None:
                try:
                    self._store_batch(*ahead.result())
                except BaseException:  # the next batch, taken and being prepared, goes back to be written later
                    with self._state_lock:
                        self._taken.clear()
                        if nxt is not None:
                            self._queue.extendleft(reversed(batch))
                    raise
                with self._state_lock:
                    del self._taken[:1]  # that batch is stored (or spilled)
            if nxt is None:
                return
            ahead = nxt

    def _take(self, size: int, deadline: float | None) -> list:
        """The next batch from the queue (empty: none to take, or past ``deadline`` or the close / exit deadline),
        kept in ``_taken`` until stored or spilled, so that an exit which cannot wait for this write spills it
        (:meth:`_abandon`). Per batch, not per row: the lock costs nothing measurable."""
        with self._state_lock:  # _abandon takes the queue under it too
            if not self._queue or self._past(deadline):
                return []
            # at most half of what is left, so the end of a backlog goes in shrinking batches and the
            # last write, which nothing overlaps, is short
            take = min(size, max(self.batch_size, len(self._queue) // 2), len(self._queue))
            pop = self._queue.popleft
            batch = [pop() for _ in range(take)]
            self._taken.append(batch)
        return batch

    def _past(self, deadline: float | None) -> bool:
        """True once ``deadline`` or, when closing or exiting, their deadline has passed."""
        sooner = self._sooner(deadline)
        return sooner is not None and time.monotonic() > sooner

    def _prepare_soon(self, batch: list, pipeline: bool) -> Future:
        """:meth:`_prepare` of ``batch``, on the preparing thread when more than one batch is to be written (and
        a thread may be started: never at exit), else here. The result is a future either way."""
        preparer = self._preparer
        if preparer is None and pipeline and self.prepare_ahead and not self._exiting and not sys.is_finalizing():
            with self._state_lock:
                if self._preparer is None and not self._closed:
                    try:
                        self._preparer = _Preparer()
                    except RuntimeError:  # "can't create new thread at interpreter shutdown": prepared here
                        pass
                preparer = self._preparer
        if pipeline and preparer is not None and not self._exiting and not sys.is_finalizing():
            return preparer.submit(self._prepare, batch)
        done: Future = Future()
        done.set_result(self._prepare(batch))
        return done

    def _prepare(self, batch: list) -> tuple[list[LedgerRow], list[FeatureRun], list[Record], PreparedBatch | None]:
        """Rows and runs built from the queued items (:meth:`_built`), and the store's preparation of them (None
        if there is no store now, or it failed: the write then prepares them itself). Never raises."""
        rows, runs, records = self._built(batch)
        prepared = None
        store = self._store
        if store is not None and (rows or runs):
            try:
                prepared = store.prepare(rows, runs)
            except Exception:
                log_once("ledger:prepare", logging.ERROR, "aicost ledger: could not prepare a batch; it is written "
                         "unprepared", exc_info=True)
        return rows, runs, records, prepared

    def _built(self, batch: list) -> tuple[list[LedgerRow], list[FeatureRun], list[Record]]:
        """The rows, runs and records of queued items (an item that cannot be made a row is dropped, counted)."""
        rows, runs, records = [], [], []
        for item in batch:
            if isinstance(item, Record):
                records.append(item)
                continue
            try:
                made = item if isinstance(item, (LedgerRow, FeatureRun)) else row_from_item(item)
            except Exception:
                self._counts["dropped_invalid"] += 1
                log_once("ledger:convert", logging.ERROR, "aicost ledger: could not build a row", exc_info=True)
                continue
            (runs if isinstance(made, FeatureRun) else rows).append(made)
        return rows, runs, records

    def _store_batch(self, rows: list[LedgerRow], runs: list[FeatureRun], records: Sequence[Record] = (),
                     prepared: PreparedBatch | None = None) -> bool:
        if time.monotonic() >= self._retry_at:
            try:
                store = self._connected()
                written = store.write_prepared(prepared) if prepared is not None else store.write(rows, runs)
                self._counts["written"] += written
                self._counts["duplicates"] += len(rows) - written
                self._counts["runs_written"] += len(runs)
                for i, record in enumerate(records):
                    try:
                        record.store_into(store)
                    except LedgerUnavailable:
                        records = records[i:]  # the ones stored stay stored; these are spilled below
                        rows, runs = [], []
                        raise
                    self._counts["records_written"] += 1
                self._up()
                return True
            except LedgerUnavailable as exc:
                self._down(exc)
            except Exception:
                log_once("ledger:write", logging.ERROR, "aicost ledger: a batch could not be written; spilled",
                         exc_info=True)
                self._counts["write_errors"] += 1
                self._retry_at = time.monotonic() + self._backoff
        self._spill(rows, runs, records)
        return False

    def _connected(self) -> LedgerStore:
        if self._store is None or self._pid != os.getpid():
            self._pid = os.getpid()
            self._store = open_store(self.url, setting=self._setting)
        return self._store

    def _down(self, exc: BaseException) -> None:
        self._counts["outages"] += 1
        self._retry_at = time.monotonic() + self._backoff
        self._backoff = min(_MAX_BACKOFF_S, self._backoff * 2)
        if self._store is not None and getattr(self._store, "dialect", "") == "postgresql":
            try:
                self._store.close()
            except Exception:
                pass
            self._store = None
        if log_once("ledger:down", logging.WARNING, "aicost ledger: %s is unreachable (%s); rows are spilled to %s "
                    "and replayed when it is back", self.url if self._store is None else self._store.url, exc,
                    self._spill_dir):
            forget("ledger:up")

    def _up(self) -> None:
        if self._backoff > 1.0:
            self._backoff = 1.0
            forget("ledger:down")
            log_once("ledger:up", logging.INFO, "aicost ledger: %s is reachable again", self.url)

    # -- spill --------------------------------------------------------------------------------------------------
    def _own_spill(self) -> Path:
        return self._spill_dir / f"{self._spill_stem}-{os.getpid()}.jsonl"

    def _spill_files(self) -> list[Path]:
        """This process's spill file and those of processes that are gone (oldest first)."""
        try:
            candidates = sorted(self._spill_dir.glob(f"{self._spill_stem}-*.jsonl"), key=lambda p: p.stat().st_mtime)
        except OSError:
            return []
        mine = self._own_spill()
        found = []
        for path in candidates:
            if path == mine:
                found.append(path)
                continue
            try:  # <stem>-<pid>.jsonl, or <stem>-<pid>.<n>.replay.jsonl while that process replays it
                pid = int(path.stem.rsplit("-", 1)[1].split(".", 1)[0])
            except ValueError:
                continue
            if not _alive(pid):
                found.append(path)
        return found

    def _spill(self, rows: list[LedgerRow], runs: list[FeatureRun], records: Sequence[Record] = ()) -> None:
        path = self._own_spill()
        lines = [json.dumps({"row": r.to_dict()}, separators=(",", ":")) for r in rows]
        lines += [json.dumps({"run": r.to_dict()}, separators=(",", ":")) for r in runs]
        lines += [_record_line(r) for r in records]
        try:
            room = self.spill_max_bytes - (path.stat().st_size if path.exists() else 0)
            data = bytearray()
            kept = 0
            for line in lines:
                encoded = (line + "\n").encode()
                if len(data) + len(encoded) > room:
                    break
                data += encoded
                kept += 1
            if data:
                with open(path, "ab") as f:
                    f.write(data)
                self._check_spill = True
            self._counts["spilled"] += kept
            if kept < len(lines):
                self._counts["dropped_spill_full"] += len(lines) - kept
                log_once("ledger:spill-full", logging.ERROR, "aicost ledger: the spill file %s is full (%d bytes); "
                         "rows are being dropped (counted in stats())", path, self.spill_max_bytes)
        except OSError:
            self._counts["dropped_spill_error"] += len(lines)
            log_once("ledger:spill-error", logging.ERROR, "aicost ledger: cannot write the spill file %s; rows "
                     "are being dropped", path, exc_info=True)

    def _replay_spill(self, deadline: float | None) -> None:
        if time.monotonic() < self._retry_at:
            return
        self._check_spill = False  # set again by any spill below, or if this pass stops early
        for path in self._spill_files():
            if self._past(deadline):
                self._check_spill = True
                return
            # taken: another writer will not replay it too, while this process lives; if it dies before the
            # file is replayed, the next writer adopts the file as it adopts a spill file
            # numbered per process, not per writer: two writers of one ledger share its spill files
            replaying = self._spill_dir / f"{self._spill_stem}-{os.getpid()}.{next(_REPLAY_NUMBERS)}.replay.jsonl"
            try:
                os.replace(path, replaying)
            except OSError:
                continue
            rows: list[LedgerRow] = []
            runs: list[FeatureRun] = []
            records: list[Record] = []
            try:
                with open(replaying, encoding="utf-8") as f:
                    for line in f:
                        if not line.strip():
                            continue
                        try:
                            data = json.loads(line)
                            if "row" in data:
                                rows.append(LedgerRow.from_dict(data["row"]))
                            elif "record" in data:
                                records.append(_record_from(data))
                            else:
                                runs.append(FeatureRun.from_dict(data["run"]))
                        except Exception:
                            self._counts["dropped_invalid"] += 1
            except OSError:
                continue
            replayed = True
            size = self.batch_size
            for i in range(0, max(len(rows), len(runs), len(records)), size):
                if self._past(deadline):  # close, exit or a flush's timeout: the rest is not tried now
                    start = i
                elif self._store_batch(rows[i:i + size], runs[i:i + size], records[i:i + size]):
                    continue
                else:
                    start = i + size  # batch i was spilled by _store_batch
                replayed = False  # the rest is spilled again, to this process's file, for a later pass
                self._spill(rows[start:], runs[start:], records[start:])
                self._check_spill = True
                break
            if replayed:
                self._counts["replayed"] += len(rows) + len(runs) + len(records)
            try:
                os.unlink(replaying)
            except OSError:
                pass
            if not replayed:
                return

    # -- control ------------------------------------------------------------------------------------------------
    def flush(self, timeout_s: float | None = 30.0) -> bool:
        """Write everything queued now, on this thread (and replay a spill if the database is back), waiting no
        longer than ``timeout_s`` for another thread's write to end. True when the queue is empty afterwards."""
        deadline = self._sooner(None if timeout_s is None else time.monotonic() + timeout_s)
        self._retry_at = 0.0  # an explicit flush tries the database now
        try:
            self._drain(deadline)
        except Exception:
            log_once("ledger:flush", logging.ERROR, "aicost ledger: flush failed", exc_info=True)
        return not self._queue

    def close(self, timeout_s: float | None = 30.0) -> None:
        """Flush, stop the threads and close the database, returning within ``timeout_s`` (None: as long as it
        takes). Rows queued afterwards are dropped (counted). No batch is begun after the time is up: what is
        not written by then is spilled, for the next writer of this ledger to replay. A write still under way
        then is not waited for: the thread writing finishes that batch, spills the rest of the queue and closes
        the database itself (only a thread holding the write lock ever closes it). If the process exits first,
        the exit spills what that write had taken (:meth:`_at_exit`)."""
        # the writer thread's drain, too, takes no batch after it; a close at exit (an OpenTelemetry provider's
        # shutdown calls it after aicost's exit flush) waits no longer than the exit does
        deadline = self._stop_by = self._sooner(None if timeout_s is None else time.monotonic() + timeout_s)
        self.flush(_left(deadline))
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_left(deadline))
        self.flush(_left(deadline))  # what arrived meanwhile, then (with the write lock in time) _shut

    def _shut(self) -> None:
        """Under the write lock, once closed: spill what is still queued, stop the preparing thread and close the
        database. Idempotent."""
        left = self._take_all()
        if left:
            self._spill(*self._built(left))
        with self._state_lock:
            preparer, self._preparer = self._preparer, None
        if preparer is not None:
            preparer.stop()
        if self._store is not None:
            try:
                self._store.close()
            except Exception:
                pass
            self._store = None
        self._shut_down = True
        _writers.discard(self)

    def _sooner(self, deadline: float | None) -> float | None:
        """``deadline``, or the close / exit deadline if that is sooner (None: neither)."""
        if self._stop_by is None:
            return deadline
        return self._stop_by if deadline is None else min(deadline, self._stop_by)

    def _at_exit(self, end: float) -> None:
        """Write what is queued by ``end`` (the exit flush's one deadline for every writer: 10 s; sooner if
        :meth:`close` set a nearer one); what is not written by then, including a batch the writer thread is
        still writing (the interpreter will not wait for it), is spilled for the next writer of this ledger: the
        replay is idempotent (a row keeps its id however often it is built), so a batch both written and spilled
        is stored once. Interrupted (Ctrl-C at exit), it still spills."""
        self._exiting = True
        self._stop_by = self._sooner(end)
        try:
            self.flush(_left(self._stop_by))  # closed: the write close() did not wait for, and then _shut
        finally:
            self._abandon()

    def _abandon(self) -> None:
        """At exit: spill the batches taken and not stored yet, and the queue (any thread may still be writing
        one of them, but the interpreter exits without waiting). The writer takes no batch any more: the exit
        deadline has passed."""
        with self._state_lock:
            items = [item for batch in self._taken for item in batch]
            self._taken.clear()
        items += self._take_all()
        if items:
            log_once("ledger:exit-spill", logging.WARNING, "aicost ledger: %d rows were not written by the end "
                     "of the exit flush; they are spilled to %s for the next writer of this ledger", len(items),
                     self._spill_dir)
            self._spill(*self._built(items))

    def _take_all(self) -> list:
        """Everything queued, taken off the queue (under the lock :meth:`_take` holds: never both at once)."""
        with self._state_lock:
            pop = self._queue.popleft
            return [pop() for _ in range(len(self._queue))]

    def _after_fork_in_child(self) -> None:
        """The parent's threads are not in the child: it starts its own on its first row. The rows queued in the
        parent are the parent's to write (the locks are freed by ``_fork``)."""
        self._thread = None
        self._preparer = None
        self._stop_by = None  # a close() under way in the parent is not the child's
        self._queue = collections.deque()
        self._taken = []
        # A connection must not be used across fork: the child opens its own, and keeps the parent's object
        # unclosed (closing it here could disturb the parent's session).
        self._inherited, self._store = self._store, None
        self._counts = collections.Counter()
        self._enqueued = 0

    def stats(self) -> dict[str, int]:
        """Counters: enqueued, written, duplicates, runs_written, records_written, spilled, replayed, outages, and
        every kind of drop (dropped_queue_full, dropped_spill_full, dropped_spill_error, dropped_invalid, dropped_closed).
        A row a call queued while close() was spilling the queue (on_call checks and appends without a lock) is
        counted in dropped_closed here."""
        if self._shut_down and self._queue:  # appended by a call that saw the writer open just before it shut
            self._counts["dropped_closed"] += len(self._take_all())
            log_once("ledger:closed", logging.WARNING, "aicost ledger: a row arrived after the ledger was closed "
                     "(uninstrument); it is dropped (counted in the writer's stats())")
        out = dict(self._counts)
        out["enqueued"] = self._enqueued
        out["queued"] = len(self._queue)
        return out

    def __repr__(self) -> str:
        return f"<LedgerWriter {self.url} queued={len(self._queue)}>"


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


def _left(deadline: float | None) -> float | None:
    """Seconds until ``deadline`` (0 once past it), or None without one."""
    return None if deadline is None else max(0.0, deadline - time.monotonic())


def _spill_location(url: str, spill_path: str | os.PathLike[str] | None) -> tuple[Path, str]:
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    if spill_path is not None:
        path = Path(spill_path)
        return path.parent, path.stem
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "aicost"
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        base = Path(tempfile.gettempdir())
    return base, f"ledger-spill-{digest}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_writers: "weakref.WeakSet[LedgerWriter]" = weakref.WeakSet()
_REPLAY_NUMBERS = itertools.count(1)  # names of the spill files this process has taken to replay


def _flush_all_at_exit() -> None:
    end = time.monotonic() + _EXIT_FLUSH_S  # one deadline for all writers: exit waits 10 s, not 10 s each
    for writer in list(_writers):
        try:
            writer._at_exit(end)
        except BaseException:  # Ctrl-C at exit, too: the next writer still spills (its _at_exit's finally)
            pass


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
