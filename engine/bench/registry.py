"""`streamhouse bench registry`: schema-registry values → typed columns (issue 13).

The same records four times, in one run: as Confluent-framed Avro (magic byte, schema id, Avro
binary, what AvroSerializer writes), Protobuf (magic byte, id, message indexes, the message, what
ProtobufSerializer writes) and JSON Schema (magic byte, id, JSON, what JSONSerializer writes) —
two schema ids of one evolving subject when --ids 2 — and as plain JSON. Measured: the
produce-time decode that turns a batch of values into the topic's declared columns, the one the
segment writer then stores as they are — each format's `decode` (storage/values/registry_formats.py:
Avro per schema id with storage/schemas/avro_arrow.py, Protobuf per id with the wavefront decoder
storage/values/protobuf_wire.py, JSON Schema with the JSON reader), JSON with
storage/values/json_decode.py's check_values. Records/s is records over the best of --repeat runs
of --batch records each (the agent decodes one produced batch at a time), by wall time and by
process CPU time (all threads; the figure to quote on a shared machine). The serialising itself
(fastavro, google.protobuf, json.dumps) is set-up, not measured. In process; no agent, no stores.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from streamhouse.storage.values.avro_decode import avro_columns, decode_avro_values
from streamhouse.storage.values.json_decode import check_values
from streamhouse.storage.values.json_schema_decode import decode_json_schema_values, json_schema_columns
from streamhouse.storage.values.protobuf_decode import decode_protobuf_values, protobuf_columns
from streamhouse.storage.values.schema import ValueSchema

console = Console(stderr=True)
_FIELDS = [
    {"name": "user", "type": "string"},
    {"name": "n", "type": "long"},
    {"name": "score", "type": ["null", "double"], "default": None},
    {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "ok", "type": "boolean"},
]
V1 = {"type": "record", "name": "Click", "namespace": "bench", "fields": _FIELDS}
V2 = {**V1, "fields": [*_FIELDS, {"name": "country", "type": "string", "default": "none"}]}
SUBJECT = "bench-value"
# The nested variant: V1 plus a record (a ROW column) and bytes (BYTES), one schema id.
_GEO = {
    "type": "record",
    "name": "Geo",
    "fields": [{"name": "city", "type": "string"}, {"name": "lat", "type": "double"}],
}
NESTED = {**V1, "fields": [*_FIELDS, {"name": "geo", "type": _GEO}, {"name": "tag", "type": "bytes"}]}
# The collections variant: V1 plus an array (ARRAY<STRING>, 0-3 items) and a map (MAP<STRING, BIGINT>, 0-2).
_TAGS = {"name": "tags", "type": {"type": "array", "items": "string"}}
COLLECTIONS = {**V1, "fields": [*_FIELDS, _TAGS, {"name": "attrs", "type": {"type": "map", "values": "long"}}]}
# The same record as a .proto (event time as google.protobuf.Timestamp, `score` with presence).
PROTO_V1 = """syntax = "proto3";
package bench;
import "google/protobuf/timestamp.proto";
message Click {
  string user = 1;
  int64 n = 2;
  optional double score = 3;
  google.protobuf.Timestamp at = 4;
  bool ok = 5;
}
"""
PROTO_V2 = PROTO_V1.replace("  bool ok = 5;\n", "  bool ok = 5;\n  string country = 6;\n")
_JSON_PROPS: dict[str, Any] = {
    "user": {"type": "string"},
    "n": {"type": "integer"},
    "score": {"type": ["null", "number"]},
    "at": {"type": "string", "format": "date-time"},
    "ok": {"type": "boolean"},
}
JSON_V1 = {"title": "Click", "type": "object", "additionalProperties": False, "properties": _JSON_PROPS}
JSON_V2 = {**JSON_V1, "properties": {**_JSON_PROPS, "country": {"type": "string"}}}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=1_000_000, help="records in all (default 1,000,000)")
    parser.add_argument("--batch", type=int, default=100_000, help="records per decoded batch (default 100,000)")
    parser.add_argument("--ids", type=int, choices=[1, 2], default=2, help="schema ids in the batch (default 2)")
    parser.add_argument("--repeat", type=int, default=3, help="runs; the best counts (default 3)")


def _rows(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(7)
    users = rng.integers(0, 10_000, n)
    scores = rng.random(n) * 100
    return [
        {
            "user": f"user-{int(users[i])}",
            "n": i,
            "score": None if i % 7 == 0 else float(scores[i]),
            "at": 1_700_000_000_000 + i,
            "ok": bool(i & 1),
            "country": "nl",
        }
        for i in range(n)
    ]


def _schema_id(i: int, ids: int) -> int:
    """Ids 1 (V1) and 2 (V2) alternate in runs of 100 records when the batch has two."""
    return 1 if ids == 1 or (i // 100) % 2 == 0 else 2


def _avro(rows: list[dict[str, Any]], ids: int) -> pa.Array[Any]:
    """Framed as AvroSerializer frames them (set-up, not measured: fastavro is imported here so the
    CLI's parser does not load it)."""
    import fastavro

    parsed = {1: fastavro.parse_schema(V1), 2: fastavro.parse_schema(V2)}
    out: list[bytes] = []
    for i, row in enumerate(rows):
        schema_id = _schema_id(i, ids)
        buffer = io.BytesIO()
        buffer.write(struct.pack(">bI", 0, schema_id))
        fastavro.schemaless_writer(buffer, parsed[schema_id], row)
        out.append(buffer.getvalue())
    return pa.array(out, pa.binary())


def _nested(rows: list[dict[str, Any]]) -> tuple[pa.Array[Any], pa.Array[Any]]:
    """The records with a `geo` record and `tag` bytes, framed Avro (id 3) and JSON (BYTES as text)."""
    import fastavro

    parsed = fastavro.parse_schema(NESTED)
    avro: list[bytes] = []
    text: list[bytes] = []
    for i, row in enumerate(rows):
        record = {k: row[k] for k in ("user", "n", "score", "at", "ok")}
        record["geo"] = {"city": f"c{i % 50}", "lat": i / 1e6}
        record["tag"] = b"t%d" % (i % 10)
        buffer = io.BytesIO()
        buffer.write(struct.pack(">bI", 0, 3))
        fastavro.schemaless_writer(buffer, parsed, record)
        avro.append(buffer.getvalue())
        text.append(json.dumps({**record, "tag": record["tag"].decode()}).encode())
    return pa.array(avro, pa.binary()), pa.array(text, pa.binary())


def _collections(rows: list[dict[str, Any]]) -> pa.Array[Any]:
    """The records with `tags` and `attrs`, framed Avro (id 4)."""
    import fastavro

    parsed = fastavro.parse_schema(COLLECTIONS)
    out: list[bytes] = []
    for i, row in enumerate(rows):
        record = {**{k: row[k] for k in ("user", "n", "score", "at", "ok")}, "tags": [f"t{j}" for j in range(i % 4)]}
        record["attrs"] = {f"k{j}": i * j for j in range(i % 3)}
        buffer = io.BytesIO()
        buffer.write(struct.pack(">bI", 0, 4))
        fastavro.schemaless_writer(buffer, parsed, record)
        out.append(buffer.getvalue())
    return pa.array(out, pa.binary())


def _json(rows: list[dict[str, Any]], columns: ValueSchema, ids: int) -> pa.Array[Any]:
    """The same records as JSON; a V1 writer's record has no `country` (it reads as null)."""
    names = [c.name for c in columns.columns]
    out = []
    for i, row in enumerate(rows):
        keep = names if _schema_id(i, ids) == 2 else [k for k in names if k != "country"]
        out.append(json.dumps({k: row[k] for k in keep}).encode())
    return pa.array(out, pa.binary())


def _protobuf_classes() -> dict[int, Any]:
    """bench.Click of PROTO_V1 and PROTO_V2 as message classes, each in its own descriptor pool
    (built from descriptors, so no protoc is needed; google.protobuf is imported here so the CLI's
    parser does not load it)."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

    f = descriptor_pb2.FieldDescriptorProto
    classes = {}
    for schema_id, country in ((1, False), (2, True)):
        fd = descriptor_pb2.FileDescriptorProto(name=f"click_v{schema_id}.proto", package="bench", syntax="proto3")
        fd.dependency.append("google/protobuf/timestamp.proto")
        m = fd.message_type.add(name="Click")
        m.field.add(name="user", number=1, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
        m.field.add(name="n", number=2, type=f.TYPE_INT64, label=f.LABEL_OPTIONAL)
        m.field.add(name="score", number=3, type=f.TYPE_DOUBLE, label=f.LABEL_OPTIONAL, proto3_optional=True)
        m.field[-1].oneof_index = 0
        m.oneof_decl.add(name="_score")
        m.field.add(
            name="at", number=4, type=f.TYPE_MESSAGE, label=f.LABEL_OPTIONAL, type_name=".google.protobuf.Timestamp"
        )
        m.field.add(name="ok", number=5, type=f.TYPE_BOOL, label=f.LABEL_OPTIONAL)
        if country:
            m.field.add(name="country", number=6, type=f.TYPE_STRING, label=f.LABEL_OPTIONAL)
        pool = descriptor_pool.DescriptorPool()
        pool.Add(descriptor_pb2.FileDescriptorProto.FromString(timestamp_pb2.DESCRIPTOR.serialized_pb))
        pool.Add(fd)
        classes[schema_id] = message_factory.GetMessageClass(pool.FindMessageTypeByName("bench.Click"))
    return classes


def _protobuf(rows: list[dict[str, Any]], ids: int) -> pa.Array[Any]:
    """Framed as ProtobufSerializer frames them (message indexes [0] as the single byte 0)."""
    classes = _protobuf_classes()
    out: list[bytes] = []
    for i, row in enumerate(rows):
        schema_id = _schema_id(i, ids)
        m = classes[schema_id](user=row["user"], n=row["n"], ok=row["ok"])
        if row["score"] is not None:
            m.score = row["score"]
        m.at.seconds, m.at.nanos = divmod(row["at"], 1000)[0], divmod(row["at"], 1000)[1] * 1_000_000
        if schema_id == 2:
            m.country = row["country"]
        out.append(struct.pack(">bIb", 0, schema_id, 0) + m.SerializeToString())
    return pa.array(out, pa.binary())


def _json_schema(rows: list[dict[str, Any]], ids: int) -> pa.Array[Any]:
    """The records as JSONSerializer frames them (magic byte and schema id, then JSON). `at` is an
    ISO-8601 string, as the schema's `"type": "string", "format": "date-time"` requires (the
    serializer validates it); the JSON path's records carry it as epoch milliseconds."""
    out = []
    for i, row in enumerate(rows):
        schema_id = _schema_id(i, ids)
        doc = {k: v for k, v in row.items() if k != "country" or schema_id == 2}
        at = datetime.fromtimestamp(row["at"] / 1000, tz=UTC)
        doc["at"] = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
        out.append(struct.pack(">bI", 0, schema_id) + json.dumps(doc).encode())
    return pa.array(out, pa.binary())


