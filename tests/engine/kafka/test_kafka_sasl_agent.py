"""`streamhouse serve --auth api-key --kafka-port`: a real agent process on PostgreSQL + SeaweedFS
asks Kafka clients to log in (engine/kafka/sasl/ wired by engine/server/agent_server.py). A key
made with the admin operations on the same PostgreSQL store logs librdkafka in over SCRAM-SHA-512
(credentials written with the key) and PLAIN; a wrong secret is refused, writes nothing and is
counted on the agent's /metrics under front "kafka"; --kafka-max-reauth-ms bounds a session."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

import streamhouse
from streamhouse.auth.admin import AuthAdmin
from streamhouse.kafka.protocol.api import decode_response, encode_request
from streamhouse.kafka.protocol.messages_sasl import SASL_AUTHENTICATE, SASL_HANDSHAKE
from streamhouse.storage.metadata import open_metadata_store
from tests.agent_process import kafka_agent


async def _new_key(pg_url: str, org: str) -> str:
    store = await open_metadata_store(pg_url)
    try:
        await AuthAdmin(store).create_org(org)
        return (await AuthAdmin(store).create_key(org, "svc", admin=True)).token  # admin: past the ACLs
    finally:
        await store.close()


def test_serve_with_auth_logs_kafka_clients_in(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> None:
    token = asyncio.run(_new_key(pg_url, "org-" + uuid.uuid4().hex[:8]))
    key_id, secret = token.split(".")
    flags = ("--auth", "api-key", "--http-port", "0", "--kafka-max-reauth-ms", "60000")
    with kafka_agent(tmp_path, pg_url, s3_url, *flags) as (process, port):
        with streamhouse.connect(process.address, api_key=token) as client:
            client.create_topic("sasl-agent", 1)
        bootstrap = f"127.0.0.1:{port}"

        def sasl(mechanism: str, password: str) -> dict[str, Any]:
            return {"bootstrap.servers": bootstrap, "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": mechanism, "sasl.username": key_id, "sasl.password": password}  # fmt: skip

        errors: list[str] = []
        refused = Producer({**sasl("SCRAM-SHA-512", "w" * 43), "error_cb": lambda e: errors.append(e.str())})
        refused.produce("sasl-agent", value=b"never")
        deadline = time.monotonic() + 10
        while not any("SASL authentication error" in e for e in errors) and time.monotonic() < deadline:
            refused.poll(0.05)
        refused.purge()
        assert any("SASL authentication error" in e for e in errors), errors

        producer = Producer({**sasl("SCRAM-SHA-512", secret), "acks": "all"})
        for i in range(10):
            producer.produce("sasl-agent", value=b"v%d" % i)
        assert producer.flush(20) == 0
        consumer = Consumer({**sasl("PLAIN", secret), "group.id": "sasl-agent"})
        consumer.assign([TopicPartition("sasl-agent", 0, 0)])
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < 10 and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is not None and msg.error() is None:
                got.append(msg.value())
        consumer.close()
        assert got == [b"v%d" % i for i in range(10)]  # the refused producer's record is not there

        request = urllib.request.Request(
            f"http://127.0.0.1:{process.http_port}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            metrics = answer.read().decode()
        assert 'streamhouse_auth_failures_total{front="kafka",reason="wrong_secret"}' in metrics

        # --kafka-max-reauth-ms bounds each login's session (SaslAuthenticate v1+ tells the client).
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(encode_request(SASL_HANDSHAKE, 1, 1, "raw", {"mechanism": "PLAIN"}))
            s.sendall(
                encode_request(SASL_AUTHENTICATE, 2, 2, "raw", {"auth_bytes": f"\x00{key_id}\x00{secret}".encode()})
            )
            stream = s.makefile("rb")
            for api, version in ((SASL_HANDSHAKE, 1), (SASL_AUTHENTICATE, 2)):
                (size,) = struct.unpack(">i", stream.read(4))
                _, answer = decode_response(api, version, stream.read(size))
            assert answer["error_code"] == 0 and 0 < answer["session_lifetime_ms"] <= 60_000
