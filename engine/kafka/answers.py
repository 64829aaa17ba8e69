"""Answers a handler settles only as they are written (Context.at_send in handlers.py).

A connection's answers go out in request order, so an answer made at once can wait behind an
earlier request's, and the client may close the connection meanwhile (librdkafka does when a
request times out). Whatever an answer means for the agent (an idempotent batch counted as
acknowledged, engine/kafka/unacked.py) must therefore be decided when it is written, not when
its handler ends: the server encodes such an answer right before the write, with nothing
awaited in between, and never if it is not written."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamhouse.kafka.protocol.api import encode_response
from streamhouse.kafka.protocol.schema import Api

Body = dict[str, Any]


@dataclass(frozen=True)
class SettledAtSend:
    """An answer body and the hooks that settle it (in order, changing it in place) right
    before it is encoded."""

    api: Api
    version: int
    correlation: int
    body: Body
    hooks: tuple[Callable[[], None], ...]

    def frame(self) -> bytes:
        for hook in self.hooks:
            hook()
        return encode_response(self.api, self.version, self.correlation, self.body)


def answer_frame(answer: bytes | SettledAtSend | None) -> bytes | None:
    """The bytes to write for a handler's answer, settling it now if it waits for that."""
    return answer.frame() if isinstance(answer, SettledAtSend) else answer