def _best(
    values: pa.Array[Any], batch: int, repeat: int, decode: Callable[[pa.Array[Any]], object]
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process, all threads) of the best run."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(values), batch):
            decode(values.slice(start, batch))
        best = min(best, (time.perf_counter() - started, time.process_time() - cpu))
    return best


def _same(name: str, got: pa.Table, want: pa.Table) -> bool:
    """The bench's own check: a format decodes the records to the same columns as Avro does."""
    if [c.to_pylist() for c in got.columns] == [c.to_pylist() for c in want.columns]:
        return True
    console.print(f"[red]the {name} and Avro decodes of the same records differ[/red]")
    return False


def run(args: argparse.Namespace) -> int:
    n = args.records
    console.print(
        f"serialising {n:,} records as framed Avro, Protobuf, JSON Schema ({args.ids} schema id(s)) and JSON …"
    )
    rows = _rows(n)
    latest = 2 if args.ids == 2 else 1
    avro_schema = avro_columns(json.dumps(V2 if latest == 2 else V1), SUBJECT)
    json_schema = ValueSchema(avro_schema.columns, None, "json")
    proto_schema = protobuf_columns(PROTO_V2 if latest == 2 else PROTO_V1, SUBJECT)
    js_schema = json_schema_columns(json.dumps(JSON_V2 if latest == 2 else JSON_V1), SUBJECT)
    avro_values = _avro(rows, args.ids)
    json_values = _json(rows, json_schema, args.ids)
    proto_values = _protobuf(rows, args.ids)
    js_values = _json_schema(rows, args.ids)
    nested_avro, nested_json = _nested(rows)
    nested_schema = avro_columns(json.dumps(NESTED), SUBJECT)
    nested_json_schema = ValueSchema(nested_schema.columns, None, "json")
    nested_writers = {3: json.dumps(NESTED)}
    collections_avro = _collections(rows)
    collections_schema = avro_columns(json.dumps(COLLECTIONS), SUBJECT)
    collections_writers = {4: json.dumps(COLLECTIONS)}
    writers = {1: json.dumps(V1), 2: json.dumps(V2)}
    proto_writers = {1: PROTO_V1, 2: PROTO_V2}
    js_writers = {1: json.dumps(JSON_V1), 2: json.dumps(JSON_V2)}
    del rows
    paths: dict[str, tuple[pa.Array[Any], Callable[[pa.Array[Any]], Any]]] = {
        "avro": (avro_values, lambda v: decode_avro_values(v, avro_schema, writers)),
        "protobuf": (proto_values, lambda v: decode_protobuf_values(v, proto_schema, proto_writers)),
        "json-schema": (js_values, lambda v: decode_json_schema_values(v, js_schema, js_writers)),
        "json": (json_values, lambda v: check_values(v, json_schema)),
        # A record (ROW) and bytes (BYTES) more: the cost of nested columns beside the flat ones.
        "avro-nested": (nested_avro, lambda v: decode_avro_values(v, nested_schema, nested_writers)),
        "json-nested": (nested_json, lambda v: check_values(v, nested_json_schema)),
        # An array and a map more (avro_collections.py's item-position wavefront).
        "avro-collections": (
            collections_avro,
            lambda v: decode_avro_values(v, collections_schema, collections_writers),
        ),
    }

    # The paths agree on what they decode (a check of the bench, not a measure).
    head = min(n, 1_000)
    want = paths["avro"][1](avro_values.slice(0, head))
    for name, (values, decode) in paths.items():
        got = decode(values.slice(0, head))
        if name == "json-nested":
            nested_want = paths["avro-nested"][1](nested_avro.slice(0, head))
            if got is None or not _same(name, got, nested_want):
                return 1
        elif name not in ("avro", "avro-nested", "avro-collections") and (got is None or not _same(name, got, want)):
            return 1

    ids = f"{args.ids} id{'s' if args.ids > 1 else ''}"
    table = Table(title=f"values → typed columns, {n:,} records, batches of {args.batch:,} ({ids})")
    for column in ("path", "wall s", "CPU s", "records/s (wall)", "records/s (CPU)", "MB/s of values (CPU)"):
        table.add_column(column, justify="right" if column != "path" else "left")
    figures: dict[str, tuple[float, float]] = {}
    for name, (values, decode) in paths.items():
        wall, cpu = figures[name] = _best(values, args.batch, args.repeat, decode)
        table.add_row(
            name,
            f"{wall:.3f}",
            f"{cpu:.3f}",
            f"{n / wall:,.0f}",
            f"{n / cpu:,.0f}",
            f"{values.nbytes / cpu / 1e6:,.0f}",
        )
    console.print(table)
    json_cpu = figures["json"][1]
    for name in ("avro", "protobuf", "json-schema"):
        cpu = figures[name][1]
        console.print(
            f"{name}/json: {json_cpu / cpu:.2f}× by CPU time (goal ≥ 1×); {n / cpu:,.0f} rec/s (goal ≥ 1,000,000)"
        )
    out: dict[str, Any] = {}
    for name, (wall, cpu) in figures.items():
        key = name.replace("-", "_")
        out[f"{key}_rec_s"] = round(n / wall)
        out[f"{key}_cpu_rec_s"] = round(n / cpu)
    out["avro_over_json"] = figures["json"][0] / figures["avro"][0]
    out["protobuf_over_json_cpu"] = json_cpu / figures["protobuf"][1]
    out["json_schema_over_json_cpu"] = json_cpu / figures["json-schema"][1]
    out["avro_nested_over_json_nested_cpu"] = figures["json-nested"][1] / figures["avro-nested"][1]
    print(json.dumps(out))
    return 0
