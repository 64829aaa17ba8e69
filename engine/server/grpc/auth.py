"""API-key authentication of every gRPC call (issue 15): one server interceptor that reads the
`authorization` metadata (`Bearer <key_id>.<secret>`, engine/auth/) and asks the agent's one
Authenticator. A refused call is answered UNAUTHENTICATED (with the `streamhouse-error`
trailer, so the SDK raises AuthenticationError) before its request is even decoded: no servicer
runs, nothing changes.

The standard health service (grpc.health.v1.Health) stays open, as /health/live does on HTTP:
load balancers and Kubernetes' gRPC probes carry no credentials, and it tells nothing but
SERVING. The principal of an accepted call is in `CURRENT_PRINCIPAL` for the code that serves
it (interceptor and handler run in one task), where the isolation and ACL slices will read it.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from grpc import aio

from streamhouse.auth import Authenticator, Principal
from streamhouse.rpc.status import status_of
from streamhouse.storage.errors import AuthenticationError

OPEN_SERVICES = ("/grpc.health.v1.Health/",)
CURRENT_PRINCIPAL: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "streamhouse_grpc_principal", default=None
)
Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"  # generic only in the stubs


class AuthInterceptor(aio.ServerInterceptor):
    def __init__(self, auth: Authenticator) -> None:
        self.auth = auth

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method: str = details.method
        if method.startswith(OPEN_SERVICES):
            return await continuation(details)
        header = _metadata(details, "authorization")
        try:
            principal = await self.auth.authenticate_header("grpc", header)
        except AuthenticationError as exc:
            return _refusal(await continuation(details), exc)
        CURRENT_PRINCIPAL.set(principal)
        return await continuation(details)


def _metadata(details: grpc.HandlerCallDetails, name: str) -> str | None:
    for key, value in details.invocation_metadata or ():
        if key == name:
            return value if isinstance(value, str) else None
    return None


def _refusal(handler: Handler | None, exc: AuthenticationError) -> Handler:
    """A handler of the same shape as the real one that only aborts. No request deserializer:
    the refused request's bytes are never parsed."""
    code, trailers = status_of(exc)
    message = str(exc)

    async def abort(_request: Any, context: aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message, trailers)

    streaming_in = handler is not None and handler.request_streaming
    streaming_out = handler is not None and handler.response_streaming
    serializer = None if handler is None else handler.response_serializer
    if streaming_in and streaming_out:
        return grpc.stream_stream_rpc_method_handler(abort, response_serializer=serializer)
    if streaming_in:
        return grpc.stream_unary_rpc_method_handler(abort, response_serializer=serializer)
    if streaming_out:
        return grpc.unary_stream_rpc_method_handler(abort, response_serializer=serializer)
    return grpc.unary_unary_rpc_method_handler(abort, response_serializer=serializer)
