"""Protobuf topics' declared columns (issue 13): `CREATE TOPIC t WITH (format = 'protobuf',
subject = s)` takes its columns from the first message of the subject's latest .proto, and its
values (Confluent framing: magic byte, schema id, message indexes, then the message) are decoded
into those columns once per produced batch, each schema id's rows with that id's writer schema
(storage/values/protobuf_wire.py, vectorised; storage/schemas/protobuf_arrow.py maps the message to
Arrow). Columns: the message's fields whose Arrow type has a SQL column type (scalars, enums as
strings, google.protobuf.Timestamp as TIMESTAMP(3)); bytes, nested messages, repeated fields and
maps are decoded (struct, list) but not declared: they stay in `_value`, as with Avro topics.
A record's message indexes must name a message of its writer schema, and one schema id's records
one message; otherwise the batch is refused (ProtobufValueError naming the record)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.schemas.errors import SchemaValidationError, WireFormatError
from streamhouse.storage.schemas.protobuf_arrow import PbMessage, parse_proto
from streamhouse.storage.schemas.wire import Array, buffers, split_message_indexes, valid_mask
from streamhouse.storage.values.protobuf_wire import decode_messages
from streamhouse.storage.values.registry_format import RegistryFormat, per_schema_id
from streamhouse.storage.values.schema import Column, ValueSchema
from streamhouse.storage.values.types import sql_type

PROTOBUF = "protobuf"


class ProtobufValueError(SchemaValidationError):
    """A produced value of a Protobuf topic that is not a framed message of its writer schema;
    `index` is the record's position in its batch. Nothing of the batch was stored."""


def _declarable(arrow: pa.DataType) -> bool:
    return not (pa.types.is_binary(arrow) or pa.types.is_struct(arrow) or pa.types.is_list(arrow))


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


def decode_payloads(payloads: pa.Array[Any], schema_text: str, rows: Array) -> pa.StructArray:
    """Payloads after the 5-byte header (message indexes, then the message) of one writer schema:
    one struct per payload. ProtobufValueError (index into the batch via `rows`) for a bad one."""
    try:
        indexed = split_message_indexes(payloads, source="produced batch")
    except WireFormatError as exc:
        i = int(rows[exc.index])
        raise ProtobufValueError(f"record {i}: {str(exc).rsplit(' (', 1)[0]}", index=i) from None
    live = valid_mask(indexed.payloads)
    path = _one_path(indexed.indexes, live, rows)
    try:
        message = parse_proto(schema_text).at(path)
    except InvalidInputError as exc:
        i = int(rows[int(np.argmax(live))])
        raise ProtobufValueError(f"record {i}: {exc}", index=i) from None
    starts, ends, data = buffers(indexed.payloads)
    try:
        return decode_messages(data, starts, ends, live, message, "produced batch")
    except WireFormatError as exc:
        i = int(rows[exc.index])
        reason = str(exc).rsplit(" (", 1)[0].split(": ", 1)[-1]
        raise ProtobufValueError(f"record {i}: not a {message.full_name} message: {reason}", index=i) from None


def _one_path(indexes: pa.Array[Any], live: Array, rows: Array) -> tuple[int, ...]:
    """The message index path all live records name (whole-column compares, one per depth)."""
    if not live.any():
        return (0,)
    first = int(np.argmax(live))
    path = tuple(int(i) for i in indexes[first].as_py())
    lengths = np.asarray(pc.list_value_length(indexes).fill_null(len(path)).to_numpy(zero_copy_only=False))
    differs = live & (lengths != len(path))
    for depth, want in enumerate(path):
        got = pc.list_element(indexes.filter(pa.array(lengths == len(path))), depth)
        same = np.ones(len(indexes), dtype=bool)
        same[lengths == len(path)] = np.asarray(got.fill_null(want).to_numpy(zero_copy_only=False)) == want
        differs |= live & ~same
    if differs.any():
        i = int(rows[int(np.argmax(differs))])
        raise ProtobufValueError(
            f"record {i}: its message indexes name another message of the .proto than the batch's other records "
            "with that schema id (one message per schema id is decoded into columns)",
            index=i,
        )
    return path


def decode_protobuf_values(values: pa.Array[Any], schema: ValueSchema, writers: Mapping[int, str]) -> pa.Table:
    """The declared columns (segment names) of a batch of framed Protobuf values."""
    try:
        return per_schema_id(values, schema, writers, decode_payloads)
    except WireFormatError as exc:
        raise ProtobufValueError(
            f"record {exc.index} of the batch: {str(exc).rsplit(' (', 1)[0]}", index=exc.index
        ) from None


FORMAT = RegistryFormat(PROTOBUF, "PROTOBUF", protobuf_columns, decode_protobuf_values)
