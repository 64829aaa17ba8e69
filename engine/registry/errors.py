"""The registry's error bodies, Confluent's shape: `{"error_code": 40401, "message": …}` with the
HTTP status its first three digits (404), for every failure under the registry's routes,
including routes it does not serve and malformed requests, so Confluent clients raise their
usual SchemaRegistryError with the usual code."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from streamhouse.registry.compat.errors import InvalidSchemaError as CompatInvalidSchemaError
from streamhouse.storage import namespace as ns
from streamhouse.storage.errors import (
    AuthorizationError,
    InvalidInputError,
    StorageUnavailableError,
    StreamHouseError,
)
from streamhouse.storage.schemas.errors import RegistryError

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryErrorBody(BaseModel):
    """Every registry error (the OpenAPI document names it for each registry route)."""

    error_code: int
    message: str


class RegistryResponse(JSONResponse):
    media_type = MEDIA_TYPE


def error_response(code: int, message: str) -> RegistryResponse:
    status = int(str(code)[:3])
    return RegistryResponse({"error_code": code, "message": message}, status_code=status)


def error_code(exc: BaseException) -> int:
    """Confluent's code for an exception: the registry's own, 42201 for a schema a checker could
    not parse, 50001 for the store (unreachable or failing), 400/404/405 for the HTTP layer."""
    if isinstance(exc, RegistryError):
        return exc.error_code
    if isinstance(exc, CompatInvalidSchemaError):
        return 42201
    if isinstance(exc, HTTPException):
        return exc.status_code
    if isinstance(exc, AuthorizationError):
        return 40301  # Confluent's "user is denied operation" (no ACL allows it, engine/auth/acl.py)
    if isinstance(exc, (RequestValidationError, InvalidInputError)):
        return 400
    if isinstance(exc, StorageUnavailableError):
        return 50001
    return 50001 if isinstance(exc, StreamHouseError) else 500


class RegistryRoute(APIRoute):
    """Every route of the registry answers its errors in Confluent's shape (FastAPI has no
    per-router exception handlers; a route class wrapping the handler is its documented way)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:  # each one becomes a body; nothing escapes as a stack trace
                code = error_code(exc)
                if code in (500, 50001) and not isinstance(exc, StreamHouseError):
                    log.exception("schema registry: %s %s failed", request.method, request.url.path)
                    return error_response(code, "internal error (logged by the agent)")
                return error_response(code, _message(exc))

        return guarded


def _message(exc: Exception) -> str:
    if isinstance(exc, RequestValidationError):
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', 'invalid')}" for err in exc.errors()[:10]
        )
        return f"invalid request: {problems}"
    if isinstance(exc, HTTPException):
        return f"HTTP {exc.status_code} {exc.detail}"
    if isinstance(exc, StreamHouseError):  # the org's own subject names, not stored ones (storage/namespace.py)
        return str(ns.scrub(exc, ns.current()))
    return str(exc)
