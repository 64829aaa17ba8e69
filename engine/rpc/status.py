"""StreamHouseError ↔ gRPC status, both ways (the conventions are in proto/streamhouse.proto;
the class → status direction is the front-end contract's error table, engine/api/contract.py ERRORS).

The server also sends the exception's class name in trailing metadata, so the remote SDK
raises the same exception class the embedded engine would, not just one per status code."""

from __future__ import annotations

import json

import grpc

from streamhouse.api.contract import error_mapping
from streamhouse.storage import errors as e

LEADER_KEY = "streamhouse-leader"
ERROR_KEY = "streamhouse-error"
VALUE_KEY = "streamhouse-invalid-value"
RANGE_KEY = "streamhouse-offset-out-of-range"
RETRY_AFTER_KEY = "retry-after-ms"  # how long a throttled client waits (server/grpc/quota.py)

_BY_CODE: dict[grpc.StatusCode, type[e.StreamHouseError]] = {
    grpc.StatusCode.NOT_FOUND: e.NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: e.InvalidInputError,
    grpc.StatusCode.ALREADY_EXISTS: e.AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: e.NotLeaderError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: e.BackpressureError,
    grpc.StatusCode.ABORTED: e.FencedError,
    grpc.StatusCode.UNAVAILABLE: e.StorageUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: e.StorageUnavailableError,
}


def status_of(exc: e.StreamHouseError) -> tuple[grpc.StatusCode, tuple[tuple[str, str], ...]]:
    """The status code and trailing metadata that carry `exc` to a client."""
    code = grpc.StatusCode[error_mapping(exc).grpc]
    trailers: list[tuple[str, str]] = [(ERROR_KEY, type(exc).__name__)]
    if isinstance(exc, e.NotLeaderError) and exc.leader:
        trailers.append((LEADER_KEY, exc.leader))
    if isinstance(exc, e.InvalidValueError):
        # The remote SDK rebuilds index, column and reason, as the embedded engine raises them.
        trailers.append((VALUE_KEY, json.dumps([exc.index, exc.column, exc.reason])))
    if isinstance(exc, e.OffsetOutOfRangeError):  # where the log starts now: the client resets there
        trailers.append((RANGE_KEY, json.dumps([exc.topic, exc.partition, exc.offset, exc.log_start])))
    return code, tuple(trailers)


def error_from_rpc(err: grpc.RpcError) -> e.StreamHouseError:
    """The StreamHouseError a failed call stands for (StorageUnavailableError when the
    agent could not be reached at all)."""
    code: grpc.StatusCode = err.code()
    details: str = err.details() or code.name
    trailers: dict[str, str | bytes] = {m.key: m.value for m in err.trailing_metadata() or ()}
    name = trailers.get(ERROR_KEY, "")
    cls = getattr(e, name, None) if isinstance(name, str) else None
    if not (isinstance(cls, type) and issubclass(cls, e.StreamHouseError)):
        cls = _BY_CODE.get(code)
    if cls is None:
        return e.StreamHouseError(f"{code.name}: {details}")
    # The subclasses' constructors take structured arguments; the message already says it all.
    exc = cls.__new__(cls)
    Exception.__init__(exc, details)
    if isinstance(exc, e.NotLeaderError):
        exc.resource = ""
        exc.leader = str(trailers.get(LEADER_KEY, ""))
    if isinstance(exc, e.InvalidValueError):
        exc.index, exc.column, exc.reason = json.loads(trailers.get(VALUE_KEY, '[-1, null, ""]'))
    if isinstance(exc, e.OffsetOutOfRangeError):
        exc.topic, exc.partition, exc.offset, exc.log_start = json.loads(trailers.get(RANGE_KEY, '["", -1, -1, -1]'))
    if isinstance(exc, e.BackpressureError) and RETRY_AFTER_KEY in trailers:  # a rate quota (engine/auth/quota.py)
        exc.retry_after_s = int(trailers[RETRY_AFTER_KEY]) / 1000  # type: ignore[attr-defined]
    return exc
