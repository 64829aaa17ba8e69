"""`streamhouse bench registry`: Avro-serialised values → typed columns (issue 13).

The same records twice, in one run: as Confluent-framed Avro (magic byte, schema id, Avro binary,
what AvroSerializer writes; two schema ids of one evolving subject when --ids 2) and as JSON.
Measured: the produce-time decode that turns a batch of values into the topic's declared
columns, the one the segment writer then stores as they are — Avro with
storage/values/avro_decode.py (per schema id, storage/schemas/avro_arrow.py), JSON with
storage/values/json_decode.py's check_values. Records/s is records over the best of --repeat
runs of --batch records each (the agent decodes one produced batch at a time). The serialising
itself (fastavro, json.dumps) is set-up, not measured. In process; no agent, no stores.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
from rich.console import Console
from rich.table import Table

from streamhouse.storage.values.avro_decode import avro_columns, decode_avro_values
from streamhouse.storage.values.json_decode import check_values
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


def _json(rows: list[dict[str, Any]], columns: ValueSchema, ids: int) -> pa.Array[Any]:
    """The same records as JSON; a V1 writer's record has no `country` (it reads as null)."""
    names = [c.name for c in columns.columns]
    out = []
    for i, row in enumerate(rows):
        keep = names if _schema_id(i, ids) == 2 else [k for k in names if k != "country"]
        out.append(json.dumps({k: row[k] for k in keep}).encode())
    return pa.array(out, pa.binary())


def _best(values: pa.Array[Any], batch: int, repeat: int, decode: Callable[[pa.Array[Any]], object]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for start in range(0, len(values), batch):
            decode(values.slice(start, batch))
        best = min(best, time.perf_counter() - started)
    return best


def run(args: argparse.Namespace) -> int:
    n = args.records
    console.print(f"serialising {n:,} records as framed Avro ({args.ids} schema id(s)) and as JSON …")
    rows = _rows(n)
    avro_schema = avro_columns(json.dumps(V2 if args.ids == 2 else V1), SUBJECT)
    json_schema = ValueSchema(avro_schema.columns, None, "json")
    avro_values = _avro(rows, args.ids)
    json_values = _json(rows, json_schema, args.ids)
    writers = {1: json.dumps(V1), 2: json.dumps(V2)}
    del rows

    # The two paths agree on what they decode (a check of the bench, not a measure).
    head = min(n, 1_000)
    a = decode_avro_values(avro_values.slice(0, head), avro_schema, writers)
    j = check_values(json_values.slice(0, head), json_schema)
    if j is None or [c.to_pylist() for c in a.columns] != [c.to_pylist() for c in j.columns]:
        console.print("[red]the Avro and JSON decodes of the same records differ[/red]")
        return 1

    avro_s = _best(avro_values, args.batch, args.repeat, lambda v: decode_avro_values(v, avro_schema, writers))
    json_s = _best(json_values, args.batch, args.repeat, lambda v: check_values(v, json_schema))
    table = Table(title=f"values → typed columns, {n:,} records, batches of {args.batch:,}")
    for column in ("path", "seconds", "records/s", "MB/s of values"):
        table.add_column(column, justify="right" if column != "path" else "left")
    figures = {
        f"avro ({args.ids} id{'s' if args.ids > 1 else ''})": (avro_s, avro_values.nbytes),
        "json": (json_s, json_values.nbytes),
    }
    for name, (seconds, size) in figures.items():
        table.add_row(name, f"{seconds:.3f}", f"{n / seconds:,.0f}", f"{size / seconds / 1e6:,.0f}")
    console.print(table)
    ratio = json_s / avro_s
    console.print(f"avro/json: {ratio:.2f}× (goal ≥ 1×); avro {n / avro_s:,.0f} rec/s (goal ≥ 1,000,000)")
    print(json.dumps({"avro_rec_s": round(n / avro_s), "json_rec_s": round(n / json_s), "avro_over_json": ratio}))
    return 0
