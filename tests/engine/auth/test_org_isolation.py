"""Isolation between organisations (issue 15) on one real agent running `auth = "api-key"`:
orgs `acme` (the folder's alice) and `beta` (carol, allowed everything by rule in her org)
both own a topic `orders`; acme alone has `acme-only`, a group and a job. Every face — gRPC
through the SDK, REST /v1, Kafka (confluent-kafka and kafka-python over SASL/PLAIN), SQL and
the schema registry (subjects, schema ids) —
answers beta as if acme's resources did not exist: a not-found (or a bad name for a stored
`acme~…` name), nothing changed, no acme name in any answer; the same name `orders` is two
topics. The org's segments lie under its object-store prefix `topics/<org>~`."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from kafka import KafkaAdminClient, KafkaConsumer

import streamhouse
from streamhouse.auth.admin import AuthAdmin
from streamhouse.auth.metrics_scope import scoped_metrics
from streamhouse.client.client import Client
from streamhouse.kafka.server import KafkaServer
from streamhouse.storage.errors import InvalidInputError, NotFoundError, StreamHouseError
from streamhouse.storage.metadata.acl_sql import OPERATIONS, RESOURCE_TYPES, AclRule
from tests.engine.auth.conftest import AuthAgent, http_json, sasl_plain

ACME_RECORDS, BETA_RECORDS = 3, 1


@dataclass(frozen=True)
class Orgs:
    agent: AuthAgent
    acme: str
    beta: str
    listener: KafkaServer

    def client(self, token: str) -> Client:
        return streamhouse.connect(self.agent.grpc, api_key=token)

    def http(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        return http_json(self.agent.http, method, path, token, body)

    def kafka(self, token: str, **extra: Any) -> dict[str, Any]:
        return sasl_plain(self.listener.port, token, **extra)

    def stored(self) -> dict[str, int]:
        """Every stored topic (all orgs) → its end offset, from the metadata store itself."""
        metadata = self.agent.server.service.manager.metadata

        async def ends() -> dict[str, int]:
            return {t.name: await metadata.get_end_offset(t.name, 0) for t in await metadata.list_topics()}

        return self.agent.run(ends())


@pytest.fixture(scope="module")
def orgs(auth_agent: AuthAgent) -> Iterator[Orgs]:
    agent = auth_agent
    metadata = agent.server.service.manager.metadata
    admin = AuthAdmin(metadata)
    agent.run(admin.create_org("beta"))
    for rtype in RESOURCE_TYPES:  # carol may do everything, by rule, in her org
        for op in OPERATIONS:
            agent.run(metadata.acl_add(AclRule("beta", "carol", rtype, "prefixed", "", op)))
    beta = agent.run(admin.create_key("beta", "carol")).token
    assert agent.server.auth is not None and agent.server.auth.authenticator is not None
    kafka = KafkaServer(agent.server.service, port=0, authenticator=agent.server.auth.authenticator)
    agent.run(kafka.start())
    with streamhouse.connect(agent.grpc, api_key=agent.good) as a, streamhouse.connect(agent.grpc, api_key=beta) as b:
        for client, n in ((a, ACME_RECORDS), (b, BETA_RECORDS)):
            client.sql("CREATE TOPIC orders (org_n BIGINT)")
            client.produce_batch("orders", [{"org_n": i} for i in range(n)], acks="durable")
        a.create_topic("acme-only", partitions=1)
        a.produce("acme-only", {"secret": 1}, acks="durable")
        a.commit("acme-group", "orders", {0: 2})
        a.create_job("acme-view", "SELECT org_n FROM orders WHERE org_n >= 0")
        deadline = time.monotonic() + 20  # the job, running as acme, reads acme's orders only: 3 rows, not 4
        while a.describe("acme-view").partitions[0].end_offset < ACME_RECORDS and time.monotonic() < deadline:
            time.sleep(0.1)
    try:
        yield Orgs(agent, agent.good, beta, kafka)
    finally:
        with streamhouse.connect(agent.grpc, api_key=agent.good) as a:  # the folder's agent is shared
            a.drop_job("acme-view")
            agent.run(agent.server.service.delete_group("acme~acme-group"))  # no SDK call; the global name
            for name in ("orders", "acme-only"):
                a.delete_topic(name)
        with streamhouse.connect(agent.grpc, api_key=beta) as b:
            b.delete_topic("orders")
        agent.run(kafka.close())


def _no_acme(answer: object) -> None:
    """No name of acme's (nor its org name) in an answer beta gets."""
    text = json.dumps(answer, default=str)
    assert "acme" not in text, text


