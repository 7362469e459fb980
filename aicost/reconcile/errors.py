"""What can go wrong when reconciling, each with a message that says what to do. None ever holds the admin key."""

from __future__ import annotations

from ..errors import ConfigurationError

__all__ = ["ReconcileError", "AdminKeyMissing", "AdminKeyRejected", "BillFetchError"]


class ReconcileError(Exception):
    """Base of the errors below."""


class AdminKeyMissing(ReconcileError, ConfigurationError):
    """The environment variable holding the vendor's admin key is unset or empty."""


class AdminKeyRejected(ReconcileError):
    """The vendor answered 401 / 403: the key is wrong, or is not an admin key."""


class BillFetchError(ReconcileError):
    """The report could not be fetched completely. Never swallowed: a partial bill would under-count spend."""
