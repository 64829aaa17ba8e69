"""API keys on every face of a real agent (issue 15): gRPC through the SDK and a raw stub, REST
/v1, the schema registry through confluent-kafka's SchemaRegistryClient, /metrics and /health.
For each: no credential, a malformed one, a wrong secret, a revoked key and an expired key are
refused with the protocol's own auth error and change nothing; only the right key works. The
refusals are counted by front end and reason, and no secret reaches the log or the metrics."""

from __future__ import annotations

import base64
import logging
import urllib.error
import urllib.request

import grpc
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

import streamhouse
from streamhouse.proto import streamhouse_pb2 as pb
from streamhouse.proto import streamhouse_pb2_grpc as pbg
from streamhouse.storage.errors import AuthenticationError, InvalidInputError, TopicNotFoundError
from tests.engine.auth.conftest import AuthAgent


def http(
    agent: AuthAgent, path: str, header: str | None, data: bytes | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(agent.http + path, data=data, method="POST" if data is not None else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if header is not None:
        request.add_header("Authorization", header)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def bearer(token: str | None) -> str | None:
    return None if token is None else f"Bearer {token}"


def basic(token: str) -> str:
    return "Basic " + base64.b64encode(token.replace(".", ":", 1).encode()).decode()


def test_grpc(auth_agent: AuthAgent, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="streamhouse")
    with streamhouse.connect(auth_agent.grpc, api_key=auth_agent.good) as good:
        good.create_topic("grpc-t", partitions=1)
        good.produce("grpc-t", [{"v": 1}])
        assert good.describe("grpc-t").partitions[0].end_offset == 1
        for reason, token in auth_agent.refused().items():
            if reason == "malformed":
                with pytest.raises(InvalidInputError):  # the SDK refuses a key of the wrong shape itself
                    streamhouse.connect(auth_agent.grpc, api_key=token)
                continue
            with streamhouse.connect(auth_agent.grpc, api_key=token) as other:
                with pytest.raises(AuthenticationError, match=r"invalid credential|authentication required"):
                    other.produce("grpc-t", [{"v": 2}])
                with pytest.raises(AuthenticationError):
                    other.create_topic(f"grpc-{reason}")
                with pytest.raises(AuthenticationError):
                    other.topics()
            with pytest.raises(TopicNotFoundError):
                good.describe(f"grpc-{reason}")
        assert good.describe("grpc-t").partitions[0].end_offset == 1  # nothing was written
    # The raw protocol: UNAUTHENTICATED and the error class, nothing else, even for a malformed
    # token; the standard health service stays open.
    channel = grpc.insecure_channel(auth_agent.grpc)
    admin = pbg.AdminStub(channel)
    for metadata in ((), (("authorization", "Bearer not-a-key"),), (("authorization", "Basic ???"),)):
        with pytest.raises(grpc.RpcError) as refused:
            admin.ListTopics(pb.ListTopicsRequest(), metadata=metadata, timeout=10)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "streamhouse-error" in dict(refused.value.trailing_metadata() or ())
    listed = admin.ListTopics(pb.ListTopicsRequest(), metadata=(("authorization", bearer(auth_agent.good)),))
    assert "grpc-t" in [t.name for t in listed.topics]
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    channel.close()
    secrets = [t.split(".", 1)[1] for t in (auth_agent.good, auth_agent.wrong, auth_agent.revoked)]
    assert not any(s in caplog.text for s in secrets)


def test_rest(auth_agent: AuthAgent) -> None:
    body = b'{"topic_name": "rest-t", "partitions_count": 1}'
    for reason, token in auth_agent.refused().items():
        status, headers, answer = http(auth_agent, "/v1/topics", bearer(token), body)
        assert status == 401, (reason, answer)
        assert "Bearer" in headers["www-authenticate"] and "Basic" in headers["www-authenticate"]
        assert b'"code":"unauthenticated"' in answer and (token is None or token.encode() not in answer)
        status, _, _ = http(auth_agent, "/v1/topics/rest-t/records", bearer(token), b'{"values": [1]}')
        assert status == 401
    assert http(auth_agent, "/v1/topics/rest-t", bearer(auth_agent.good))[0] == 404  # nothing was created
    assert http(auth_agent, "/v1/topics", bearer(auth_agent.good), body)[0] == 201
    produced = http(auth_agent, "/v1/topics/rest-t/records", basic(auth_agent.good), b'{"values": [1, 2]}')
    assert produced[0] == 200, produced


def test_registry_through_confluent_client(auth_agent: AuthAgent) -> None:
    url = auth_agent.http + "/registry"
    schema = Schema('{"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]}', "AVRO")
    for reason, token in auth_agent.refused().items():
        conf = {"url": url}
        if token is not None:
            user, _, password = token.partition(".")
            conf["basic.auth.user.info"] = f"{user}:{password or 'x'}"
        client = SchemaRegistryClient(conf)
        with pytest.raises(SchemaRegistryError) as refused:
            client.register_schema("reg-value", schema)
        assert refused.value.http_status_code == 401 and refused.value.error_code == 40101, reason
        with pytest.raises(SchemaRegistryError):
            client.get_subjects()
    user, _, password = auth_agent.good.partition(".")
    client = SchemaRegistryClient({"url": url, "basic.auth.user.info": f"{user}:{password}"})
    assert client.get_subjects() == []  # the refused registrations left nothing
    client.register_schema("reg-value", schema)
    assert client.get_subjects() == ["reg-value"]


def test_metrics_and_health(auth_agent: AuthAgent) -> None:
    assert http(auth_agent, "/health/live", None)[0] == 200  # liveness stays open (load balancers)
    assert http(auth_agent, "/health/ready", None)[0] == 401
    for reason, token in auth_agent.refused().items():
        assert http(auth_agent, "/metrics", bearer(token))[0] == 401, reason
    status, _, text = http(auth_agent, "/metrics", basic(auth_agent.good))
    assert status == 200
    metrics = text.decode()
    for reason in ("missing", "malformed", "wrong_secret", "revoked", "expired"):
        assert f'streamhouse_auth_failures_total{{front="http",reason="{reason}"}}' in metrics
    for token in (auth_agent.good, auth_agent.wrong, auth_agent.revoked, auth_agent.expired):
        assert token.split(".", 1)[1] not in metrics
