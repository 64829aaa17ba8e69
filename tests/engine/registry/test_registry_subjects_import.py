"""Two registry features Confluent's clients rely on (issue 13), on real agents (PostgreSQL +
SeaweedFS) and the metadata store's contract (SQLite and PostgreSQL):

- subjects holding '/': clients URL-encode the subject (`team%2Forders`), and every subject
  route serves it: confluent-kafka's SchemaRegistryClient through each call it makes with a
  subject, raw HTTP for the rest, and REST produce by such a subject;
- IMPORT mode (migrations): with the subject's (or global) mode IMPORT a schema is registered
  with the id and version it had elsewhere, no compatibility check; ids stay global (no id is
  overwritten, no schema gets two), later ids follow the imported ones, and outside IMPORT an
  id or version is refused (42205). The client sets the mode; the registration with an id is
  HTTP, since the Python client's Schema has no id field."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.schemas.errors import OperationNotPermittedError
from streamhouse.storage.schemas.registry import SchemaText, SubjectVersion
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


def test_import_mode_keeps_ids_and_versions(agents: RegistryAgents) -> None:
    client = SchemaRegistryClient({"url": agents.url_a})
    subject = f"imported-{uuid.uuid4().hex[:8]}-value"
    base = agents.url_b
    kept = 1_000_000 + int(uuid.uuid4().int % 1_000_000)  # the id the schema had in the old registry
    # Schemas of their own: a text already stored keeps its one id (importing it as another is refused).
    v1, v2 = (v.replace('"Row"', f'"Imported{kept}"') for v in (V1, V2))

    # Outside IMPORT mode an id is refused, and nothing is registered.
    refused = _http("POST", f"{base}/subjects/{subject}/versions", {"schema": v1, "id": kept, "version": 3})
    assert (refused[0], refused[1]["error_code"]) == (422, 42205)
    assert client.update_mode(subject, "IMPORT") == "IMPORT"
    assert client.get_mode(subject) == "IMPORT"
    assert _http("POST", f"{base}/subjects/{subject}/versions", {"schema": v1, "id": kept, "version": 3}) == (
        200,
        {"id": kept, "subject": subject, "version": 3},
    )
    again = _http("POST", f"{base}/subjects/{subject}/versions", {"schema": v1, "id": kept, "version": 3})
    assert again[1]["id"] == kept  # idempotent
    assert client.get_versions(subject) == [3]
    assert client.get_version(subject, 3).schema_id == kept
    assert json.loads(client.get_schema(kept).schema_str) == json.loads(v1)

    for body in (
        {"schema": v2, "id": kept},  # another schema over an existing id
        {"schema": v1, "id": kept + 1},  # the same schema under a second id
        {"schema": v2, "id": kept + 1, "version": 3},  # a version that holds another schema
        {"schema": v2},  # IMPORT needs the id
    ):
        status, error = _http("POST", f"{base}/subjects/{subject}/versions", body)
        assert (status, error["error_code"]) == (422, 42205), (body, error)
    assert client.get_versions(subject) == [3]

    # IMPORT on a subject that has schemas needs force (as Confluent).
    with pytest.raises(SchemaRegistryError) as busy:
        client.update_mode(subject, "IMPORT")  # already IMPORT, but it has schemas now
    assert busy.value.error_code == 42205
    assert client.update_mode(subject, "IMPORT", force=True) == "IMPORT"

    # Back to READWRITE: later registrations get ids past the imported one, versions go on.
    assert client.update_mode(subject, "READWRITE") == "READWRITE"
    later = client.register_schema(subject, Schema(v2, "AVRO"))
    assert later > kept
    assert client.get_versions(subject) == [3, 4]


async def test_store_import_contract(metadata_store: MetadataStore) -> None:
    store = metadata_store
    a, b = SchemaText("AVRO", '{"type":"string"}'), SchemaText("AVRO", '{"type":"long"}')
    assert await store.registry_import("s", a, 500, 2) == SubjectVersion("s", 2, 500)
    assert await store.registry_import("s", a, 500, 2) == SubjectVersion("s", 2, 500)
    assert await store.registry_import("t", a, 500, 1) == SubjectVersion("t", 1, 500)  # one id, two subjects
    for subject, schema, schema_id, version in (("s", b, 500, 3), ("s", a, 501, 3), ("s", b, 501, 2)):
        with pytest.raises(OperationNotPermittedError):
            await store.registry_import(subject, schema, schema_id, version)
    assert await store.registry_schema(501) is None  # refused imports wrote nothing
    assert [v.version for v in await store.registry_versions("s")] == [2]
    stored = await store.registry_schema(500)
    assert stored is not None and stored.schema == a
    nxt = await store.registry_register("s", b, 2)  # the counter moved past the imported id
    assert nxt == SubjectVersion("s", 3, 501)
