"""The agent's HTTP face as one FastAPI application (docs/DESIGN.md §10).

`create_app` takes only what the routes need (the agent's readiness check and its metrics
renderer), never the agent itself, so each router can be built and tested alone. Each front end
adds one router here: health.py and metrics.py today, REST and the schema registry next (issue
13), each from its own module taking its own dependencies. One OpenAPI document covers them all
at `/openapi.json`. The interactive docs pages (/docs, /redoc) stay off: they load their scripts
from a CDN, which an agent on a private network cannot reach, and a page that renders blank is
worse than none; any OpenAPI viewer can open the document instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from fastapi import APIRouter, FastAPI

from streamhouse.api.contract import FrontEnd
from streamhouse.api.tls import ClientTls
from streamhouse.auth import Authenticator
from streamhouse.auth.quota_gate import QuotaGate
from streamhouse.registry.service import RegistryService
from streamhouse.rest import rest_router
from streamhouse.server.http.auth import AuthGuard
from streamhouse.server.http.errors import ErrorBody, install_error_handlers
from streamhouse.server.http.health import ReadinessCheck, health_router
from streamhouse.server.http.limits import RequestGuard
from streamhouse.server.http.metrics import MetricsRenderer, metrics_router
from streamhouse.server.http.quota import QuotaGuard

OPENAPI_PATH = "/openapi.json"
# Health, metrics and the coming REST produce (issue 13 batches of 1,000 records) fit easily;
# a client sending more is refused before its body is read.
MAX_BODY_BYTES = 16 * 1024 * 1024


def create_app(
    *,
    ready: ReadinessCheck,
    metrics: MetricsRenderer,
    ready_timeout_s: float = 2.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    front: FrontEnd | None = None,
    stopping: asyncio.Event | None = None,
    routers: Sequence[APIRouter] = (),
    registry: RegistryService | None = None,
    auth: Authenticator | None = None,
    peer_tls: ClientTls | None = None,
    quotas: QuotaGate | None = None,
) -> FastAPI:
    """`front`: the agent's front-end contract, for REST (engine/rest/, under /v1); `stopping`
    is set when the agent begins to stop, ending REST's event streams; `auth`: API keys are
    required on every route but /health/live (auth.py)."""
    app = FastAPI(
        title="StreamHouse agent",
        version=_version(),
        summary="The agent's HTTP face: health, metrics, the REST API (/v1) and the schema registry.",
        openapi_url=OPENAPI_PATH,
        docs_url=None,
        redoc_url=None,
        # Every route may answer an error in the one error model (errors.py).
        responses={"default": {"model": ErrorBody, "description": "An error: status, code and message"}},
    )
    install_error_handlers(app)
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)
    if quotas is not None:  # inside the auth guard: it meters the principal's org (quota.py)
        app.add_middleware(QuotaGuard, gate=quotas)
    if auth is not None:  # added last, so outermost: a refusal reads no body
        app.add_middleware(AuthGuard, auth=auth)
    app.include_router(health_router(ready, timeout_s=ready_timeout_s))
    app.include_router(metrics_router(metrics))
    if front is not None:
        app.include_router(rest_router(front, stopping, registry, peer_tls))  # registry: REST's AVRO produce
    for router in routers:  # the other front ends' (the schema registry's, engine/registry/routes.py)
        app.include_router(router)
    return app


def _version() -> str:
    try:
        return version("streamhouse")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"
