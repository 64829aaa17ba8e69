"""Liveness and readiness (docs/DESIGN.md §6): `/health/live` answers while the process serves,
`/health/ready` asks the agent and says why not.

The readiness check is bounded: one that hangs (a metadata store that stopped answering) is a
503 after `timeout_s`, and one that raises is a 503 naming the error, so a probe always gets an
answer and never a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from streamhouse.server.http.routes import get_route
from streamhouse.storage import namespace as ns

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]


class Live(BaseModel):
    status: str = "live"


class Ready(BaseModel):
    status: str = "ready"


class NotReady(BaseModel):
    status: str = "not ready"
    reason: str


def health_router(ready: ReadinessCheck, *, timeout_s: float = 2.0) -> APIRouter:
    router = APIRouter(prefix="/health", tags=["health"])

    @get_route(
        router,
        "/live",
        response_model=Live,
        summary="Liveness: 200 while the agent process serves",
    )
    async def live() -> JSONResponse:
        return JSONResponse({"status": "live"})

    @get_route(
        router,
        "/ready",
        response_model=Ready,
        responses={503: {"model": NotReady, "description": "Not ready, with the reason"}},
        summary="Readiness: 200 when the metadata and object stores answer, else 503 and why",
    )
    async def readiness() -> JSONResponse:
        try:
            ok, reason = await asyncio.wait_for(ready(), timeout_s)
        except TimeoutError:
            ok, reason = False, f"readiness check timed out after {timeout_s:g}s"
        except Exception as e:
            ok, reason = False, f"readiness check failed: {type(e).__name__}: {e}"
        if ok:
            return JSONResponse({"status": "ready"})
        reason = ns.scrub_text(reason, ns.current())  # names no other org's resource (issue 15)
        return JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    return router
