"""Rate quotas on the Kafka listener and the HTTP face (issue 15), on the folder's one agent.

Kafka (KIP-219): confluent-kafka (librdkafka) produces as fast as it can with SASL/PLAIN as an
org with a produce quota; the listener answers with throttle_time_ms (the client reports it
through throttle_cb) and mutes the connection, so what gets in over a few seconds is the quota
(± 20 %, after the first burst) and every acknowledged record is stored exactly once; a fetch
quota paces a consumer the same way.

HTTP: an org over its request quota gets 429 with Retry-After on /v1 and /registry; a refused
REST produce stores nothing; after the wait it is served again.

Storage and partitions: topics over an org's partition quota are refused (SDK, Kafka
CreateTopics); once its committed bytes reach its storage quota, produces are refused on every
face (ResourceQuotaExceededError, Kafka POLICY_VIOLATION, HTTP 507) and nothing is stored."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import streamhouse
from streamhouse.auth.admin import AuthAdmin
from streamhouse.kafka.server import KafkaServer
from streamhouse.storage.errors import ResourceQuotaExceededError
from streamhouse.storage.metadata.acl_sql import OPERATIONS, RESOURCE_TYPES, AclRule
from streamhouse.storage.metadata.sqlite_quotas import OrgQuota
from tests.engine.auth.conftest import AuthAgent

RATE = 200_000.0  # produce bytes/s; the gate's burst is 1 s of it


def _org(agent: AuthAgent, org: str, quota: OrgQuota) -> str:
    """A new org whose one key may do everything, with `quota`; its token."""
    metadata = agent.server.service.manager.metadata
    admin = AuthAdmin(metadata)
    agent.run(admin.create_org(org))
    token = agent.run(admin.create_key(org, "bob")).token
    for rtype in RESOURCE_TYPES:
        for op in OPERATIONS:
            agent.run(metadata.acl_add(AclRule(org, "bob", rtype, "prefixed", "", op)))
    agent.run(metadata.quota_set(quota))
    return token


@pytest.fixture(scope="module")
def kafka(auth_agent: AuthAgent) -> Iterator[KafkaServer]:
    server = auth_agent.server
    assert server.auth is not None and server.quotas is not None
    listener = KafkaServer(
        server.service, port=0, authenticator=server.auth.authenticator, quotas=server.quotas,
        storage_quotas=server.storage_quotas,
    )  # fmt: skip
    auth_agent.run(listener.start())
    try:
        yield listener
    finally:
        auth_agent.run(listener.close())


def _usage(agent: AuthAgent, org: str) -> Any:
    assert agent.server.quotas is not None
    return next(row for row in agent.server.quotas.usage() if row.org == org)


def test_kafka_produce_is_throttled_to_the_quota(auth_agent: AuthAgent, kafka: KafkaServer) -> None:
    token = _org(auth_agent, "quota-kafka", OrgQuota("quota-kafka", produce_bytes_per_s=RATE))
    with streamhouse.connect(auth_agent.grpc, api_key=token) as client:
        client.create_topic("quota-kafka-t", partitions=1)
    key_id, secret = token.split(".")
    throttles: list[int] = []
    delivered: list[int] = []
    failed: list[KafkaError] = []

    def report(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            failed.append(err)
        else:
            delivered.append(msg.offset() or 0)

    producer = Producer({
        "bootstrap.servers": f"127.0.0.1:{kafka.port}", "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN", "sasl.username": key_id, "sasl.password": secret, "acks": "all",
        "linger.ms": 5, "batch.size": 20_000, "queue.buffering.max.messages": 200, "log_level": 0,
        "throttle_cb": lambda event: throttles.append(event.throttle_time),
    })  # fmt: skip
    value = b"x" * 1000
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < 3.0:
        try:
            producer.produce("quota-kafka-t", value, partition=0, on_delivery=report)
            sent += 1
        except BufferError:  # the client's queue is full: the quota holds its batches back
            producer.poll(0.02)
        producer.poll(0)
    assert producer.flush(30) == 0
    elapsed = time.monotonic() - started
    assert failed == [] and len(delivered) == sent  # nothing refused or dropped for the quota
    assert sorted(delivered) == list(range(sent))  # each acknowledged record stored once, in order
    charged = _usage(auth_agent, "quota-kafka").produce_bytes  # request frames, as Kafka counts
    rate = (charged - RATE) / elapsed  # the bucket starts full: one burst comes free
    assert 0.8 * RATE <= rate <= 1.2 * RATE, (charged, elapsed, rate)
    assert throttles and max(throttles) > 0  # the answers said throttle_time_ms (KIP-219)
    assert _usage(auth_agent, "quota-kafka").throttled > 0


def _http(agent: AuthAgent, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(agent.http + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.headers, json.loads(err.read() or b"null")


def test_http_over_the_request_quota_is_429_with_retry_after(auth_agent: AuthAgent) -> None:
    token = _org(auth_agent, "quota-http", OrgQuota("quota-http", requests_per_s=4.0))
    with streamhouse.connect(auth_agent.grpc, api_key=token) as client:
        client.create_topic("quota-http-t", partitions=1)
    time.sleep(1.1)  # the gRPC call above spent some of the org's requests: a full bucket again
    statuses = [_http(auth_agent, "GET", "/v1/topics", token)[0] for _ in range(5)]  # 4 + 1 into debt
    assert statuses == [200] * 5
    status, headers, body = _http(auth_agent, "GET", "/v1/topics", token)
    assert status == 429 and body["code"] == "quota_exceeded" and "quota-http" in body["message"]
    assert int(headers["Retry-After"]) >= 1 and 0 < int(headers["Retry-After-Ms"]) <= 1000
    status, headers, body = _http(auth_agent, "GET", "/registry/subjects", token)
    assert status == 429 and body["error_code"] == 42901 and "Retry-After" in headers
    produce = {"values": [1], "partition_id": 0}
    assert _http(auth_agent, "POST", "/v1/topics/quota-http-t/records", token, produce)[0] == 429
    other = _http(auth_agent, "GET", "/v1/topics", auth_agent.good)[0]  # another org is untouched
    assert other == 200
    time.sleep(int(headers["Retry-After-Ms"]) / 1000 + 0.3)
    assert _http(auth_agent, "POST", "/v1/topics/quota-http-t/records", token, produce)[0] == 200
    with streamhouse.connect(auth_agent.grpc, api_key=token) as client:  # (the SDK waits out a debt)
        assert client.describe("quota-http-t").partitions[0].end_offset == 1  # the refused one stored nothing


def test_storage_and_partition_quotas_refuse_and_store_nothing(auth_agent: AuthAgent, kafka: KafkaServer) -> None:
    storage = auth_agent.server.storage_quotas
    assert storage is not None
    # The limits are set just above what the org holds now (its namespace's topics).
    held = auth_agent.run(storage.usage("quota-store"))
    quota = OrgQuota("quota-store", storage_bytes=held.storage_bytes + 1, partitions=held.partitions + 3)
    token = _org(auth_agent, "quota-store", quota)
    key_id, secret = token.split(".")
    sasl = {"bootstrap.servers": f"127.0.0.1:{kafka.port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN", "sasl.username": key_id, "sasl.password": secret, "log_level": 0}  # fmt: skip
    with streamhouse.connect(auth_agent.grpc, api_key=token) as client:
        client.create_topic("quota-store-a", partitions=2)
        with pytest.raises(ResourceQuotaExceededError, match="partitions"):
            client.create_topic("quota-store-b", partitions=2)  # 2 + 2 > 3
        admin = AdminClient(sasl)  # (held: a collected client fails its futures)
        futures = admin.create_topics([NewTopic("quota-store-k", 2)])
        with pytest.raises(Exception) as refused:
            futures["quota-store-k"].result(10)
        assert refused.value.args[0].code() == KafkaError.POLICY_VIOLATION
        with pytest.raises(ResourceQuotaExceededError):
            client.sql('ALTER TOPIC "quota-store-a" ADD PARTITIONS 2')
        assert {"quota-store-b", "quota-store-k"}.isdisjoint(t.name for t in client.topics())
        client.produce("quota-store-a", {"n": 1}, partition=0, acks="durable")  # a segment: over the quota
        storage.forget()  # (usage is cached for 5 s)
        with pytest.raises(ResourceQuotaExceededError, match="storage quota"):
            client.produce("quota-store-a", {"n": 2}, partition=0)
        status, _, body = _http(auth_agent, "POST", "/v1/topics/quota-store-a/records", token, {"values": [3]})
        assert status == 507 and "storage quota" in body["message"]
        errors: list[KafkaError] = []
        producer = Producer({**sasl, "retries": 0, "message.timeout.ms": 10_000})
        producer.produce("quota-store-a", b"4", partition=0, on_delivery=lambda err, _msg: errors.append(err))
        producer.flush(10)
        assert [e.code() for e in errors] == [KafkaError.POLICY_VIOLATION]
        assert client.describe("quota-store-a").partitions[0].end_offset == 1  # none of the refused stored
        usage = auth_agent.run(storage.usage("quota-store"))
        assert usage.partitions == held.partitions + 2 and usage.storage_bytes > quota.storage_bytes - 1
    request = urllib.request.Request(auth_agent.http + "/metrics", headers={"Authorization": f"Bearer {token}"})
    text = urllib.request.urlopen(request, timeout=10).read().decode()
    assert re.search(r'^streamhouse_quota_storage_bytes\{org="quota-store"\} [1-9]', text, re.M)
    assert re.search(rf'^streamhouse_quota_partitions\{{org="quota-store"\}} {usage.partitions}\.0$', text, re.M)


def test_show_usage_shows_an_org_its_own_row_and_an_admin_every_org(auth_agent: AuthAgent) -> None:
    token = _org(auth_agent, "quota-show", OrgQuota("quota-show", requests_per_s=1000.0, partitions=10_000))
    root = auth_agent.run(AuthAdmin(auth_agent.server.service.manager.metadata).create_key("acme", "root", admin=True))
    with streamhouse.connect(auth_agent.grpc, api_key=token) as client:
        client.create_topic("quota-show-t", partitions=2)
        client.produce("quota-show-t", {"n": 1}, partition=0)
        mine = client.sql("SHOW USAGE").to_pylist()
    assert [row["org"] for row in mine] == ["quota-show"]  # nothing of any other org
    row = mine[0]
    assert row["requests"] >= 3 and row["produce_bytes"] > 0 and row["requests_per_s"] > 0
    assert row["partitions"] >= 2 and row["quota_requests_per_s"] == 1000.0 and row["quota_partitions"] == 10_000
    assert row["quota_produce_bytes_per_s"] is None and row["quota_storage_bytes"] is None  # unlimited
    with streamhouse.connect(auth_agent.grpc, api_key=root.token) as admin:
        everyone = {r["org"] for r in admin.sql("show usage;").to_pylist()}
    assert {"acme", "quota-show"} <= everyone


def test_kafka_fetch_is_throttled_to_the_quota(auth_agent: AuthAgent, kafka: KafkaServer) -> None:
    token = _org(auth_agent, "quota-fetch", OrgQuota("quota-fetch", fetch_bytes_per_s=RATE))
    records = 600
    with streamhouse.connect(auth_agent.grpc, api_key=token) as client:
        client.create_topic("quota-fetch-t", partitions=1)
        client.produce_batch("quota-fetch-t", [b"y" * 1000] * records, partition=0)
    key_id, secret = token.split(".")
    consumer = Consumer({
        "bootstrap.servers": f"127.0.0.1:{kafka.port}", "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "PLAIN", "sasl.username": key_id, "sasl.password": secret, "group.id": "quota-fetch-g",
        "enable.auto.commit": False, "log_level": 0,
        # small answers (20 kB = 0.1 s of the quota each), so the rate is measured finely
        "max.partition.fetch.bytes": 20_000, "fetch.max.bytes": 20_000, "message.max.bytes": 20_000,
    })  # fmt: skip
    consumer.assign([TopicPartition("quota-fetch-t", 0, 0)])
    seen = 0
    started = time.monotonic()
    try:
        while seen < records and time.monotonic() - started < 20:
            seen += sum(1 for m in consumer.consume(100, 0.2) if m.error() is None)
        elapsed = time.monotonic() - started
    finally:
        consumer.close()
    assert seen == records
    charged = _usage(auth_agent, "quota-fetch").fetch_bytes  # Fetch answers, as Kafka counts
    rate = (charged - RATE) / elapsed  # one burst comes free
    assert 0.8 * RATE <= rate <= 1.2 * RATE, (charged, elapsed, rate)
