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

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.schemas.errors import SchemaValidationError
from streamhouse.storage.values.avro_decode import avro_columns
from streamhouse.storage.values.nested_widen import conflict, merged, widens
from streamhouse.storage.values.schema import Column, ValueSchema
from streamhouse.storage.values.types import sql_type


class ColumnEvolutionError(SchemaValidationError):
    """A produced value's writer schema gives a declared column's field a type the column cannot
    hold (a column is never retyped); `index` is the first such record of the batch. Nothing of
    the batch was stored."""


def fits(writer: Column, declared: Column) -> bool:
    """Whether values of the writer's field decode into the declared column without loss (a
    record lacking some of the column's nested fields fits: those read as NULL)."""
    want = declared.arrow_type
    return merged(want, writer.arrow_type) == want


def grown(
    schema: ValueSchema,
    writer_text: str,
    *,
    topic: str,
    schema_id: int,
    index: int,
    columns_of: Callable[[str, str], ValueSchema] = avro_columns,
) -> ValueSchema | None:
    """`schema` with the writer schema's new fields appended (and its ROW columns widened by the
    fields it adds inside them), or None if it has none (a writer
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
    wider: dict[str, Column] = {}
    for field in fields:
        declared = schema.column(field.name)
        if declared is None:
            added.append(field)
            continue
        grown_type = merged(declared.arrow_type, field.arrow_type)
        if grown_type is not None and grown_type != declared.arrow_type:
            wider[declared.name] = Column(declared.name, sql_type(grown_type))
        elif grown_type is None:
            where = conflict(declared.arrow_type, field.arrow_type, declared.name)
            inside = f" (retyped inside it: {where})" if where != declared.name else ""
            raise ColumnEvolutionError(
                f"topic {topic!r}: record {index} names schema id {schema_id}, whose field {field.name!r} is "
                f"{field.sql_type}, but the topic's column {declared.name!r} is {declared.sql_type}{inside}; a "
                "column is never retyped (create a new topic, or a new field, for the new type)",
                index=index,
            )
    if not added and not wider:
        return None
    kept = tuple(wider.get(c.name, c) for c in schema.columns)
    return ValueSchema((*kept, *added), schema.watermark, schema.format, schema.subject)


def extends(old: ValueSchema, new: ValueSchema) -> bool:
    """Whether `new` keeps every column of `old` in place, with its type or that type widened by
    nested fields (nested_widen.widens), and only appends."""
    return len(new.columns) >= len(old.columns) and all(
        n.name == o.name and (n.sql_type == o.sql_type or widens(o.arrow_type, n.arrow_type))
        for o, n in zip(old.columns, new.columns, strict=False)
    )
