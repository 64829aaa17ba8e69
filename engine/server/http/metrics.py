"""`/metrics`: the agent's Prometheus registry in the text exposition format (docs/DESIGN.md §6).

The renderer is the caller's (the agent refreshes its gauges and job series first, so it may be
async); the route only sends its bytes with the content type the registry chose.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import Response

from streamhouse.auth.metrics_scope import scoped_metrics
from streamhouse.server.http.errors import ErrorBody
from streamhouse.server.http.routes import get_route
from streamhouse.storage import namespace as ns

# (body, content type); an async renderer may first refresh what it reports.
MetricsRenderer = Callable[[], tuple[bytes, str] | Awaitable[tuple[bytes, str]]]


def metrics_router(render: MetricsRenderer) -> APIRouter:
    router = APIRouter(tags=["metrics"])

    @get_route(
        router,
        "/metrics",
        response_class=Response,
        responses={
            200: {"content": {"text/plain": {}}, "description": "Prometheus text exposition format"},
            500: {"model": ErrorBody, "description": "The registry could not be rendered (logged by the agent)"},
        },
        summary="Prometheus metrics of this agent",
    )
    async def metrics() -> Response:
        rendered = render()
        body, content_type = await rendered if inspect.isawaitable(rendered) else rendered
        body = scoped_metrics(body, ns.current())  # an org's request: its own series only (issue 15)
        # The registry's own content type, byte for byte (a media_type would get a charset added).
        return Response(body, headers={"content-type": content_type})

    return router
