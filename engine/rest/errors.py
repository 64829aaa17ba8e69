"""REST errors: every StreamHouseError a route meets becomes the HTTP face's one error body
`{"status", "code", "message"}` (engine/server/http/errors.py), with the HTTP status from the
contract's ERRORS table, so REST answers what gRPC and Kafka answer for the same failure.

`code` is the error class in snake_case without "Error" (TopicNotFoundError → topic_not_found,
BackpressureError → backpressure): stable for programs, finer than the status. The routes run
under `RestRoute`, an APIRoute whose handler turns the exception into that body, so no route
repeats a try/except and a refused request never leaks a stack trace.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from http import HTTPStatus
from typing import Any

from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from streamhouse.api.contract import error_mapping
from streamhouse.storage.errors import BackpressureError, NotLeaderError, StreamHouseError

# Statuses Python's HTTPStatus does not name (nginx's 499) or names too loosely for a client.
_WORDS = {499: "client closed request", 421: "misdirected request", 429: "too many requests"}
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")


def error_code(exc: BaseException) -> str:
    name = type(exc).__name__
    name = name.removesuffix("Error") or name
    return _CAMEL.sub("_", name).lower()


def status_word(status: int) -> str:
    if status in _WORDS:
        return _WORDS[status]
    try:
        return HTTPStatus(status).phrase.lower()
    except ValueError:
        return "error"


def rest_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"status": status_word(status), "code": code, "message": message}, status, headers)


def error_response(exc: StreamHouseError) -> JSONResponse:
    status = error_mapping(exc).http
    headers: dict[str, str] = {}
    if isinstance(exc, BackpressureError):
        headers["Retry-After"] = "1"  # a partition's buffer drains within about a flush
    leader = getattr(exc, "leader", None) if isinstance(exc, NotLeaderError) else None
    if leader:
        headers["StreamHouse-Leader"] = str(leader)
    return rest_error(status, error_code(exc), str(exc) or type(exc).__name__, headers)


class RestRoute(APIRoute):
    """An APIRoute that answers StreamHouseError in the error model (module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except StreamHouseError as exc:
                return error_response(exc)
            except UnicodeEncodeError as exc:
                # JSON can escape a lone surrogate ("\ud800"), which no UTF-8 text can hold:
                # whichever field carried it, the request is bad input, not an agent failure.
                return rest_error(400, "invalid_input", f"the request holds text that is not valid Unicode: {exc}")

        return handle