def test_same_name_two_topics_and_object_prefix(orgs: Orgs) -> None:
    stored = orgs.stored()
    assert stored["acme~orders"] == ACME_RECORDS and stored["beta~orders"] == BETA_RECORDS
    assert stored["acme~acme-view"] == ACME_RECORDS  # the job of acme read acme's orders only
    assert "orders" not in stored  # nothing in the global namespace
    with orgs.client(orgs.acme) as a, orgs.client(orgs.beta) as b:
        assert a.read("orders").num_rows == ACME_RECORDS and b.read("orders").num_rows == BETA_RECORDS
        assert {t.name for t in a.topics()} >= {"orders", "acme-only", "acme-view"}
        assert {t.name for t in b.topics()} == {"orders"}
        assert b.sql("SELECT count(*) AS n FROM orders").column("n").to_pylist() == [BETA_RECORDS]
        assert a.sql("SELECT count(*) AS n FROM orders").column("n").to_pylist() == [ACME_RECORDS]
    root = orgs.agent.run(AuthAdmin(orgs.agent.server.service.manager.metadata).create_key("beta", "ops", admin=True))
    with orgs.client(root.token) as r:  # an admin is the cluster's operator: the global namespace, stored names
        assert {"acme~orders", "beta~orders"} <= {t.name for t in r.topics()}
        assert r.read("beta~orders").num_rows == BETA_RECORDS
    store = orgs.agent.server.service.manager.store
    for org in ("acme", "beta"):  # each org's segments under its own prefix, and only there
        keys = [o.key for o in orgs.agent.run(store.list(f"topics/{org}~"))]
        assert keys and all(k.startswith(f"topics/{org}~") for k in keys), keys
    assert not orgs.agent.run(store.list("topics/orders/"))


