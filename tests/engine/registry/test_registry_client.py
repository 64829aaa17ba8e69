"""The schema registry (issue 13) through confluent-kafka's own SchemaRegistryClient against real
agents: register, lookup, versions, global ids, compatibility refusals per level, soft and
permanent deletes, config and mode, references, Confluent error bodies, and a second agent on
the same PostgreSQL seeing every write at once (nothing to invalidate)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaReference, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from tests.engine.registry.conftest import RegistryAgents


def record(name: str, *fields: dict[str, Any]) -> str:
    return json.dumps({"type": "record", "name": name, "fields": list(fields)})


INT_A = {"name": "a", "type": "int"}
B_NO_DEFAULT = {"name": "b", "type": "string"}
B_DEFAULT = {"name": "b", "type": "string", "default": "x"}


def subject() -> str:
    return f"s-{uuid.uuid4().hex[:10]}-value"


def client(url: str) -> SchemaRegistryClient:
    return SchemaRegistryClient({"url": url})


def refused(code: int) -> Any:
    class Match:
        def __eq__(self, exc: object) -> bool:
            return isinstance(exc, SchemaRegistryError) and exc.error_code == code

    return Match()


def expect(code: int, fn: Any, *args: Any, **kwargs: Any) -> SchemaRegistryError:
    with pytest.raises(SchemaRegistryError) as info:
        fn(*args, **kwargs)
    assert info.value.error_code == code, info.value
    assert info.value.http_status_code == int(str(code)[:3])
    return info.value


def http(method: str, url: str, body: object | None = None) -> tuple[int, str, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], json.loads(err.read())


def test_register_lookup_versions_and_global_ids(agents: RegistryAgents) -> None:
    sr = client(agents.url_a)
    s1, s2 = subject(), subject()
    text = record("R", INT_A)
    first = sr.register_schema(s1, Schema(text, "AVRO"))
    # The same schema written differently, under another subject: one id.
    spaced = json.dumps(json.loads(text), indent=4)
    assert sr.register_schema(s2, Schema(spaced, "AVRO")) == first
    assert sr.register_schema(s1, Schema(text, "AVRO")) == first  # again: no new version
    second = sr.register_schema(s1, Schema(record("R", INT_A, B_DEFAULT), "AVRO"))
    assert second != first
    assert sr.get_versions(s1) == [1, 2]
    latest = sr.get_latest_version(s1)
    assert (latest.version, latest.schema_id) == (2, second)
    v1 = sr.get_version(s1, 1)
    assert v1.schema_id == first and json.loads(v1.schema.schema_str) == json.loads(text)
    found = sr.lookup_schema(s2, Schema(spaced, "AVRO"))
    assert (found.subject, found.version, found.schema_id) == (s2, 1, first)
    assert json.loads(sr.get_schema(first).schema_str) == json.loads(text)
    assert sorted(sr.get_subjects_by_schema_id(first)) == sorted([s1, s2])
    assert {(v.subject, v.version) for v in sr.get_schema_versions(first)} == {(s1, 1), (s2, 1)}
    assert {s1, s2} <= set(sr.get_subjects())
    assert set(http("GET", f"{agents.url_a}/schemas/types")[2]) == {"AVRO", "JSON", "PROTOBUF"}
    # The other agent, on the same store, answers the same at once.
    other = client(agents.url_b)
    assert other.get_versions(s1) == [1, 2]
    assert json.loads(other.get_schema(second).schema_str)["fields"][1]["default"] == "x"


def test_compatibility_levels(agents: RegistryAgents) -> None:
    sr = client(agents.url_a)
    s = subject()
    sr.register_schema(s, Schema(record("R", INT_A), "AVRO"))
    # BACKWARD (the default): a new field without a default cannot read old data.
    err = expect(409, sr.register_schema, s, Schema(record("R", INT_A, B_NO_DEFAULT), "AVRO"))
    assert "b" in str(err)
    assert sr.get_versions(s) == [1]  # nothing written
    assert not sr.test_compatibility(s, Schema(record("R", INT_A, B_NO_DEFAULT), "AVRO"))
    assert sr.test_compatibility(s, Schema(record("R", INT_A, B_DEFAULT), "AVRO"))
    # FORWARD: old readers must read new data, so removing a field without default is refused.
    sr.set_compatibility(s, "FORWARD")
    assert sr.get_compatibility(s) == "FORWARD"
    sr.register_schema(s, Schema(record("R", INT_A, B_NO_DEFAULT), "AVRO"))
    expect(409, sr.register_schema, s, Schema(record("R", B_NO_DEFAULT), "AVRO"))
    # FULL: both ways; a field with a default may come and go.
    sr.set_compatibility(s, "FULL")
    c_default = {"name": "c", "type": "long", "default": 0}
    sr.register_schema(s, Schema(record("R", INT_A, B_NO_DEFAULT, c_default), "AVRO"))
    # Dropping b (no default): new readers are fine, old readers of new data miss b.
    expect(409, sr.register_schema, s, Schema(record("R", INT_A, c_default), "AVRO"))
    # The same schema as an earlier live version is answered with its id, unchecked (as Confluent).
    assert sr.register_schema(s, Schema(record("R", INT_A), "AVRO")) == sr.get_version(s, 1).schema_id
    # NONE: anything goes, even another type.
    sr.set_compatibility(s, "NONE")
    sr.register_schema(s, Schema('"string"', "AVRO"))
    assert sr.get_versions(s) == [1, 2, 3, 4]


def test_transitive_checks_every_version(agents: RegistryAgents) -> None:
    sr = client(agents.url_a)
    plain, transitive = subject(), subject()
    sr.set_compatibility(transitive, "BACKWARD_TRANSITIVE")
    steps = [
        record("R", INT_A),
        record("R"),  # dropping a: a reader without it reads anything
        record("R", {"name": "a", "type": "string", "default": ""}),  # a again, but a string
    ]
    for s in (plain, transitive):
        sr.register_schema(s, Schema(steps[0], "AVRO"))
        sr.register_schema(s, Schema(steps[1], "AVRO"))
    # Against the latest only, v3 reads v2's data; against v1 (int a) it cannot.
    sr.register_schema(plain, Schema(steps[2], "AVRO"))
    expect(409, sr.register_schema, transitive, Schema(steps[2], "AVRO"))
    assert sr.get_versions(transitive) == [1, 2]


def test_soft_and_permanent_delete(agents: RegistryAgents) -> None:
    sr = client(agents.url_a)
    s = subject()
    first = sr.register_schema(s, Schema(record("D", INT_A), "AVRO"))
    second = sr.register_schema(s, Schema(record("D", INT_A, B_DEFAULT), "AVRO"))
    expect(40407, sr.delete_version, s, 2, permanent=True)  # not soft-deleted first
    assert sr.delete_version(s, 2) == 2
    assert sr.get_versions(s) == [1]
    expect(40402, sr.get_version, s, 2)
    assert sr.get_version(s, 2, deleted=True).schema_id == second
    expect(40406, sr.delete_version, s, 2)
    assert sr.delete_version(s, 2, permanent=True) == 2
    expect(40405, sr.delete_subject, s, permanent=True)
    assert sr.delete_subject(s) == [1]
    assert s not in sr.get_subjects()
    expect(40401, sr.get_versions, s)
    expect(40404, sr.delete_subject, s)
    assert sr.delete_subject(s, permanent=True) == [1]
    expect(40401, sr.delete_subject, s, permanent=True)
    # Ids outlive their versions (records written with them stay readable); versions restart.
    assert json.loads(client(agents.url_b).get_schema(first).schema_str)["name"] == "D"
    assert sr.register_schema(s, Schema(record("D", INT_A, B_DEFAULT), "AVRO")) == second
    assert sr.get_versions(s) == [1]


def test_config_and_mode(agents: RegistryAgents) -> None:
    sr = client(agents.url_a)
    s = subject()
    expect(40408, sr.get_compatibility, s)  # no level of its own
    assert sr.get_compatibility() == "BACKWARD"
    status, _, body = http("GET", f"{agents.url_a}/config/{s}?defaultToGlobal=true")
    assert (status, body) == (200, {"compatibilityLevel": "BACKWARD"})
    expect(42203, sr.set_compatibility, s, "SIDEWAYS")
    sr.set_compatibility(s, "FULL_TRANSITIVE")
    assert client(agents.url_b).get_compatibility(s) == "FULL_TRANSITIVE"
    status, _, body = http("DELETE", f"{agents.url_a}/config/{s}")
    assert (status, body) == (200, {"compatibilityLevel": "FULL_TRANSITIVE"})
    status, _, body = http("PUT", f"{agents.url_a}/mode/{s}", {"mode": "READONLY"})
    assert (status, body) == (200, {"mode": "READONLY"})
    expect(42205, sr.register_schema, s, Schema(record("M", INT_A), "AVRO"))
    assert client(agents.url_b).get_mode(s) == "READONLY"
    expect(42204, sr.update_mode, s, "SOMETIMES")
    sr.update_mode(s, "READWRITE")
    sr.register_schema(s, Schema(record("M", INT_A), "AVRO"))
    assert sr.get_mode(s) == "READWRITE"
    assert http("GET", f"{agents.url_a}/mode")[2] == {"mode": "READWRITE"}


def test_references(agents: RegistryAgents) -> None:
    sr = client(agents.url_a)
    base_subject, user_subject = subject(), subject()
    address = json.dumps({"type": "record", "name": "Address", "namespace": "x", "fields": [INT_A]})
    sr.register_schema(base_subject, Schema(address, "AVRO"))
    user = record("User", {"name": "home", "type": "x.Address"})
    refs = [SchemaReference("x.Address", base_subject, 1)]
    user_id = sr.register_schema(user_subject, Schema(user, "AVRO", refs))
    got = sr.get_schema(user_id)
    assert [(r.name, r.subject, r.version) for r in got.references] == [("x.Address", base_subject, 1)]
    status, _, body = http("GET", f"{agents.url_a}/subjects/{base_subject}/versions/1/referencedby")
    assert (status, body) == (200, [user_id])
    expect(42206, sr.delete_subject, base_subject)
    expect(42201, sr.register_schema, subject(), Schema(user, "AVRO"))  # x.Address unknown without the reference
    expect(42201, sr.register_schema, subject(), Schema(user, "AVRO", [SchemaReference("x.Address", base_subject, 9)]))


def test_errors_are_confluent_bodies(agents: RegistryAgents) -> None:
    url = agents.url_a
    status, ctype, body = http("GET", f"{url}/subjects/nope-{uuid.uuid4().hex}/versions")
    assert (status, body["error_code"]) == (404, 40401)
    assert ctype.startswith("application/vnd.schemaregistry.v1+json")
    assert http("GET", f"{url}/schemas/ids/987654321")[2]["error_code"] == 40403
    s = subject()
    client(url).register_schema(s, Schema('"int"', "AVRO"))
    assert http("GET", f"{url}/subjects/{s}/versions/abc")[2]["error_code"] == 42202
    assert http("GET", f"{url}/subjects/{s}/versions/0")[2]["error_code"] == 42202
    assert http("GET", f"{url}/subjects/{s}/versions/7")[2]["error_code"] == 40402
    assert http("GET", f"{url}/subjects/{s}/versions/latest")[2]["version"] == 1
    assert http("POST", f"{url}/subjects/{s}/versions", {"schema": "{not json"})[2]["error_code"] == 42201
    assert http("POST", f"{url}/subjects/{s}/versions", {"schema": '{"type":"record"}'})[2]["error_code"] == 42201
    assert http("POST", f"{url}/subjects/{s}/versions", {"nothing": 1})[2]["error_code"] == 42201
    assert http("POST", f"{url}/subjects/{s}", {"schema": '"long"'})[2]["error_code"] == 40403
    status, _, body = http("GET", f"{url}/contexts")  # routes clients probe that we do not serve
    assert (status, body["error_code"]) == (404, 404)
    assert http("GET", f"{url}/subjects/{s}/metadata")[2]["error_code"] == 404
    status, _, raw = http("GET", f"{url}/subjects/{s}/versions/1/schema")
    assert (status, raw) == (200, "int")
    # The agent's own routes are untouched by the registry's catch-all, and one OpenAPI document
    # names the registry's routes with their error model.
    base = f"http://127.0.0.1:{agents.a.http_port}"
    assert http("GET", f"{base}/health/live")[0] == 200
    status, _, doc = http("GET", f"{base}/openapi.json")
    assert status == 200 and "/registry/subjects/{subject}/versions" in doc["paths"]
    assert "RegistryErrorBody" in json.dumps(doc["paths"]["/registry/subjects/{subject}/versions"])
