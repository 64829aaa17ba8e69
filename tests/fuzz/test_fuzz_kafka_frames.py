"""Fuzz of the Kafka listener's request path (engine/kafka/protocol/ and the handlers behind
`KafkaServer.respond`), on a real embedded engine: every API key and version the codec
implements, as valid frames, damaged frames and random bytes. Each frame is answered with a
response frame that our own codec reads back, or refused with KafkaProtocolError (the listener
then closes the connection, as Kafka does); any other exception is a bug, and so is no answer
within the hang limit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import assume, event, example, given

import streamhouse
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.kafka.answers import answer_frame
from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.kafka.protocol.api import APIS, decode_request, decode_request_header, decode_response, encode_request
from streamhouse.kafka.protocol.messages_data import API_VERSIONS
from streamhouse.kafka.server import KafkaServer
from tests.fuzz.budget import HANG_S, Hang, fuzz
from tests.fuzz.kafka_bodies import TOPIC, request_frames, waits_long
from tests.strategies import hostile


@dataclass
class Listener:
    loop: asyncio.AbstractEventLoop
    server: KafkaServer


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    sh = streamhouse.open(str(tmp_path_factory.mktemp("kafka-fuzz") / "data"), kafka_port=0)
    try:
        sh.create_topic(TOPIC, 2)
        transport = sh.transport
        assert isinstance(transport, EmbeddedTransport)
        # Frames go straight to `respond`, the listener's per-request entry (no socket needed).
        yield Listener(transport._loop, transport.kafka_servers[0])
    finally:
        sh.close()


async def _answer(listener: Listener, frame: bytes) -> bytes | None:
    """The bytes the listener writes for `frame`, settled in its loop as the writer does."""
    return answer_frame(await listener.server.respond(frame, "127.0.0.1"))


def answer(listener: Listener, frame: bytes) -> None:
    try:
        request = decode_request(frame)
    except KafkaProtocolError:
        request = None
    else:
        assume(not waits_long(request.body))  # a long wait asked for is not a hang
    future = asyncio.run_coroutine_threadsafe(_answer(listener, frame), listener.loop)
    try:
        response = future.result(timeout=HANG_S)
    except KafkaProtocolError as exc:
        event(f"refused: {type(exc).__name__}")
        return
    except TimeoutError:
        future.cancel()
        raise Hang(f"no answer to {frame[:64]!r} within {HANG_S} s") from None
    if response is None:  # Produce with acks=0
        assert request is not None and request.api.key == 0 and request.body["acks"] == 0
        return
    if request is None:  # an ApiVersions of a version we lack: answered in v0 with our ranges
        header, _ = decode_request_header(frame)
        assert header.api_key == API_VERSIONS.key
        request_api, version, correlation_id = API_VERSIONS, 0, header.correlation_id
    else:
        request_api, version, correlation_id = request.api, request.header.api_version, request.header.correlation_id
    event(f"answered {request_api.name}")
    correlation, _ = decode_response(request_api, version, response[4:])
    assert correlation == correlation_id


@fuzz(200)
@given(frame=request_frames())
def test_valid_frames_of_every_api_version_are_answered(listener: Listener, frame: bytes) -> None:
    answer(listener, frame)


# Found by this fuzz: DeleteGroups and DescribeGroups of an empty group id let InvalidInputError
# out of the handler, so the listener closed the connection (and logged a bug) instead of
# answering INVALID_GROUP_ID. And an acks=all Produce naming no partition let asyncio's
# ValueError (waiting on no task) out of the handler.
@example(frame=encode_request(APIS[0], 9, 1, "fuzz", {"transactional_id": None, "acks": -1, "timeout_ms": 1000,
                                                      "topic_data": []})[4:])  # fmt: skip
@example(frame=encode_request(APIS[42], 0, 1, "fuzz", {"groups_names": [""]})[4:])
@example(frame=encode_request(APIS[15], 0, 1, "fuzz", {"groups": ["x" * 1001]})[4:])
@fuzz(250)
@given(frame=hostile(request_frames(), max_ops=3))
def test_damaged_frames_are_answered_or_refused_with_protocol_errors(listener: Listener, frame: bytes) -> None:
    answer(listener, frame)
