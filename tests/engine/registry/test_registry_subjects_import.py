"""Subjects holding '/' (issue 13): clients URL-encode the subject (`team%2Forders`), and every
subject route serves it: confluent-kafka's SchemaRegistryClient through each call it makes with
a subject, raw HTTP for the rest, and REST produce by such a subject. Real agents on PostgreSQL +
SeaweedFS."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.engine.registry.conftest import RegistryAgents
from tests.engine.rest.conftest import Rest

V1 = json.dumps({"type": "record", "name": "Row", "fields": [{"name": "a", "type": "long"}]})
V2 = json.dumps(
    {
        "type": "record",
        "name": "Row",
        "fields": [{"name": "a", "type": "long"}, {"name": "b", "type": "string", "default": ""}],
    }
)


def _http(method: str, url: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/vnd.schemaregistry.v1+json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, json.loads(raw) if raw.startswith((b"{", b"[")) or raw.isdigit() else raw
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_subject_with_slashes_through_every_route(agents: RegistryAgents) -> None:
    client = SchemaRegistryClient({"url": agents.url_a})
    subject = f"team/{uuid.uuid4().hex[:6]}/orders-value"
    encoded = subject.replace("/", "%2F")
    first = client.register_schema(subject, Schema(V1, "AVRO"))
    assert subject in client.get_subjects()
    assert client.get_versions(subject) == [1]
    assert client.get_latest_version(subject).schema_id == first
    assert client.get_version(subject, 1).schema_id == first
    assert client.lookup_schema(subject, Schema(V1, "AVRO")).version == 1
    assert client.set_compatibility(subject, "FULL") == {"compatibility": "FULL"}
    assert client.get_compatibility(subject) == "FULL"
    assert client.test_compatibility(subject, Schema(V2, "AVRO")) is True
    second = client.register_schema(subject, Schema(V2, "AVRO"))
    assert client.get_versions(subject) == [1, 2]
    assert (client.get_subjects() or []).count(subject) == 1

    base = agents.url_b  # the other agent: the same registry
    assert _http("GET", f"{base}/subjects/{encoded}/versions/1/schema") == (200, json.loads(V1))
    assert _http("GET", f"{base}/subjects/{encoded}/versions/2/referencedby") == (200, [])
    assert _http("POST", f"{base}/compatibility/subjects/{encoded}/versions/1", {"schema": V2})[1] == {
        "is_compatible": True
    }
    assert _http("PUT", f"{base}/mode/{encoded}", {"mode": "READONLY"}) == (200, {"mode": "READONLY"})
    assert _http("GET", f"{base}/mode/{encoded}") == (200, {"mode": "READONLY"})
    assert _http("DELETE", f"{base}/mode/{encoded}") == (200, {"mode": "READONLY"})
    assert _http("DELETE", f"{base}/config/{encoded}") == (200, {"compatibilityLevel": "FULL"})
    # A subject that is a prefix of it is another subject, and unknown.
    status, body = _http("GET", f"{base}/subjects/{encoded.rsplit('%2F', 1)[0]}/versions")
    assert (status, body["error_code"]) == (404, 40401)

    # REST produce by it (AVRO values, the subject named outright).
    topic = f"slash_{uuid.uuid4().hex[:6]}"
    rest = Rest(f"http://127.0.0.1:{agents.a.http_port}")
    assert rest.post("/v1/topics", {"topic_name": topic}).status == 201
    produced = rest.post(
        f"/v1/topics/{topic}/records",
        {"value_type": "AVRO", "value_schema": {"subject": subject}, "values": [{"a": 1, "b": "x"}]},
    )
    assert produced.status == 200, produced.body
    assert produced.json()["value_schema"] == {"subject": subject, "schema_id": second, "schema_version": 2}

    assert client.delete_version(subject, 1) == 1
    assert client.get_versions(subject) == [2]
    assert client.delete_subject(subject) == [2]
    assert client.delete_subject(subject, permanent=True) == [1, 2]  # soft-deleted ones too
    with pytest.raises(SchemaRegistryError) as gone:
        client.get_versions(subject)
    assert gone.value.error_code == 40401
