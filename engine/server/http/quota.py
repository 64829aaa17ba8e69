"""Rate quotas on the HTTP face (issue 15): a pure ASGI middleware after the API-key one (auth.py
puts the principal in the scope), asking the agent's one QuotaGate (engine/auth/quota_gate.py)
about the caller's org ("" without auth: the server's defaults) BEFORE the route runs.

Metered: REST (/v1) and the schema registry (/registry), one request each; a REST produce
(`POST /v1/topics/<t>/records`) is also charged its body's declared bytes (Content-Length, the
batch as sent), and every answer's body bytes count as fetched once sent (the next request pays a
debt), as gRPC does. Health, metrics and the OpenAPI document are never throttled: a scraper or
a probe must not be turned away by the org it authenticates as.

An org in debt gets 429 with `Retry-After` (whole seconds, rounded up, as RFC 9110 allows no
fraction) and `Retry-After-Ms` (the exact wait), in the face's error model (`{"status", "code":
"quota_exceeded", "message"}`), under /registry in the registry's (`{"error_code": 42901,
"message"}`); nothing runs, no body is read, so a refused produce stores nothing.
"""

from __future__ import annotations

import math

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from streamhouse.auth.quota import QuotaExceededError
from streamhouse.auth.quota_gate import QuotaGate
from streamhouse.server.http.errors import guard_refusal

METERED = ("/v1/", "/registry/")
_REGISTRY_TOO_MANY = 42901  # the registry's 5-digit convention: HTTP status, then a detail digit


class QuotaGuard:
    def __init__(self, app: ASGIApp, gate: QuotaGate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path + "/").startswith(METERED):
            await self.app(scope, receive, send)
            return
        principal = scope.get("state", {}).get("principal")
        org: str | None = principal.org if principal is not None else None
        amounts = {"produce": _content_length(scope)} if _is_produce(scope["method"], path) else {}
        try:
            await self.gate.admit(org, amounts)
        except QuotaExceededError as exc:
            await _refusal(path, exc)(scope, receive, send)
            return
        sent = 0

        async def counting(message: Message) -> None:
            nonlocal sent
            if message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, counting)
        finally:
            if sent:
                await self.gate.record(org, "fetch", sent)


def _is_produce(method: str, path: str) -> bool:
    parts = path.strip("/").split("/")
    return method == "POST" and len(parts) == 4 and parts[:2] == ["v1", "topics"] and parts[3] == "records"


def _content_length(scope: Scope) -> int:
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return max(0, int(value))
            except ValueError:
                return 0  # the request guard (limits.py) refuses it
    return 0


def _refusal(path: str, exc: QuotaExceededError) -> JSONResponse:
    headers = {
        "Retry-After": str(max(1, math.ceil(exc.retry_after_s))),
        "Retry-After-Ms": str(max(1, math.ceil(exc.retry_after_s * 1000))),
    }
    return guard_refusal(path, 429, _REGISTRY_TOO_MANY, str(exc), headers)
