"""API-key authentication of the HTTP face (issue 15): a pure ASGI middleware in front of every
route, asking the agent's one Authenticator (engine/auth/) about the `Authorization` header
(`Bearer <key_id>.<secret>`, or Basic with the key id as user and the secret as password).

What stays open: `/health/live` only. A load balancer's or kubelet's liveness probe carries no
credentials and learns nothing but "the process answers" from it (Kubernetes' and Kafka's
practice: liveness open, everything else authenticated). `/health/ready` names failing stores
and partitions, and /metrics names topics, so both need a key (Prometheus sends one with
`authorization` or `basic_auth` in its scrape config).

A refusal is 401 with `WWW-Authenticate` and nothing else runs: no route, no body read. Its
body is the face's error model (`{"status", "code": "unauthenticated", "message"}`) and, under
/registry, the schema registry's (`{"error_code": 40101, "message"}`, Confluent's code for
unauthorized), so each client reads the error it knows. The accepted principal is put in the
ASGI scope (`scope["state"]["principal"]`, `request.state.principal`) for later slices.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from streamhouse.auth import Authenticator
from streamhouse.auth.context import REQUEST_AUTHORIZATION
from streamhouse.server.http.errors import guard_refusal
from streamhouse.storage.errors import AuthenticationError

OPEN_PATHS = frozenset({"/health/live"})
CHALLENGE = 'Bearer realm="streamhouse", Basic realm="streamhouse", charset="UTF-8"'
_REGISTRY_UNAUTHORIZED = 40101


class AuthGuard:
    def __init__(self, app: ASGIApp, auth: Authenticator) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        try:
            principal = await self.auth.authenticate_header("http", header)
        except AuthenticationError as exc:
            await _refusal(scope["path"], exc)(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        REQUEST_AUTHORIZATION.set(header)  # onward calls speak for the same principal (auth/context.py)
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            try:
                return str(value.decode("latin-1"))
            except UnicodeDecodeError:
                return None
    return None


def _refusal(path: str, exc: AuthenticationError) -> JSONResponse:
    return guard_refusal(path, 401, _REGISTRY_UNAUTHORIZED, str(exc), {"WWW-Authenticate": CHALLENGE})
