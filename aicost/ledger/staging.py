"""A SQLite batch staged before its write transaction: its rows and runs in a small in-memory database image.

Why: handing SQLite a batch row by row (``executemany``: bind 48 values, step, bind the next) keeps the writing
thread going back and forth between Python, which holds the GIL, and SQLite, which does not. The background
writer's preparing thread does that part here instead, into a private in-memory database, while the writer thread
writes the previous batch; the image (``Connection.serialize``) is then attached to the ledger's connection
(:data:`STAGE`) for the write that uses it, and the write transaction is a few statements that run entirely
inside SQLite, without the GIL: ``INSERT ... SELECT`` of the rows and runs, the rollup delta summed over the staged
rows (:func:`aicost.ledger.rollup.rollup_sql` with ``schema=STAGE``: the same SQL as the by-id sums, over the same
values), the folds and the commit. The two threads then overlap on a machine with two cores.

The store sums only staged rows it inserted: the staged rows and runs are inserted in a savepoint, and one whose
key is stored already fails that insert. Then (a replay, rows another process stored first) the savepoint is
undone, the stored rows and runs are deleted from the stage, and what is left (all new) is inserted and summed
the same way, so a row is never counted twice. (A new row that took at staging the outcome of a run that turns
out to be stored already is encoded again, and that batch is inserted row by row and summed by id.)
"""

from __future__ import annotations

import sqlite3
from typing import Sequence

from .schema import ROW_COLUMNS, RUN_COLUMNS

__all__ = ["STAGE", "can_stage", "stage_batch"]

STAGE = "aicost_stage"  # the schema name the image is attached under, on the ledger's connection


def can_stage() -> bool:
    """Whether this Python's sqlite3 can move a database image between connections (3.11+)."""
    return hasattr(sqlite3.Connection, "serialize") and hasattr(sqlite3.Connection, "deserialize")


def stage_batch(row_params: Sequence[tuple], run_params: Sequence[tuple]) -> bytes:
    """The image of an in-memory database holding ``aicost_ledger`` (``row_params``: values in
    :data:`~aicost.ledger.schema.ROW_COLUMNS` order, as the store binds them) and ``aicost_runs``
    (``run_params``), in batch order."""
    conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
    try:
        # Untyped columns: each value keeps the type it was bound with, and the ledger's columns apply their own
        # affinity when the rows are copied in, exactly as if they had been bound there.
        conn.execute(f"CREATE TABLE aicost_ledger ({', '.join(ROW_COLUMNS)})")
        conn.execute(f"CREATE TABLE aicost_runs ({', '.join(RUN_COLUMNS)})")
        conn.execute("BEGIN")
        conn.executemany(f"INSERT INTO aicost_ledger VALUES ({', '.join('?' * len(ROW_COLUMNS))})", row_params)
        conn.executemany(f"INSERT INTO aicost_runs VALUES ({', '.join('?' * len(RUN_COLUMNS))})", run_params)
        conn.execute("COMMIT")
        return conn.serialize()
    finally:
        conn.close()
