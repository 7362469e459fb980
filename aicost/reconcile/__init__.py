"""Reconcile the ledger with the vendor's bill, and find the spend nobody instrumented (shadow AI).

``aicost reconcile --vendor openai --period 2026-11`` (or :func:`reconcile` in Python) fetches the vendor's admin
usage and cost reports, compares them with the ledger per day x model (x project / workspace x API key id), and
says what matched, what is on the bill but not in the ledger (unexplained), what is in the ledger but not on the
bill (over-attributed), and where tokens match but money does not (price drift). See docs/reconcile.md.

A feature package: it reads the ledger through its API; the core never imports it.
"""

from .compare import Cell, Source, Tolerances
from .errors import AdminKeyMissing, AdminKeyRejected, BillFetchError, ReconcileError
from .render import render_csv, render_json, render_table
from .result import Reconciliation
from .run import UnexplainedSpendAlert, reconcile
from .vendors import APIS

__all__ = [
    "reconcile", "Reconciliation", "Cell", "Source", "Tolerances", "UnexplainedSpendAlert", "APIS",
    "ReconcileError", "AdminKeyMissing", "AdminKeyRejected", "BillFetchError",
    "render_table", "render_csv", "render_json",
]
