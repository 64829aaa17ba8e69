"""Fuzz of the Kafka listener's SASL paths (engine/kafka/sasl/): arbitrary sequences of
handshakes (any mechanism name, v0/v1), SaslAuthenticate requests and bare tokens with arbitrary
bytes, and arbitrary frames, fed through the listener's own `respond` with a connection's SASL
state, on a real SQLite store holding one key. Every step is answered or refused with a
KafkaProtocolError (the listener then closes that connection) — never another exception — and a
connection is authenticated only after the real key's token."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streamhouse.auth import Authenticator
from streamhouse.auth.admin import AuthAdmin
from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.kafka.handlers import Context
from streamhouse.kafka.protocol.api import encode_request
from streamhouse.kafka.protocol.messages_data import METADATA
from streamhouse.kafka.protocol.messages_sasl import SASL_AUTHENTICATE, SASL_HANDSHAKE
from streamhouse.kafka.server import KafkaServer
from streamhouse.storage.metadata import MetadataStore, open_metadata_store

GOOD = b"<the real key's PLAIN token>"


@dataclass
class _Node:
    """The listener's view of the agent, as far as SASL goes: its metadata store (the front-end
    contract is never reached: only SASL and refused requests are sent)."""

    metadata: MetadataStore


@dataclass
class Listener:
    loop: asyncio.AbstractEventLoop
    server: KafkaServer
    token: bytes


@pytest.fixture(scope="module")
def listener(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Listener]:
    loop = asyncio.new_event_loop()
    url = f"sqlite:///{tmp_path_factory.mktemp('sasl-fuzz') / 'metadata.db'}"
    store = loop.run_until_complete(open_metadata_store(url))
    try:
        loop.run_until_complete(AuthAdmin(store).create_org("acme"))
        key_id, secret = loop.run_until_complete(AuthAdmin(store).create_key("acme", "a")).token.split(".")
        authenticator = Authenticator(store, registry=CollectorRegistry())
        server = KafkaServer(_Node(store), authenticator=authenticator)  # type: ignore[arg-type]
        yield Listener(loop, server, f"\x00{key_id}\x00{secret}".encode())
    finally:
        loop.run_until_complete(store.close())
        loop.close()


def _frame(kind: str, payload: Any, version: int, token: bytes) -> bytes:
    if kind == "handshake":
        return encode_request(SASL_HANDSHAKE, version % 2, 1, "fuzz", {"mechanism": payload})[4:]
    data = token if payload == GOOD else payload
    if kind == "authenticate":
        return encode_request(SASL_AUTHENTICATE, version, 2, "fuzz", {"auth_bytes": data})[4:]
    return bytes(data)  # a bare token, or any frame at all


_steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("handshake"),
            st.sampled_from(["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "GSSAPI", "", "plain"]),
            st.integers(0, 1),
        ),
        st.tuples(st.just("authenticate"), st.one_of(st.just(GOOD), st.binary(max_size=300)), st.integers(0, 2)),
        st.tuples(st.just("bare"), st.one_of(st.just(GOOD), st.binary(max_size=300)), st.just(0)),
    ),
    max_size=6,
)
# Half the sequences start with a proper login (v1 or v0), so what follows exercises the paths of
# an authenticated connection (re-authentication, a second handshake, stray tokens).
_LOGINS = [[], [("handshake", "PLAIN", 1), ("authenticate", GOOD, 2)], [("handshake", "PLAIN", 0), ("bare", GOOD, 0)]]
_sequences = st.builds(lambda login, rest: login + rest, st.sampled_from(_LOGINS), _steps)


@settings(max_examples=200, deadline=None)
@given(steps=_sequences)
def test_any_sasl_sequence_is_answered_or_refused_as_a_protocol_error(listener: Listener, steps: list[Any]) -> None:
    server = listener.server
    assert server.sasl is not None
    widened: list[bool] = []
    conn = server.sasl.connection(lambda: widened.append(True))
    sent_good = False
    for kind, payload, version in steps:
        frame = _frame(kind, payload, version, listener.token)
        try:
            answer = listener.loop.run_until_complete(server.respond(frame, "fuzz", None, conn))
        except KafkaProtocolError:
            break  # the listener closes the connection: nothing more is read
        assert isinstance(answer, bytes)
        sent_good = sent_good or payload == GOOD
        if conn.closing:
            break  # a refused login: answered, then closed
    event(f"authenticated={conn.authenticated}")
    assert not conn.authenticated or sent_good
    assert widened == ([True] if conn.authenticated else [])


def test_handlers_learn_the_logged_in_principal(listener: Listener) -> None:
    """Context.principal carries the login to every handler (for authorisation), None before."""
    server = listener.server
    assert server.sasl is not None
    seen: list[Context] = []

    async def recorder(body: dict[str, Any], version: int, ctx: Context) -> dict[str, Any]:
        seen.append(ctx)
        return {"brokers": [], "cluster_id": None, "controller_id": -1, "topics": []}

    server.handlers = {3: recorder, **server.sasl.advertised}
    conn = server.sasl.connection(lambda: None)
    metadata = encode_request(METADATA, 9, 3, "fuzz", {"topics": []})[4:]
    with pytest.raises(KafkaProtocolError):  # before the login, Metadata never reaches a handler
        listener.loop.run_until_complete(server.respond(metadata, "fuzz", None, conn))
    for kind, payload, version in _LOGINS[1]:
        listener.loop.run_until_complete(server.respond(_frame(kind, payload, version, listener.token), "", None, conn))
    listener.loop.run_until_complete(server.respond(metadata, "fuzz", None, conn))
    assert len(seen) == 1 and seen[0].principal is not None
    assert (seen[0].principal.org, seen[0].principal.name) == ("acme", "a")
    assert seen[0].principal.key_id == listener.token.split(b"\x00")[1].decode()
