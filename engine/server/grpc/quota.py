"""Rate quotas on every gRPC call (issue 15): a server interceptor after the authentication one,
asking the agent's one QuotaGate (engine/auth/quota_gate.py) for the caller's org
(CURRENT_PRINCIPAL; "" without auth) BEFORE the servicer runs. An org in debt gets
RESOURCE_EXHAUSTED with a `retry-after-ms` trailer (and `streamhouse-error`, so the SDK raises
QuotaExceededError's base BackpressureError and waits that long before its retry); a refused
call changes nothing. Produce is charged its request's bytes (the whole batch, as serialised),
Fetch its answer's bytes once served (the next call pays a debt), every call one request.
Streaming calls are counted once, when they open.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc import aio

from streamhouse.auth.quota import QuotaExceededError
from streamhouse.auth.quota_gate import QuotaGate
from streamhouse.rpc.status import RETRY_AFTER_KEY, status_of
from streamhouse.server.grpc.auth import CURRENT_PRINCIPAL, OPEN_SERVICES, Handler

_PRODUCE = "/streamhouse.v1.Produce/Produce"
_FETCH = "/streamhouse.v1.Fetch/Fetch"


class QuotaInterceptor(aio.ServerInterceptor):
    def __init__(self, gate: QuotaGate) -> None:
        self.gate = gate

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(details)
        method: str = details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        if handler.request_streaming or handler.response_streaming:
            principal = CURRENT_PRINCIPAL.get()
            try:
                await self.gate.admit(principal.org if principal else None, {})
            except QuotaExceededError as exc:
                return _refusal(handler, exc)
            return handler
        return _metered(handler, self.gate, method)


def trailers_of(exc: QuotaExceededError) -> tuple[tuple[str, str], ...]:
    code_trailers = status_of(exc)[1]
    return (*code_trailers, (RETRY_AFTER_KEY, str(max(1, round(exc.retry_after_s * 1000)))))


def _metered(handler: Handler, gate: QuotaGate, method: str) -> Handler:
    inner: Any = handler.unary_unary  # the servicer's coroutine (aio), typed for the sync server in the stubs

    async def behaviour(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        principal = CURRENT_PRINCIPAL.get()
        org = principal.org if principal else None
        amounts = {"produce": request.ByteSize()} if method == _PRODUCE else {}
        try:
            await gate.admit(org, amounts)
        except QuotaExceededError as exc:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), trailers_of(exc))
        response = await inner(request, context)
        if method == _FETCH:
            await gate.record(org, "fetch", response.ByteSize())
        return response

    return grpc.unary_unary_rpc_method_handler(
        behaviour, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
    )


def _refusal(handler: Handler, exc: QuotaExceededError) -> Handler:
    trailers = trailers_of(exc)

    async def abort(_request: Any, context: aio.ServicerContext[Any, Any]) -> None:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc), trailers)

    serializer = handler.response_serializer
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort, response_serializer=serializer)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort, response_serializer=serializer)
    return grpc.unary_stream_rpc_method_handler(abort, response_serializer=serializer)
