"""aicost's own HTTP requests (reconcile's admin reports, alert webhooks): urllib, following no redirect."""

from __future__ import annotations

import urllib.request
from typing import Any

__all__ = ["open_url"]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx stays an HTTPError naming its status. Followed, urllib would send the request's headers (an admin
    key) on to the address it names, and answer a POST's 301/302/303 with a GET without the body (a webhook that
    never got the alert, counted as delivered)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def open_url(request: urllib.request.Request, timeout: float) -> Any:
    """``urlopen(request)`` following no redirect. The opener is made per request: it reads the environment's
    proxy settings as they are then."""
    return urllib.request.build_opener(_NoRedirect).open(request, timeout=timeout)
