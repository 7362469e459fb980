"""Text cells of the CSV files aicost writes, kept from running as formulas when the file is opened in a spreadsheet.

A spreadsheet takes a cell that starts with ``=``, ``+``, ``-`` or ``@`` for a formula (one behind a leading tab or
carriage return too), and the text in aicost's CSV cells is not all aicost's own: team, feature, customer, user and
tags can come from upstream baggage, a model name from the request, a reconciliation's from the vendor's bill. So,
as OWASP advises against CSV injection, a text cell that starts with one of those characters is written with a
leading ``'``, which spreadsheets show as text and do not evaluate. A cell that already starts with ``'`` gets one
too, so the rule can be undone: a reader drops the first ``'`` of a text cell that starts with one.

Only text cells: numbers (counts, money, a negative cost like ``-0.5``, times) are written as they are, numbers.
Used by every CSV writer: ``aicost report --format csv`` (the group keys; on PostgreSQL the database writes the
numbers of each line, the client its keys), ``aicost export --format focus`` and ``aicost reconcile --format csv``.
JSON and Parquet carry types, and are written unchanged.
"""

from __future__ import annotations

__all__ = ["FORMULA_STARTS", "csv_text"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")  # OWASP's list of the first characters a spreadsheet evaluates
_ESCAPED = frozenset((*FORMULA_STARTS, "'"))


def csv_text(value: str) -> str:
    """``value`` as a CSV text cell: with a leading ``'`` when it starts with a formula character (or ``'``)."""
    return "'" + value if value[:1] in _ESCAPED else value
