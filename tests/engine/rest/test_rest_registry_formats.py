"""REST produce and consume of schema-registry formats on a real agent (issue 13): PROTOBUF and
JSONSCHEMA values produced by subject (the agent serialises them in Confluent's wire format),
read back decoded to JSON from typed topics (avro / protobuf / json-schema) as Confluent's REST
Proxy does (partition reads, group reads and server-sent events), or as the stored bytes with
value_type=BINARY; a bad record is a 400 naming the record
and the field, and nothing is stored. And the registry's READONLY_OVERRIDE mode."""

from __future__ import annotations

import base64
import json
import random
import uuid
from typing import Any

from streamhouse.registry.protobuf_encode import ProtobufDataError, encode
from tests.agent_process import AgentProcess
from tests.engine.rest.conftest import Rest, assert_error
from tests.engine.rest.test_rest_records import _events, _sse

PROTO = """syntax = "proto3";
package shop;
message Order {
  int64 id = 1;
  string item = 2;
  repeated int32 tags = 3;
  State state = 4;
  map<string, int64> counts = 5;
  enum State { NEW = 0; PAID = 1; }
}
"""
JSON_SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "item": {"type": "string"}, "price": {"type": "number"}},
    }
)
AVRO = json.dumps(
    {
        "type": "record",
        "name": "Row",
        "fields": [{"name": "id", "type": "long"}, {"name": "note", "type": ["null", "string"], "default": None}],
    }
)


def _register(rest: Rest, subject: str, schema: str, schema_type: str) -> int:
    reply = rest.post(f"/registry/subjects/{subject}/versions", {"schema": schema, "schemaType": schema_type})
    assert reply.status == 200, reply.body
    return int(reply.json()["id"])


def _typed_topic(rest: Rest, topic: str, fmt: str) -> None:
    reply = rest.post(
        "/v1/sql", {"statement": f"CREATE TOPIC {topic} WITH (format = '{fmt}', subject = '{topic}-value')"}
    )
    assert reply.status == 200, reply.body


def _read(rest: Rest, topic: str, query: str = "") -> list[dict[str, Any]]:
    reply = rest.get(f"/v1/topics/{topic}/partitions/0/records?max_records=100{query}")
    assert reply.status == 200, reply.body
    return reply.json()["records"]  # type: ignore[no-any-return]


def test_protobuf_and_json_schema_produce_and_decoded_consume(rest: Rest, rest_agent: AgentProcess) -> None:
    tag = uuid.uuid4().hex[:6]
    # Protobuf: produced by subject into a protobuf topic, read back decoded.
    pb = f"pb_{tag}"
    pb_id = _register(rest, f"{pb}-value", PROTO, "PROTOBUF")
    _typed_topic(rest, pb, "protobuf")
    rows = [{"id": i, "item": f"i{i}", "tags": [i, 2], "state": "PAID", "counts": {"a": i}} for i in range(3)]
    path = f"/v1/topics/{pb}/records?acks=durable"
    produced = rest.post(path, {"partition_id": 0, "value_type": "PROTOBUF", "values": [*rows, None]})
    assert produced.status == 200, produced.body
    assert produced.json()["value_schema"] == {"subject": f"{pb}-value", "schema_id": pb_id, "schema_version": 1}
    got = _read(rest, pb)
    assert [r["value"] for r in got] == [*rows, None]
    raw = _read(rest, pb, "&value_type=BINARY")
    first = base64.b64decode(raw[0]["value"])
    assert first[:6] == b"\x00" + pb_id.to_bytes(4, "big") + b"\x00"  # magic, id, message index [0]
    assert first[6:] == encode(PROTO, rows[:1])[0].as_py()
    # A bad record: 400 naming the record and the field, and nothing stored.
    bad = rest.post(path, {"partition_id": 0, "value_type": "PROTOBUF", "values": [rows[0], {"id": "x"}]})
    assert "values[1] field 'id'" in assert_error(bad, 400, "protobuf_data")["message"]
    assert len(_read(rest, pb)) == 4
    # A decoded type that is not the topic's format is refused.
    assert_error(rest.get(f"/v1/topics/{pb}/partitions/0/records?value_type=AVRO"), 400, "invalid_input")

    # JSON Schema: into a json-schema topic and into a plain topic (framed bytes, no columns).
    js = f"js_{tag}"
    js_id = _register(rest, f"{js}-value", JSON_SCHEMA, "JSON")
    _typed_topic(rest, js, "json-schema")
    values = [{"id": 1, "item": "a", "price": 2.5}, {"id": 2, "item": "b", "price": 3}]
    body = {"partition_id": 0, "value_type": "JSONSCHEMA", "values": values}
    assert rest.post(f"/v1/topics/{js}/records?acks=durable", body).status == 200
    assert [r["value"] for r in _read(rest, js, "&value_type=JSONSCHEMA")] == [
        {"id": 1, "item": "a", "price": 2.5},
        {"id": 2, "item": "b", "price": 3.0},
    ]
    bad = rest.post(f"/v1/topics/{js}/records", {**body, "values": [values[0], {"id": "two"}]})
    assert "values[1] field 'id'" in assert_error(bad, 400, "json_schema_data")["message"]
    assert len(_read(rest, js)) == 2
    plain = f"plain_{tag}"
    assert rest.post("/v1/topics", {"topic_name": plain}).status == 201
    by_id = {**body, "value_schema": {"subject": f"{js}-value", "schema_id": js_id}}
    assert rest.post(f"/v1/topics/{plain}/records", by_id).status == 200
    stored = base64.b64decode(_read(rest, plain, "&value_type=BINARY")[0]["value"])
    assert stored == b"\x00" + js_id.to_bytes(4, "big") + b'{"id":1,"item":"a","price":2.5}'
    # The wrong schema type for the subject: 400.
    wrong = rest.post(f"/v1/topics/{js}/records", {**body, "value_type": "PROTOBUF"})
    assert_error(wrong, 400, "invalid_input")

    # Avro: decoded by default on an avro topic (the unflushed tail and segments alike).
    av = f"av_{tag}"
    _register(rest, f"{av}-value", AVRO, "AVRO")
    _typed_topic(rest, av, "avro")
    body = {"partition_id": 0, "value_type": "AVRO", "values": [{"id": 5, "note": "x"}, {"id": 6, "note": None}]}
    assert rest.post(f"/v1/topics/{av}/records", body).status == 200
    assert [r["value"] for r in _read(rest, av)] == [{"id": 5, "note": "x"}, {"id": 6, "note": None}]
    grouped = rest.get(f"/v1/consumer-groups/g_{tag}/topics/{av}/records").json()["records"]
    assert [r["value"]["id"] for r in grouped] == [5, 6]
    conn, response = _sse(rest_agent, f"/v1/topics/{av}/events?from=earliest&heartbeat_ms=200")
    try:
        assert [e["value"] for e in _events(response, 2)] == [{"id": 5, "note": "x"}, {"id": 6, "note": None}]
    finally:
        conn.close()


