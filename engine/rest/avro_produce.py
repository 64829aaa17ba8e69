"""Produce by subject (issue 13; Confluent REST Proxy v3's `"type": "AVRO"`, `"PROTOBUF"` and
`"JSONSCHEMA"` with `subject`,
`subject_name_strategy`, `schema_id` / `schema_version`): a produce request's JSON keys or
values are serialised with a registered Avro schema into Confluent's wire format (magic byte 0,
the 4-byte schema id, the Avro binary; for Protobuf the message-index path and the message,
engine/registry/protobuf_encode.py; for JSON Schema the checked JSON text,
json_schema_encode.py), exactly what Confluent's serializers would have produced, so
the produce path beneath (the schema-id check, an Avro topic's typed columns) treats them as
any Kafka client's records and Kafka consumers read them with an AvroDeserializer.

Which schema: `schema_id` (registered under the subject), `schema_version` of the subject, or
neither: the subject's latest version. Which subject: `subject` as given; else, for values of
a topic created with a subject (`CREATE TOPIC t WITH (format = 'avro', subject = s)`), that
one; else by the strategy: TOPIC_NAME (default) `<topic>-value` / `<topic>-key`; RECORD_NAME
`<record name>` and TOPIC_RECORD_NAME `<topic>-<record name>` take the record name from the
schema, so they need a `schema_id`. Every failure is typed and refuses the whole request before anything is stored:
unknown subject / version / id (404 subject_not_found, version_not_found, schema_not_found),
a schema of another type than asked for or selectors that contradict each other (400 invalid_input), data
that does not fit the schema (400 avro_data / protobuf_data / json_schema_data, naming the
record index and the field).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import pyarrow as pa
import pyarrow.compute as _pc

from streamhouse.registry import json_schema_encode, protobuf_encode
from streamhouse.registry.avro_encode import encode, frame
from streamhouse.registry.produce_check import record_name
from streamhouse.registry.service import Found, RegistryService, check_subject
from streamhouse.rest.models import SchemaSelector, SchemaUsed
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.schemas.errors import SchemaNotFoundError
from streamhouse.storage.schemas.registry import SchemaText

pc: Any = _pc  # pyarrow-stubs type the variadic kernels too narrowly
# Below this many records the encoding runs on the event loop (a thread hop costs more).
_INLINE_ROWS = 2_048


@dataclass(frozen=True)
class Encoded:
    column: pa.Array[Any]
    used: SchemaUsed


async def choose(
    registry: RegistryService, topic: str, selector: SchemaSelector, role: str, default_subject: str | None = None
) -> Found:
    """The subject version a request's selector names (`role`: "key" or "value");
    `default_subject` stands for `<topic>-<role>` when the selector names no subject or strategy."""
    if selector.subject is not None:
        check_subject(selector.subject)  # 400 for a name no store should be asked about (NUL, control characters)
    if selector.schema_id is not None and selector.schema_version is not None:
        raise InvalidInputError(f"{role}_schema: give schema_id or schema_version, not both")
    strategy = selector.subject_name_strategy or "TOPIC_NAME"
    if selector.subject is not None and selector.subject_name_strategy is not None:
        raise InvalidInputError(f"{role}_schema: give subject or subject_name_strategy, not both")
    if selector.schema_id is not None:
        stored = await registry.schema(selector.schema_id)  # 404 schema_not_found for an unknown id
        implicit = default_subject if selector.subject_name_strategy is None else None
        subject = selector.subject or implicit or _by_strategy(topic, strategy, role, stored.schema)
        versions = [v.version for v in await registry.schema_versions(selector.schema_id) if v.subject == subject]
        if not versions:
            raise SchemaNotFoundError(
                f"{role}_schema: schema id {selector.schema_id} is not registered under subject {subject!r}"
            )
        return Found(subject, max(versions), selector.schema_id, stored.schema)
    if selector.subject is None and strategy != "TOPIC_NAME":
        raise InvalidInputError(
            f"{role}_schema: subject_name_strategy {strategy} takes the record name from the schema: give schema_id"
        )
    implicit = default_subject if selector.subject_name_strategy is None else None
    subject = selector.subject or implicit or f"{topic}-{role}"
    version: str | int = "latest" if selector.schema_version is None else selector.schema_version
    return await registry.version(subject, version)  # 404 subject_not_found / version_not_found


def _by_strategy(topic: str, strategy: str, role: str, schema: SchemaText) -> str:
    if strategy == "TOPIC_NAME":
        return f"{topic}-{role}"
    name = record_name(schema)
    if name is None:
        raise InvalidInputError(f"{role}_schema: the schema has no record name for {strategy}")
    return name if strategy == "RECORD_NAME" else f"{topic}-{name}"


# The produce types that serialise with a registered schema: the registry schemaType each takes.
SCHEMA_TYPES = {"AVRO": "AVRO", "PROTOBUF": "PROTOBUF", "JSONSCHEMA": "JSON"}


def _serialise(kind: str, found: Found, references: list[str], items: Sequence[Any], where: str) -> pa.Array[Any]:
    """Payloads framed in Confluent's wire format (Protobuf: the first message's index path too)."""
    if kind == "PROTOBUF":
        prefix = pa.scalar(b"\x00" + found.schema_id.to_bytes(4, "big") + protobuf_encode.index_path(), pa.binary())
        payloads = protobuf_encode.encode(found.schema.text, items, where=where)
        return cast("pa.Array[Any]", pc.binary_join_element_wise(prefix, payloads, pa.scalar(b"", pa.binary())))
    if kind == "JSONSCHEMA":
        return frame(json_schema_encode.encode(found.schema.text, found.subject, items, where=where), found.schema_id)
    return frame(encode(found.schema.text, items, references=references, where=where), found.schema_id)


async def schema_column(
    registry: RegistryService,
    topic: str,
    items: Sequence[Any],
    selector: SchemaSelector | None,
    role: str,
    default_subject: str | None = None,
    kind: str = "AVRO",
) -> Encoded:
    """`items` (JSON data, None: a null record) serialised with a registered schema of `kind`
    (AVRO, PROTOBUF, JSONSCHEMA), framed, one per item."""
    found = await choose(registry, topic, selector or SchemaSelector.model_validate({}), role, default_subject)
    if found.schema.schema_type != SCHEMA_TYPES[kind]:
        raise InvalidInputError(
            f"{role}_schema: subject {found.subject!r} version {found.version} is a {found.schema.schema_type} "
            f"schema; {role}_type {kind} needs a {SCHEMA_TYPES[kind]} schema"
        )
    references = list((await registry.resolve_references(found.schema.references)).values())
    where = f"{role}s"
    if len(items) < _INLINE_ROWS:
        column = _serialise(kind, found, references, items, where)
    else:  # the encoding is CPU work: off the loop so the agent keeps answering meanwhile
        column = await run_blocking(_serialise, kind, found, references, items, where)
    return Encoded(column, SchemaUsed(subject=found.subject, schema_id=found.schema_id, schema_version=found.version))
