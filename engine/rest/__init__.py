"""The REST face of the agent (issue 13): topics, produce, consume, groups, SQL, jobs and
server-sent events over HTTP/JSON, on the front-end contract alone (engine/api/contract.py).

`rest_router(front)` is the one thing the HTTP app (engine/server/http/app.py) mounts."""

from streamhouse.rest.router import rest_router

__all__ = ["rest_router"]
