"""JSON Schema and Protobuf subjects through confluent-kafka's SchemaRegistryClient on a real agent:
registered with their type kept, checked by the compat/ checkers under the subject's level, bad
texts refused 42201."""

from __future__ import annotations

import json
import uuid

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from tests.engine.registry.conftest import RegistryAgents
from tests.engine.registry.test_registry_client import expect


def test_json_schema_subject(agents: RegistryAgents) -> None:
    sr = SchemaRegistryClient({"url": agents.url_a})
    s = f"j-{uuid.uuid4().hex[:10]}-value"
    v1 = json.dumps({"type": "object", "properties": {"a": {"type": "integer"}}})
    first = sr.register_schema(s, Schema(v1, "JSON"))
    got = sr.get_schema(first)
    assert got.schema_type == "JSON" and json.loads(got.schema_str) == json.loads(v1)
    # The same document, spelled with other whitespace: the same id.
    assert sr.register_schema(s, Schema(json.dumps(json.loads(v1), indent=3), "JSON")) == first
    # An integer property narrowed to a string: old documents no longer validate.
    narrowed = json.dumps({"type": "object", "properties": {"a": {"type": "string"}}})
    expect(409, sr.register_schema, s, Schema(narrowed, "JSON"))
    widened = json.dumps({"type": "object", "properties": {"a": {"type": ["integer", "string"]}}})
    assert sr.register_schema(s, Schema(widened, "JSON")) != first
    assert sr.get_versions(s) == [1, 2]
    expect(42201, sr.register_schema, s, Schema("{not json", "JSON"))


def test_protobuf_subject(agents: RegistryAgents) -> None:
    sr = SchemaRegistryClient({"url": agents.url_a})
    s = f"p-{uuid.uuid4().hex[:10]}-value"
    v1 = 'syntax = "proto3";\npackage demo;\nmessage Click {\n  string user = 1;\n  int64 n = 2;\n}\n'
    first = sr.register_schema(s, Schema(v1, "PROTOBUF"))
    got = sr.get_schema(first)
    assert got.schema_type == "PROTOBUF" and "message Click" in got.schema_str
    # Another spelling (comments, layout) of the same .proto: the same id.
    respelled = '// clicks\nsyntax = "proto3"; package demo;\nmessage Click { string user = 1; int64 n = 2; }'
    assert sr.register_schema(f"{s}-again", Schema(respelled, "PROTOBUF")) == first
    # A field's type changed from string to a number: old bytes read wrong.
    changed = v1.replace("string user = 1;", "int32 user = 1;")
    expect(409, sr.register_schema, s, Schema(changed, "PROTOBUF"))
    added = v1.replace("int64 n = 2;", "int64 n = 2;\n  string page = 3;")
    assert sr.register_schema(s, Schema(added, "PROTOBUF")) != first
    expect(42201, sr.register_schema, s, Schema("message {", "PROTOBUF"))
    expect(42201, sr.register_schema, s, Schema(v1, "XML"))
