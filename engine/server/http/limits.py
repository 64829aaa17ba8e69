"""The outermost guard of the HTTP face: request body size, and the last word on a route that fails.

The request head is bounded by the connection protocol (protocol.py); the body is bounded here,
before any route reads it: a declared Content-Length over the limit is refused at once, and a
chunked body that grows past it fails the read that crossed it. Both answer 413 in the error
model (errors.py). A route that raises is logged once, with its stack, on the agent's log and
answered `internal_error`: the client never sees a stack trace (docs/DESIGN.md §10).
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamhouse.server.http.errors import error_response

log = logging.getLogger(__name__)


class BodyTooLargeError(HTTPException):
    """An HTTPException so FastAPI's body parsing lets it through to the error handler unchanged."""

    def __init__(self, limit: int) -> None:
        # Close after answering: the rest of the body is not worth reading to keep the connection.
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes", {"Connection": "close"})


class RequestGuard:
    """Pure ASGI middleware (no per-request task or buffering, unlike BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.max_body_bytes
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            refusal = BodyTooLargeError(limit)
            await error_response(413, refusal.detail, refusal.headers)(scope, receive, send)
            return
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLargeError(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except Exception:
            log.exception("HTTP %s %s failed", scope.get("method"), scope.get("path"))
            if started:
                raise  # half a response is out: uvicorn closes the connection, which is all that is left
            await error_response(500, "the agent failed to answer this request; its log says why")(scope, receive, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 has already refused a malformed Content-Length with a 400
    return None
