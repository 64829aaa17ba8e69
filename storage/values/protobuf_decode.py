"""Protobuf topics' declared columns (issue 13): `CREATE TOPIC t WITH (format = 'protobuf',
subject = s)` takes its columns from the first message of the subject's latest .proto, and its
values (Confluent framing: magic byte, schema id, message indexes, then the message) are decoded
into those columns once per produced batch, each schema id's rows with that id's writer schema
(storage/values/protobuf_wire.py, vectorised; storage/schemas/protobuf_arrow.py maps the message to
Arrow). Columns: the message's fields whose Arrow type has a SQL column type (scalars, enums as
strings, google.protobuf.Timestamp as TIMESTAMP(3), nested messages as ROW, repeated fields as
ARRAY, map<K, V> as MAP<K, V> so `m['k']` reads a value, storage/values/protobuf_maps.py).
A record's message indexes must name a message of its writer schema, and one schema id's records
one message; otherwise the batch is refused (ProtobufValueError naming the record)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.schemas.errors import SchemaValidationError, WireFormatError
from streamhouse.storage.schemas.protobuf_arrow import PbMessage, parse_proto
from streamhouse.storage.schemas.wire import HEADER_BYTES, Array, Headers, headers, zigzag_varints
from streamhouse.storage.values.protobuf_wire import decode_messages
from streamhouse.storage.values.registry_format import RegistryFormat, lined_up
from streamhouse.storage.values.schema import Column, ValueSchema
from streamhouse.storage.values.time_range import check_time_range
from streamhouse.storage.values.types import sql_type

PROTOBUF = "protobuf"


class ProtobufValueError(SchemaValidationError):
    """A produced value of a Protobuf topic that is not a framed message of its writer schema;
    `index` is the record's position in its batch. Nothing of the batch was stored."""


def _declarable(arrow: pa.DataType) -> bool:
    # Nested messages/objects are ROW, repeated/arrays ARRAY, bytes BYTES (storage/values/types.py).
    return sql_type(arrow) != "STRING" or pa.types.is_string(arrow)


def message_columns(message: PbMessage) -> tuple[Column, ...]:
    return tuple(Column(f.name, sql_type(f.arrow_type)) for f in message.fields if _declarable(f.arrow_type))


def protobuf_columns(schema_text: str, subject: str) -> ValueSchema:
    """The declared columns of the first message of a .proto."""
    try:
        message = parse_proto(schema_text).at((0,))
    except InvalidInputError as exc:
        raise InvalidInputError(f"subject {subject!r}: {exc}") from None
    columns = message_columns(message)
    if not columns:
        raise InvalidInputError(f"subject {subject!r}: message {message.full_name} has no field with a SQL column type")
    return ValueSchema(columns, None, PROTOBUF, subject)


def _indexes(h: Headers, rows: Array, source: str) -> tuple[tuple[int, ...], Array]:
    """The message index path every record of `rows` names (the message indexes right after the
    5-byte header: a zigzag count, then that many indexes; the single byte 0 means [0]), and
    where each message starts. One numpy round per index position, never per record.
    ProtobufValueError if they run past the value or the records name different messages."""
    pos = h.starts[rows] + HEADER_BYTES
    ends = h.ends[rows]
    try:
        counts, pos = zigzag_varints(h.data, pos, ends, np.ones(len(rows), dtype=bool), source)
        if (counts == 0).all():  # the usual case: the file's first message
            return (0,), pos
        first = counts == 0  # the single byte 0 stands for [0]
        depth = np.where(first, 1, counts)
        path: list[int] = []
        for level in range(int(depth.max())):
            read = ~first & (counts > level)
            values, pos = zigzag_varints(h.data, pos, ends, read, source)
            values = np.where(read, values, 0)
            path.append(int(values[0]))
            differs = (depth != depth[0]) | (values != path[-1])
            if differs.any():
                i = int(rows[int(np.argmax(differs))])
                raise ProtobufValueError(
                    f"record {i}: its message indexes name another message of the .proto than the other "
                    "records with its schema id (one message per schema id is decoded into columns)",
                    index=i,
                )
    except WireFormatError as exc:
        i = int(rows[exc.index])
        raise ProtobufValueError(f"record {i}: {str(exc).rsplit(' (', 1)[0].split(': ', 1)[-1]}", index=i) from None
    return tuple(path), pos


def decode_protobuf_values(values: pa.Array[Any], schema: ValueSchema, writers: Mapping[int, str]) -> pa.Table:
    """The declared columns (segment names) of a batch of framed Protobuf values: each schema id's
    messages decoded in place (no copy of the payloads) with that id's writer schema, then lined
    up by column name; a field an id's schema lacks reads as null."""
    source = "produced batch"
    try:
        h = headers(values, source)
    except WireFormatError as exc:
        raise ProtobufValueError(
            f"record {exc.index} of the batch: {str(exc).rsplit(' (', 1)[0]}", index=exc.index
        ) from None
    parts: list[tuple[Array, pa.StructArray]] = []
    for schema_id in (int(i) for i in np.unique(h.ids[h.valid])):  # one decode per distinct id
        rows = np.flatnonzero(h.valid & (h.ids == schema_id))
        text = writers.get(schema_id)
        if text is None:
            first = int(rows[0])
            raise SchemaValidationError(f"record {first}: schema id {schema_id} is not registered", index=first)
        path, starts = _indexes(h, rows, source)
        try:
            message = parse_proto(text).at(path)
        except InvalidInputError as exc:
            raise ProtobufValueError(f"record {int(rows[0])}: {exc}", index=int(rows[0])) from None
        try:
            struct = decode_messages(h.data, starts, h.ends[rows], np.ones(len(rows), bool), message, source)
        except WireFormatError as exc:
            i = int(rows[exc.index])
            reason = str(exc).rsplit(" (", 1)[0].split(": ", 1)[-1]
            raise ProtobufValueError(f"record {i}: not a {message.full_name} message: {reason}", index=i) from None
        parts.append((rows, struct))
    table = lined_up(parts, len(values), schema)
    # Serializers take any long; Python, pandas and SQL clients read years 1-9999 only.
    check_time_range(table, [c.name for c in schema.columns])
    return table


FORMAT = RegistryFormat(PROTOBUF, "PROTOBUF", protobuf_columns, decode_protobuf_values)
