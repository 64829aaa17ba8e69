"""Schema evolution of Avro topics (issue 13): a value whose writer schema (a version of the
topic's subject the registry already judged compatible) has record fields the topic's declared
columns lack grows the columns by those fields, appended after the existing ones. Columns are
never dropped, reordered or retyped: a field whose type no longer fits its declared column is
refused (ColumnEvolutionError), since rewriting the old segments is not an option and a cast
would lose data silently. Segments written before a column existed read it as nulls
(storage/partition/scan.py), as do rows whose writer schema lacks it (avro_decode.py). IO-free:
engine/registry/produce_check.py looks the schemas up and stores the grown columns."""

from __future__ import annotations

from collections.abc import Callable

import pyarrow as pa

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.schemas.errors import SchemaValidationError
from streamhouse.storage.values.avro_decode import avro_columns
from streamhouse.storage.values.schema import Column, ValueSchema

# Avro's own promotions (int → long/float/double, long/float → double): a writer schema may use
# the narrower type of a column declared from a later version, and the decode widens it losslessly.
_WIDENS: frozenset[tuple[pa.DataType, pa.DataType]] = frozenset(
    {
        (pa.int32(), pa.int64()),
        (pa.int32(), pa.float32()),
        (pa.int32(), pa.float64()),
        (pa.int64(), pa.float64()),
        (pa.float32(), pa.float64()),
    }
)


class ColumnEvolutionError(SchemaValidationError):
    """A produced value's writer schema gives a declared column's field a type the column cannot
    hold (a column is never retyped); `index` is the first such record of the batch. Nothing of
    the batch was stored."""


def fits(writer: Column, declared: Column) -> bool:
    """Whether values of the writer's field decode into the declared column without loss."""
    have, want = writer.arrow_type, declared.arrow_type
    return have == want or (have, want) in _WIDENS


def grown(
    schema: ValueSchema,
    writer_text: str,
    *,
    topic: str,
    schema_id: int,
    index: int,
    columns_of: Callable[[str, str], ValueSchema] = avro_columns,
) -> ValueSchema | None:
    """`schema` with the writer schema's new fields appended, or None if it has none (a writer
    schema that is no record, or has no SQL-typed field, adds nothing: its decode judges it).
    ColumnEvolutionError if a field of a declared column changed its type incompatibly.
    `columns_of(text, subject)`: the columns a writer schema gives, per format (Protobuf and JSON
    Schema topics evolve by the same rules, storage/values/registry_format.py)."""
    assert schema.subject is not None
    try:
        fields = columns_of(writer_text, schema.subject).columns
    except InvalidInputError:
        return None
    added: list[Column] = []
    for field in fields:
        declared = schema.column(field.name)
        if declared is None:
            added.append(field)
        elif not fits(field, declared):
            raise ColumnEvolutionError(
                f"topic {topic!r}: record {index} names schema id {schema_id}, whose field {field.name!r} is "
                f"{field.sql_type}, but the topic's column {declared.name!r} is {declared.sql_type}; a column "
                "is never retyped (create a new topic, or a new field, for the new type)",
                index=index,
            )
    if not added:
        return None
    return ValueSchema((*schema.columns, *added), schema.watermark, schema.format, schema.subject)


def extends(old: ValueSchema, new: ValueSchema) -> bool:
    """Whether `new` keeps every column of `old` in place with its type (only appends)."""
    return len(new.columns) >= len(old.columns) and new.columns[: len(old.columns)] == old.columns
