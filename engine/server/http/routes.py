"""Route helpers shared by the HTTP face's routers.

`get_route` registers a GET that also answers HEAD. FastAPI, unlike Starlette, does not add HEAD
to GET routes, and listing both methods on one route gives the OpenAPI document two operations
with one operationId. So HEAD is a second, unlisted route on the same endpoint: the document shows
the GET, and HEAD (same status and headers, no body: uvicorn drops it) follows from HTTP itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def get_route(router: APIRouter, path: str, **kwargs: Any) -> Callable[[Endpoint], Endpoint]:
    def register(endpoint: Endpoint) -> Endpoint:
        router.add_api_route(path, endpoint, methods=["GET"], **kwargs)
        router.add_api_route(path, endpoint, methods=["HEAD"], include_in_schema=False, **kwargs)
        return endpoint

    return register
