"""Claude's server tools as its Messages responses show them, wherever they come from: Anthropic's API through the
``anthropic`` SDK, or Bedrock's InvokeModel stream through boto3, whose chunks are the same Messages events. One
reading for every route, so a tool is billed the same whichever way the call went.

* Web search is billed per search, counted in ``usage.server_tool_use.web_search_requests`` and priced at the model's
  web search rate (``Usage.web_search_requests``). Web fetch is billed as tokens alone.
* Code execution is billed by container time (beyond a daily free allowance), which no response reports. A message's
  ``container`` (a stream's, in its ``message_delta``'s ``delta``) is set when a container tool ran ("non-null if a
  container tool (e.g. code execution) was used", the SDK's types), so such a call is cost-unknown, naming it
  (``ResponseMeta.hosted_tools``), not its tokens alone. One top-level field, not a walk of the content blocks.
"""

from __future__ import annotations

from typing import Any

from ..usage import Usage, read_count
from ..vendor import field, nested

_CONTAINER_TOOLS = ("code_execution",)
_SEARCH_TOOLS = ("web_search",)


def container_tools(container: Any) -> tuple[str, ...]:
    """The container tool's name (for ``ResponseMeta.hosted_tools``) when the response carries a container."""
    return _CONTAINER_TOOLS if container is not None else ()


def read_web_searches(usage: Usage, server_tool_use: Any) -> None:
    """A usage's ``server_tool_use`` (None when absent: ``usage`` is left as it is): its ``web_search_requests``,
    checked (``usage.read_count``), on ``usage``. One that is not an object makes the usage invalid."""
    server_tools = nested(usage, server_tool_use, "server_tool_use")
    if server_tools is not None:
        usage.web_search_requests = read_count(usage, field(server_tools, "web_search_requests"),
                                               "web_search_requests")


def unpriced_searches(server_tool_use: Any) -> tuple[str, ...]:
    """For ``ResponseMeta.hosted_tools``: web search, when ``server_tool_use`` shows searches (or a count that is not
    one) but the call has no usage to count them on (a stream cut before its usage: the core estimates the tokens).
    Its cost is then unknown, naming the searches, never its estimated tokens alone."""
    seen = Usage()
    read_web_searches(seen, server_tool_use)
    return _SEARCH_TOOLS if seen.web_search_requests or seen.invalid is not None else ()
