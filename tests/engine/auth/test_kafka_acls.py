"""Kafka's ACL APIs (DescribeAcls / CreateAcls / DeleteAcls, engine/kafka/handlers_acl.py) and the
group checks of SyncGroup / Heartbeat / LeaveGroup, on a SASL listener of this folder's real
auth agent, through confluent-kafka's AdminClient: an admin's rules land in the metadata store
(and take effect at once on this agent), unmapped Kafka bindings are refused one by one with
INVALID_REQUEST, and a principal without the admin flag is refused with nothing read or changed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)
from kafka.admin import (
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    KafkaAdminClient,
    ResourcePatternFilter,
)
from kafka.admin import ResourceType as PyResourceType
from kafka.errors import ClusterAuthorizationFailedError

from streamhouse.auth import Principal
from streamhouse.auth.admin import AuthAdmin
from streamhouse.kafka.handlers import Context
from streamhouse.kafka.server import KafkaServer
from streamhouse.storage.metadata.acl_sql import AclRule
from tests.engine.auth.conftest import AuthAgent

LIT, PRE = ResourcePatternType.LITERAL, ResourcePatternType.PREFIXED
ALLOW = AclPermissionType.ALLOW


@dataclass(frozen=True)
class Listener:
    agent: AuthAgent
    kafka: KafkaServer
    root: str
    erin: str

    def admin(self, token: str) -> AdminClient:
        key_id, secret = token.split(".")
        return AdminClient({"bootstrap.servers": f"127.0.0.1:{self.kafka.port}", "security.protocol": "SASL_PLAINTEXT",
                            "sasl.mechanism": "PLAIN", "sasl.username": key_id, "sasl.password": secret,
                            "log_level": 0})  # fmt: skip

    def rules(self) -> list[AclRule]:
        return self.agent.run(self.agent.server.service.manager.metadata.acl_list("acme", "erin"))


@pytest.fixture(scope="module")
def listener(auth_agent: AuthAgent) -> Iterator[Listener]:
    agent = auth_agent
    admin = AuthAdmin(agent.server.service.manager.metadata)
    root = agent.run(admin.create_key("acme", "kafka-root", admin=True)).token
    erin = agent.run(admin.create_key("acme", "erin")).token
    assert agent.server.auth is not None and agent.server.auth.authenticator is not None
    kafka = KafkaServer(agent.server.service, port=0, authenticator=agent.server.auth.authenticator)
    agent.run(kafka.start())
    try:
        yield Listener(agent, kafka, root, erin)
    finally:
        agent.run(kafka.close())


def _code(future: Any) -> int:
    try:
        future.result(timeout=20)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        return int(error.code())
    return 0


def _python_describe(listener: Listener, token: str) -> Any:
    """erin's rules through kafka-python's admin: the list, or the error it raised."""
    key_id, secret = token.split(".")
    client = KafkaAdminClient(
        bootstrap_servers=f"127.0.0.1:{listener.kafka.port}",
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username=key_id,
        sasl_plain_password=secret,
    )
    pattern = ResourcePatternFilter(PyResourceType.ANY, None, ACLResourcePatternType.ANY)
    try:
        return client.describe_acls(ACLFilter("User:erin", None, ACLOperation.ANY, ACLPermissionType.ANY, pattern))[0]
    except ClusterAuthorizationFailedError as exc:
        return exc
    finally:
        client.close()


def _erin_may(listener: Listener, operation: str, rtype: str, name: str) -> bool:
    acls = listener.agent.server.auth.authenticator.acls  # type: ignore[union-attr]
    grants = listener.agent.run(acls.grants(Principal("acme", "erin", False, "")))
    return grants.allows(operation, rtype, name)


def test_create_describe_delete(listener: Listener) -> None:
    assert not _erin_may(listener, "write", "topic", "ka-w.1")  # cached before: a create must forget it
    root = listener.admin(listener.root)
    bindings = [
        AclBinding(ResourceType.TOPIC, "ka-t", LIT, "User:erin", "*", AclOperation.READ, ALLOW),
        AclBinding(ResourceType.TOPIC, "ka-w.", PRE, "User:erin", "*", AclOperation.WRITE, ALLOW),
        AclBinding(ResourceType.GROUP, "ka-g", LIT, "User:erin", "*", AclOperation.ALL, ALLOW),
        AclBinding(ResourceType.BROKER, "kafka-cluster", LIT, "User:erin", "*", AclOperation.ALTER, ALLOW),
        AclBinding(ResourceType.TOPIC, "ka-t", LIT, "User:erin", "*", AclOperation.IDEMPOTENT_WRITE, ALLOW),
        AclBinding(ResourceType.TOPIC, "ka-t", LIT, "User:erin", "*", AclOperation.WRITE, AclPermissionType.DENY),
        AclBinding(ResourceType.TOPIC, "ka-t", LIT, "User:erin", "10.0.0.1", AclOperation.WRITE, ALLOW),
    ]
    codes = [_code(f) for f in root.create_acls(bindings).values()]
    assert sorted(codes) == [0, 0, 0, 42, 42, 42, 42]  # the unmapped four: INVALID_REQUEST each
    assert {(r.resource_type, r.pattern, r.resource_name, r.operation) for r in listener.rules()} == {
        ("topic", "literal", "ka-t", "read"),
        ("topic", "prefixed", "ka-w.", "write"),
        *(("group", "literal", "ka-g", op) for op in ("read", "write", "create", "delete", "alter", "describe")),
    }
    assert _erin_may(listener, "write", "topic", "ka-w.1")  # at once on this agent

    everything = AclBindingFilter(
        ResourceType.ANY, None, ResourcePatternType.ANY, "User:erin", None, AclOperation.ANY, AclPermissionType.ANY
    )
    described = root.describe_acls(everything).result(timeout=20)
    assert len(described) == 8 and {b.principal for b in described} == {"User:erin"}
    match = AclBindingFilter(
        ResourceType.TOPIC,
        "ka-w.7",
        ResourcePatternType.MATCH,
        "User:erin",
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    assert [(b.name, b.resource_pattern_type) for b in root.describe_acls(match).result(timeout=20)] == [("ka-w.", PRE)]

    # erin is no admin: refused, nothing shown, nothing changed
    erin = listener.admin(listener.erin)
    before = listener.rules()
    # librdkafka 2.16 drops DescribeAcls' top-level error (it answers []): kafka-python reads it
    assert erin.describe_acls(everything).result(timeout=20) == []
    assert isinstance(_python_describe(listener, listener.erin), ClusterAuthorizationFailedError)
    assert len(_python_describe(listener, listener.root)) == 8
    grab = AclBinding(ResourceType.TOPIC, "*", LIT, "User:erin", "*", AclOperation.ALL, ALLOW)
    assert [_code(f) for f in erin.create_acls([grab]).values()] == [KafkaError.CLUSTER_AUTHORIZATION_FAILED]
    assert [_code(f) for f in erin.delete_acls([everything]).values()] == [KafkaError.CLUSTER_AUTHORIZATION_FAILED]
    assert listener.rules() == before

    writes = AclBindingFilter(ResourceType.TOPIC, "ka-w.", PRE, "User:erin", "*", AclOperation.WRITE, ALLOW)
    deleted = next(iter(root.delete_acls([writes]).values())).result(timeout=20)
    assert [(b.name, b.operation) for b in deleted] == [("ka-w.", AclOperation.WRITE)]
    assert not _erin_may(listener, "write", "topic", "ka-w.1")
    assert len(listener.rules()) == 7


def test_group_apis_check_read(listener: Listener) -> None:
    """SyncGroup, Heartbeat and LeaveGroup need READ on the group (as Kafka): run on the listener's
    handlers as a logged-in erin's request runs (a client stops at JoinGroup's refusal)."""
    agent = listener.agent
    metadata = agent.server.service.manager.metadata
    agent.run(metadata.acl_add(AclRule("acme", "erin", "group", "literal", "ka-sync", "read")))
    erin = Principal("acme", "erin", False, "")

    async def call(key: int, body: dict[str, Any]) -> int:
        acls = agent.server.auth.authenticator.acls  # type: ignore[union-attr]
        acls.forget("acme", "erin")
        await acls.enter(erin)
        answer = await listener.kafka.handlers[key](body, 3, Context("acl-test", "127.0.0.1", None, erin))
        return int(answer["error_code"])

    member = {"generation_id": 1, "member_id": "m-1", "group_instance_id": None}
    sync = {**member, "protocol_type": None, "protocol_name": None, "assignments": []}
    leave = {"member_id": "m-1", "members": []}
    for group, allowed in (("ka-other", False), ("ka-sync", True)):
        codes = [
            agent.run(call(14, {"group_id": group, **sync})),
            agent.run(call(12, {"group_id": group, **member})),
            agent.run(call(13, {"group_id": group, **leave})),
        ]
        if allowed:
            assert KafkaError.GROUP_AUTHORIZATION_FAILED not in codes, codes
        else:
            assert codes == [KafkaError.GROUP_AUTHORIZATION_FAILED] * 3
