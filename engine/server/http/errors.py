"""The HTTP face's one error model: every error, from a route, the router or the connection
protocol, is a JSON body `{"status", "code", "message"}` (docs/DESIGN.md §10).

`status` keeps the word the agent's first HTTP server put there ("not found"), `code` is a stable
snake_case token for programs, `message` a sentence for people. No stack trace ever reaches the
client: an unexpected exception is logged once and answered `internal_error` (limits.py). Front ends
with their own wire format for errors (the schema registry's `error_code`) install their own
handlers on their router; this is the default for everything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from streamhouse.registry.errors import MEDIA_TYPE

# status → (the `status` word, the stable `code`); anything else falls back to the HTTP phrase.
_WORDS: dict[int, tuple[str, str]] = {
    400: ("bad request", "bad_request"),
    401: ("unauthorized", "unauthenticated"),  # the auth guard (auth.py)
    404: ("not found", "not_found"),
    405: ("method not allowed", "method_not_allowed"),
    408: ("request timeout", "request_timeout"),
    413: ("request too large", "request_too_large"),
    422: ("invalid request", "invalid_request"),
    429: ("too many requests", "quota_exceeded"),  # the rate-quota guard (quota.py)
    431: ("request header too large", "request_header_too_large"),
    500: ("internal error", "internal_error"),
}

REGISTRY_PREFIX = "/registry"
_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")  # sorted: a stable Allow header
_PROBE_SCOPE: Scope = {"type": "http", "root_path": "", "headers": [], "query_string": b""}


class ErrorBody(BaseModel):
    """What every error response carries (the OpenAPI document names it)."""

    status: str
    code: str
    message: str


def error_body(status: int, message: str | None = None) -> dict[str, str]:
    phrase = HTTPStatus(status)
    word, code = _WORDS.get(status, (phrase.phrase.lower(), phrase.phrase.lower().replace(" ", "_")))
    return {"status": word, "code": code, "message": message or f"{phrase.description}."}


def error_response(status: int, message: str | None = None, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def guard_refusal(path: str, status: int, registry_code: int, message: str, headers: Mapping[str, str]) -> JSONResponse:
    """A refusal by a guard that runs before every route (auth, rate quotas): under /registry in
    the schema registry's own shape (its media type and 5-digit `error_code`, which Confluent's
    clients read), elsewhere in the default one."""
    if path == REGISTRY_PREFIX or path.startswith(REGISTRY_PREFIX + "/"):
        body = {"error_code": registry_code, "message": message}
        response = JSONResponse(body, status_code=status, headers=headers)
        response.headers["content-type"] = MEDIA_TYPE
        return response
    return error_response(status, message, headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    status = exc.status_code
    # The framework's own details are just the phrase again; say what and where instead.
    message = exc.detail if exc.detail != HTTPStatus(status).phrase else None
    if status == 404 and message is None:
        message = f"no route for {request.method} {request.url.path}"
    if status == 405:
        headers["Allow"] = ", ".join(_allowed_methods(request))
        message = message or f"{request.method} is not allowed on {request.url.path}; use {headers['Allow']}"
    return error_response(status, message, headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path, found by asking each route (the public
    `matches`). Starlette's own Allow names only the first route that matched the path, but one
    path often has several routes (GET and its HEAD twin in routes.py; later GET /topics beside
    POST /topics). Only a 405 pays for this."""
    allowed = []
    for method in _METHODS:
        probe: Scope = {**_PROBE_SCOPE, "method": method, "path": request.scope["path"]}
        if any(route.matches(probe)[0] is Match.FULL for route in request.app.routes):
            allowed.append(method)
    return allowed


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    # Where and what, without echoing the input back (it may be large or sensitive).
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error.get('loc', ()))}: {error.get('msg', 'invalid')}"
        for error in exc.errors()[:10]
    )
    return error_response(422, f"invalid request: {problems}")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
