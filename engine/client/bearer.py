"""The SDK's API key on every gRPC call (issue 15): `authorization: Bearer <key_id>.<secret>`
metadata added by a channel interceptor, so no call site can forget it (engine/auth/ has the
token format). The key is checked for shape here, so a typo fails at connect, not at the agent."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import grpc

from streamhouse.auth.secret_hash import parse_token
from streamhouse.storage.errors import AuthenticationError, InvalidInputError


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: Any
    compression: Any


class BearerInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    def __init__(self, api_key: str) -> None:
        checked_api_key(api_key)
        self._header = ("authorization", f"Bearer {api_key}")

    def __repr__(self) -> str:  # never the key
        return "BearerInterceptor(***)"

    def _with_key(self, details: Any) -> _Details:
        metadata = [*(details.metadata or ()), self._header]
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)

    def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._with_key(details), request)

    def intercept_stream_unary(self, continuation: Callable[..., Any], details: Any, requests: Iterator[Any]) -> Any:
        return continuation(self._with_key(details), requests)

    def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Iterator[Any]) -> Any:
        return continuation(self._with_key(details), requests)


def checked_api_key(api_key: str | None) -> str | None:
    """`api_key` unchanged, or InvalidInputError if it is not of a key's shape (never echoed)."""
    if api_key is not None:
        try:
            parse_token(api_key)
        except AuthenticationError:
            raise InvalidInputError("api_key is not a StreamHouse API key (<key id>.<secret>)") from None
    return api_key


def with_api_key(channel: grpc.Channel, api_key: str | None) -> grpc.Channel:
    return channel if api_key is None else grpc.intercept_channel(channel, BearerInterceptor(api_key))