def test_readonly_override_mode(rest: Rest, rest_agent: AgentProcess) -> None:
    subject = f"ro_{uuid.uuid4().hex[:6]}"
    _register(rest, subject, AVRO, "AVRO")
    assert rest.call("PUT", f"/registry/mode/{subject}", {"mode": "READWRITE"}).status == 200
    try:
        assert rest.call("PUT", "/registry/mode", {"mode": "READONLY_OVERRIDE"}).json() == {"mode": "READONLY_OVERRIDE"}
        # It overrides the subject's own READWRITE: registering and deleting are refused (42205).
        assert rest.get(f"/registry/mode/{subject}").json() == {"mode": "READONLY_OVERRIDE"}
        again = rest.post(f"/registry/subjects/{subject}/versions", {"schema": '"string"'})
        assert (again.status, again.json()["error_code"]) == (422, 42205)
        deleted = rest.call("DELETE", f"/registry/subjects/{subject}")
        assert (deleted.status, deleted.json()["error_code"]) == (422, 42205)
    finally:
        assert rest.call("PUT", "/registry/mode", {"mode": "READWRITE"}).status == 200
    assert rest.get(f"/registry/subjects/{subject}/versions").json() == [1]
    assert rest.call("DELETE", f"/registry/subjects/{subject}").json() == [1]


def test_protobuf_encode_errors_name_the_field() -> None:
    try:
        encode(PROTO, [{"id": 1}, {"nope": 1}])
    except ProtobufDataError as exc:
        assert (exc.index, exc.field) == (1, "nope")
    else:
        raise AssertionError("an unknown field was encoded")


FLAT = """syntax = "proto3";
package s;
message Click {
  int64 id = 3; string url = 1; int32 n = 2; double score = 4; float f = 5; bool b = 6;
  sint64 z = 7; uint32 u = 8; E e = 9; sint32 w = 10;
  enum E { A = 0; B = 5; }
}
"""


def test_flat_protobuf_encoding_is_byte_for_byte_google_protobuf() -> None:
    """The column-wise path (protobuf_flat_encode.py) against json_format + SerializeToString on
    random rows with absent and null fields, extreme integers and non-ASCII text."""
    from google.protobuf import json_format

    from streamhouse.registry.protobuf_encode import message_class
    from streamhouse.registry.protobuf_flat_encode import encode_flat
    from streamhouse.storage.schemas.protobuf_arrow import parse_proto

    rnd = random.Random(7)
    rows: list[dict[str, Any] | None] = [None, {}]
    for _ in range(300):
        row: dict[str, Any] = {
            "id": rnd.randint(-(2**63), 2**63 - 1),
            "url": "ü/" * rnd.randint(0, 70),
            "n": rnd.randint(-(2**31), 2**31 - 1),
            "score": rnd.uniform(-1e9, 1e9),
            "f": 1.5,
            "b": rnd.random() < 0.5,
            "z": rnd.randint(-(2**63), 2**63 - 1),
            "u": rnd.randint(0, 2**32 - 1),
            "e": rnd.choice(["A", "B"]),
            "w": rnd.randint(-(2**31), 2**31 - 1),
        }
        for name in list(row):
            if rnd.random() < 0.2:
                row[name] = None if rnd.random() < 0.5 else row.pop(name)
        rows.append(row)
    fast = encode_flat(parse_proto(FLAT).at((0,)), rows)
    assert fast is not None
    cls = message_class(FLAT)
    slow = [None if r is None else json_format.ParseDict(r, cls()).SerializeToString() for r in rows]
    assert fast.to_pylist() == slow
    # What the column-wise path leaves to json_format: an int as a string, out of range, unknown symbol.
    for odd in ({"id": "5"}, {"n": 2**40}, {"e": "C"}, {"camelCase": 1}):
        assert encode_flat(parse_proto(FLAT).at((0,)), [odd]) is None
