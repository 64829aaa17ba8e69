"""The credential of the request being served, for the calls it makes onward (issue 15).

An agent that serves a REST produce for a partition another agent leads produces there over
gRPC (engine/rest/forward.py). The leader must see the same principal the client is, so the
HTTP guard leaves the accepted `Authorization` value here and the forwarding call sends it as
its `authorization` metadata. A context variable, so it follows the request's task (and
asyncio.to_thread copies it to the thread that makes the blocking call) and nothing else.
"""

from __future__ import annotations

import contextvars

REQUEST_AUTHORIZATION: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "streamhouse_request_authorization", default=None
)


def forwarded_metadata() -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying the current request's credential onward (empty without one)."""
    value = REQUEST_AUTHORIZATION.get()
    return () if value is None else (("authorization", value),)
