"""Avro produce by subject (issue 13; Confluent REST Proxy v3's `"type": "AVRO"` with `subject`,
`subject_name_strategy`, `schema_id` / `schema_version`): a produce request's JSON keys or
values are serialised with a registered Avro schema into Confluent's wire format (magic byte 0,
the 4-byte schema id, the Avro binary), exactly what an AvroSerializer would have produced, so
the produce path beneath (the schema-id check, an Avro topic's typed columns) treats them as
any Kafka client's records and Kafka consumers read them with an AvroDeserializer.

Which schema: `schema_id` (registered under the subject), `schema_version` of the subject, or
neither: the subject's latest version. Which subject: `subject` as given; else, for values of
a topic created with a subject (`CREATE TOPIC t WITH (format = 'avro', subject = s)`), that
one; else by the strategy: TOPIC_NAME (default) `<topic>-value` / `<topic>-key`; RECORD_NAME
`<record name>` and TOPIC_RECORD_NAME `<topic>-<record name>` take the record name from the
schema, so they need a `schema_id`. Every failure is typed and refuses the whole request before anything is stored:
unknown subject / version / id (404 subject_not_found, version_not_found, schema_not_found),
a schema that is not Avro or selectors that contradict each other (400 invalid_input), data
that does not fit the schema (400 avro_data, naming the record index and the field).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from streamhouse.registry.avro_encode import encode, frame
from streamhouse.registry.produce_check import record_name
from streamhouse.registry.service import Found, RegistryService, check_subject
from streamhouse.rest.models import SchemaSelector, SchemaUsed
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.schemas.errors import SchemaNotFoundError
from streamhouse.storage.schemas.registry import SchemaText

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


async def avro_column(
    registry: RegistryService,
    topic: str,
    items: Sequence[Any],
    selector: SchemaSelector | None,
    role: str,
    default_subject: str | None = None,
) -> Encoded:
    """`items` (JSON data, None: a null record) as framed Avro binaries, one per item."""
    found = await choose(registry, topic, selector or SchemaSelector.model_validate({}), role, default_subject)
    if found.schema.schema_type != "AVRO":
        raise InvalidInputError(
            f"{role}_schema: subject {found.subject!r} version {found.version} is a {found.schema.schema_type} "
            f"schema; {role}_type AVRO needs an Avro schema"
        )
    references = list((await registry.resolve_references(found.schema.references)).values())
    where = f"{role}s"
    if len(items) < _INLINE_ROWS:
        payloads = encode(found.schema.text, items, references=references, where=where)
    else:  # the encoding is CPU work: off the loop so the agent keeps answering meanwhile
        payloads = await run_blocking(encode, found.schema.text, items, references=references, where=where)
    return Encoded(
        frame(payloads, found.schema_id),
        SchemaUsed(subject=found.subject, schema_id=found.schema_id, schema_version=found.version),
    )