def test_cross_org_denied_on_every_face(orgs: Orgs) -> None:
    before = orgs.stored()
    with orgs.client(orgs.beta) as b:
        # (resource, the name beta uses, attempt): each refused as not-found or a bad name, naming
        # nothing of acme's but what beta named itself
        grpc: list[tuple[str, str, Callable[[], object]]] = [
            ("topic", "acme-only", lambda: b.describe("acme-only")),
            ("topic", "acme-only", lambda: b.read("acme-only")),
            ("topic", "acme-only", lambda: b.produce("acme-only", {"x": 1})),
            ("topic", "acme-only", lambda: b.alter_topic("acme-only", set={"retention.ms": "1000"})),
            ("topic", "acme-only", lambda: b.delete_topic("acme-only")),
            ("topic", "acme~orders", lambda: b.read("acme~orders")),  # a stored name is no way in
            ("topic", "acme~orders", lambda: b.produce("acme~orders", {"x": 1})),
            ("group", "acme-group", lambda: b.describe_group("acme-group")),
            ("job", "acme-view", lambda: b.describe_job("acme-view")),
            ("job", "acme-view", lambda: b.drop_job("acme-view")),
            ("sql", "acme-only", lambda: b.sql('SELECT * FROM "acme-only"')),
            ("sql", "acme~orders", lambda: b.sql('SELECT * FROM "acme~orders"')),
            ("sql", "acme-view", lambda: b.sql('SELECT * FROM "acme-view"')),
            ("sql", "acme-only", lambda: b.sql('DESCRIBE "acme-only"')),
            ("sql", "acme-only", lambda: b.sql('DROP TOPIC "acme-only"')),
            ("sql", "acme-view", lambda: b.sql('DROP MATERIALIZED VIEW "acme-view"')),
            ("sql", "acme-only", lambda: b.sql("ALTER TOPIC \"acme-only\" SET ('retention.ms' = '1000')")),
            ("sql", "acme-only", lambda: b.sql('CREATE MATERIALIZED VIEW v2 AS SELECT * FROM "acme-only"')),
        ]
        for i, (what, named, call) in enumerate(grpc):
            with pytest.raises(StreamHouseError) as refused:
                call()
            assert isinstance(refused.value, NotFoundError | InvalidInputError), (i, what, refused.value)
            assert "acme" not in str(refused.value).replace(named, ""), (i, refused.value)  # only beta's own words
            assert orgs.stored() == before, (i, what)
        # lists and SQL answers: only beta's names
        assert b.groups() == [] and b.jobs().num_rows == 0
        _no_acme(b.sql("SHOW TOPICS").to_pylist())
        _no_acme(b.sql("SHOW JOBS").to_pylist())
        assert b.describe("orders").partitions[0].end_offset == BETA_RECORDS
        assert [o.committed_offset for o in b.committed("acme-group", "orders")] == [-1]  # beta's own (empty) group
    # REST /v1
    for method, path, body in [
        ("GET", "/v1/topics/acme-only", None),
        ("POST", "/v1/topics/acme-only/records", {"values": [1], "partition_id": 0}),
        ("DELETE", "/v1/topics/acme-only", None),
        ("POST", "/v1/sql", {"statement": 'SELECT * FROM "acme-only"'}),
    ]:
        status, answer = orgs.http(method, path, orgs.beta, body)
        assert status in (400, 404), (method, path, answer)
        assert orgs.stored() == before, (method, path)
    request = urllib.request.Request(orgs.agent.http + "/metrics", headers={"Authorization": f"Bearer {orgs.beta}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # the shared registry, as beta may see it
        metrics = response.read().decode()
    assert 'topic="orders"' in metrics and "acme" not in metrics and "~" not in metrics
    status, answer = orgs.http("GET", "/v1/topics", orgs.beta)
    assert status == 200 and {t["topic_name"] for t in answer["data"]} == {"orders"}
    _no_acme(answer)
    assert orgs.stored() == before
    # Kafka: metadata, produce, consume, groups
    beta = orgs.kafka(orgs.beta)
    python_sasl: dict[str, Any] = {"bootstrap_servers": f"127.0.0.1:{orgs.listener.port}",
                                   "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
                                   "sasl_plain_username": beta["sasl.username"],
                                   "sasl_plain_password": beta["sasl.password"]}  # fmt: skip
    client = KafkaConsumer(**python_sasl)
    try:
        assert client.topics() == {"orders"}
    finally:
        client.close()
    kafka_admin = KafkaAdminClient(**python_sasl)
    try:  # ListGroups and DescribeGroups: acme's group is not beta's to see
        assert list(kafka_admin.list_groups()) == []
        described = kafka_admin.describe_groups(["acme-group"])["acme-group"]
        assert described["group_state"] == "Dead" and not described["members"], described
    finally:
        kafka_admin.close()
    acme_id, acme_secret = orgs.acme.split(".")
    as_acme = {**python_sasl, "sasl_plain_username": acme_id, "sasl_plain_password": acme_secret}
    kafka_admin = KafkaAdminClient(**as_acme)
    try:  # and acme's own view names it as acme does (other tests of the shared agent add acme groups)
        groups = [g["group_id"] for g in kafka_admin.list_groups()]
        assert "acme-group" in groups and not any("~" in g for g in groups), groups
    finally:
        kafka_admin.close()
    unknown = Producer(beta).list_topics("acme-only", timeout=10).topics["acme-only"]
    assert unknown.error is not None and unknown.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    consumer = Consumer({**beta, "group.id": "acme-group", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition("orders", 0, 0)])
        seen = [consumer.poll(10) for _ in range(BETA_RECORDS)]
        assert all(m is not None and m.error() is None for m in seen)
        assert [json.loads(m.value())["org_n"] for m in seen if m is not None] == [0]
        assert consumer.poll(0.5) is None  # acme's three records are not beta's
        committed = consumer.committed([TopicPartition("orders", 0)], timeout=10)
        assert committed[0].offset < 0  # acme's commit of acme-group is not beta's acme-group
    finally:
        consumer.close()
    assert orgs.stored() == before
    with orgs.client(orgs.acme) as a:  # acme's own resources are untouched
        assert a.describe_group("acme-group").offsets[0].committed_offset == 2
        assert a.read("acme-only").num_rows == 1
        assert "acme-view" in a.jobs().column("job").to_pylist()


def _avro(*fields: str) -> dict[str, str]:
    record = {"type": "record", "name": "R", "fields": [{"name": f, "type": "long"} for f in fields]}
    return {"schema": json.dumps(record)}


def test_registry_subjects_per_org(orgs: Orgs) -> None:
    """Subjects: the same `orders-value` in both orgs is two subjects; acme's own subject and
    its schema id do not exist for beta; nothing beta tries changes acme's."""
    acme_id = orgs.http("POST", "/registry/subjects/orders-value/versions", orgs.acme, _avro("a"))[1]["id"]
    beta_id = orgs.http("POST", "/registry/subjects/orders-value/versions", orgs.beta, _avro("b"))[1]["id"]
    secret_id = orgs.http("POST", "/registry/subjects/acme-only-value/versions", orgs.acme, _avro("s", "t"))[1]["id"]
    try:
        assert len({acme_id, beta_id, secret_id}) == 3
        for token, schema_id in ((orgs.acme, acme_id), (orgs.beta, beta_id)):
            status, latest = orgs.http("GET", "/registry/subjects/orders-value/versions/latest", token)
            assert (status, latest["id"], latest["subject"]) == (200, schema_id, "orders-value")
        assert orgs.http("GET", "/registry/subjects", orgs.beta)[1] == ["orders-value"]
        assert {"acme-only-value", "orders-value"} <= set(orgs.http("GET", "/registry/subjects", orgs.acme)[1])
        for method, path, body in [
            ("GET", "/registry/subjects/acme-only-value/versions", None),
            ("GET", "/registry/subjects/acme-only-value/versions/latest", None),
            ("GET", f"/registry/schemas/ids/{secret_id}", None),
            ("GET", f"/registry/schemas/ids/{acme_id}", None),
            ("POST", "/registry/subjects/acme-only-value", _avro("s", "t")),  # lookup
            ("DELETE", "/registry/subjects/acme-only-value", None),
        ]:
            status, answer = orgs.http(method, path, orgs.beta, body)
            assert status == 404 and answer["error_code"] in (40401, 40403), (method, path, answer)
            _no_acme(answer["message"].replace("acme-only-value", ""))
        assert orgs.http("GET", f"/registry/schemas/ids/{secret_id}/subjects", orgs.beta)[1] == []
        for method, path in (("PUT", "/registry/config"), ("DELETE", "/registry/config"), ("PUT", "/registry/mode")):
            status, answer = orgs.http(method, path, orgs.beta, {"compatibility": "NONE", "mode": "IMPORT"})
            assert (status, answer["error_code"]) == (403, 40301), (method, path)  # shared by every org
        assert orgs.http("GET", "/registry/config", orgs.beta)[1] == {"compatibilityLevel": "BACKWARD"}
        status, kept = orgs.http("GET", "/registry/subjects/acme-only-value/versions/latest", orgs.acme)
        assert (status, kept["id"]) == (200, secret_id)  # untouched
    finally:
        for token, subject in (
            (orgs.acme, "orders-value"),
            (orgs.acme, "acme-only-value"),
            (orgs.beta, "orders-value"),
        ):
            orgs.http("DELETE", f"/registry/subjects/{subject}", token)
            orgs.http("DELETE", f"/registry/subjects/{subject}?permanent=true", token)


def test_metrics_scoped_to_an_org() -> None:
    text = (
        b"# HELP t records\n"
        b't{topic="acme~orders",partition="0"} 3.0\n'
        b't{topic="beta~orders",partition="0"} 1.0\n'
        b'q{org="acme",kind="produce"} 5.0\n'
        b'q{org="beta",kind="produce"} 7.0\n'
        b"up 1.0"
    )
    seen = scoped_metrics(text, "beta").decode()
    assert seen == '# HELP t records\nt{topic="orders",partition="0"} 1.0\nq{org="beta",kind="produce"} 7.0\nup 1.0'
    assert scoped_metrics(text, None) == text
