"""The REST face as one router for the HTTP app (engine/server/http/app.py): every resource
under /v1, each in its own module, all on the front-end contract alone."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from streamhouse.api.contract import FrontEnd
from streamhouse.api.tls import ClientTls
from streamhouse.registry.service import RegistryService
from streamhouse.rest.consume import consume_router
from streamhouse.rest.events import events_router
from streamhouse.rest.groups import groups_router
from streamhouse.rest.jobs import jobs_router
from streamhouse.rest.produce import produce_router
from streamhouse.rest.sql import sql_router
from streamhouse.rest.topics import topics_router


def rest_router(
    front: FrontEnd,
    stopping: asyncio.Event | None = None,
    registry: RegistryService | None = None,
    peer_tls: ClientTls | None = None,
) -> APIRouter:
    """`stopping`: set when the agent begins to stop; open event streams end on it. `registry`:
    the schema registry produce by subject serialises with and consume decodes with (without
    it, those are refused). `peer_tls`:
    how produce forwarding reaches other agents when the cluster serves TLS."""
    router = APIRouter()
    for part in (
        topics_router(front),
        produce_router(front, registry, peer_tls),
        consume_router(front, registry),
        events_router(front, stopping or asyncio.Event(), registry),
        groups_router(front),
        sql_router(front),
        jobs_router(front),
    ):
        router.include_router(part)
    return router
