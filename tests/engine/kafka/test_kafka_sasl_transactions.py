"""Kafka transactions under SASL (issue 18 with issue 15's orgs and ACLs): an agent run with
`--auth api-key` serves confluent-kafka transactional producers logged in over SASL_PLAINTEXT.

Transactional ids are scoped per org as groups and topics are: two orgs each use an id named
"etl" without fencing each other; one org cannot name the other's id (`acme~etl`), nor use an id
no ACL lets it write. read_committed consumers see only committed records, our SDK too; offsets sent
with a transaction commit with it, into the org's own group.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

import streamhouse
from streamhouse.auth.admin import AuthAdmin
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.metadata.acl_sql import AclRule
from tests.agent_process import kafka_agent

RIGHTS = (
    ("topic", "out", ("read", "write", "create")),
    ("group", "g", ("read",)),
    ("transactional_id", "etl", ("write",)),
)


async def _orgs(pg_url: str) -> dict[str, str]:
    """A key per org, each allowed its own topic "out", group "g" and transactional id "etl"."""
    store = await open_metadata_store(pg_url)
    try:
        tokens = {}
        for org in ("acme", "beta"):
            await AuthAdmin(store).create_org(org)
            tokens[org] = (await AuthAdmin(store).create_key(org, "app")).token
            for rtype, name, operations in RIGHTS:
                for op in operations:
                    await store.acl_add(AclRule(org, "app", rtype, "literal", name, op))
        return tokens
    finally:
        await store.close()


def test_transactions_are_scoped_per_org(tmp_path: Path, pg_url: str, s3_url: tuple[str, str]) -> None:
    tokens = asyncio.run(_orgs(pg_url))
    with kafka_agent(tmp_path, pg_url, s3_url, "--auth", "api-key") as (process, port):

        def login(org: str, **extra: Any) -> dict[str, Any]:
            key_id, secret = tokens[org].split(".")
            return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
                    "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": key_id, "sasl.password": secret,
                    **extra}  # fmt: skip

        def producer(org: str, tid: str) -> Producer:
            made = Producer(login(org, **{"transactional.id": tid, "linger.ms": 5}))
            made.init_transactions(20)
            return made

        def send(p: Producer, values: list[bytes], commit: bool) -> None:
            p.begin_transaction()
            for v in values:
                p.produce("out", v, partition=0)
            assert p.flush(20) == 0
            if commit:
                p.commit_transaction(20)
            else:
                p.abort_transaction(20)

        def read(org: str, isolation: str, expect: int) -> list[bytes]:
            consumer = Consumer(login(org, **{"group.id": "g", "isolation.level": isolation,
                                              "enable.auto.commit": False}))  # fmt: skip
            consumer.assign([TopicPartition("out", 0, 0)])
            got: list[bytes] = []
            deadline = time.monotonic() + 15
            try:
                while len(got) < expect and time.monotonic() < deadline:
                    message = consumer.poll(0.2)
                    if message is not None and message.error() is None:
                        got.append(message.value())
            finally:
                consumer.close()
            return got

        for org in ("acme", "beta"):
            with streamhouse.connect(process.address, api_key=tokens[org]) as client:
                client.create_topic("out", 1)

        acme = producer("acme", "etl")
        send(acme, [b"a0", b"a1", b"a2"], commit=True)
        send(acme, [b"ax0", b"ax1"], commit=False)
        beta = producer("beta", "etl")  # beta's own "etl": acme's producer is not fenced by it
        send(beta, [b"b0"], commit=True)
        send(acme, [b"a3"], commit=True)
        send(beta, [b"b1"], commit=True)

        # beta may not name acme's id, nor use an id no ACL lets it write; nothing is fenced.
        for tid in ("acme~etl", "other"):
            with pytest.raises(KafkaException, match=r"(?i)authoriz"):
                Producer(login("beta", **{"transactional.id": tid})).init_transactions(10)
        # Consume-transform-produce: acme's offsets for its group "g" commit with its transaction.
        group = Consumer(login("acme", **{"group.id": "g", "enable.auto.commit": False}))
        try:
            acme.begin_transaction()
            acme.produce("out", b"a4", partition=0)
            acme.send_offsets_to_transaction([TopicPartition("out", 0, 3)], group.consumer_group_metadata(), 20)
            acme.commit_transaction(20)
        finally:
            group.close()

        assert read("acme", "read_committed", 5) == [b"a0", b"a1", b"a2", b"a3", b"a4"]
        assert read("acme", "read_uncommitted", 7) == [b"a0", b"a1", b"a2", b"ax0", b"ax1", b"a3", b"a4"]
        assert read("beta", "read_committed", 2) == [b"b0", b"b1"]
        with streamhouse.connect(process.address, api_key=tokens["acme"]) as client:  # gRPC, under auth
            assert client.read("out").column("value").to_pylist() == [b"a0", b"a1", b"a2", b"a3", b"a4"]
            everything = client.read("out", isolation="read_uncommitted").column("value").to_pylist()
            assert len(everything) == 7
            assert [o.committed_offset for o in client.committed("g", "out")] == [3]
        with streamhouse.connect(process.address, api_key=tokens["beta"]) as client:
            assert [o.committed_offset for o in client.committed("g", "out")] == [-1]  # beta's "g" is its own
