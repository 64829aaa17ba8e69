"""The produce-time check of a topic whose values must be schema-registry framed (issue 13;
topic setting `confluent.value.schema.validation=true`, the name Confluent Server gives it):
every non-null value starts with magic byte 0 and the id of a schema registered under the
subject the topic's subject name strategy names (`confluent.value.subject.name.strategy`:
TopicNameStrategy `<topic>-value` by default, RecordNameStrategy `<record name>`,
TopicRecordNameStrategy `<topic>-<record name>`). Called by the agent's produce before the WAL
(every path: SDK, gRPC, Kafka, REST), so a refused batch stores nothing; the error names the
first bad record. One store read per (id, subject) pair not seen lately, never one per record.

Cached: a schema by id forever (ids are never deleted or reused, storage/metadata/migrations/
0004), and "this id is live under that subject" for PAIR_TTL_S, so deleting a subject's
version is enforced by every agent within that time without any cross-agent message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.registry.cache import TtlCache
from streamhouse.storage.errors import StorageUnavailableError, TopicNotFoundError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.model import TopicInfo
from streamhouse.storage.schemas.errors import (
    AvroValueError,
    SchemaValidationError,
    SubjectNotFoundError,
    WireFormatError,
)
from streamhouse.storage.schemas.registry import SchemaText
from streamhouse.storage.schemas.wire import split
from streamhouse.storage.topic_settings import (
    RECORD_STRATEGY,
    TOPIC_RECORD_STRATEGY,
    VALUE_SCHEMA_VALIDATION,
    VALUE_SUBJECT_STRATEGY,
)
from streamhouse.storage.values.avro_decode import AVRO
from streamhouse.storage.values.avro_evolve import grown
from streamhouse.storage.values.registry_format import RegistryFormat
from streamhouse.storage.values.registry_formats import by_schema_type, registry_format
from streamhouse.storage.values.schema import ValueSchema, parse_value_schema

PAIR_TTL_S = 60.0
_EVOLVE_ATTEMPTS = 8
log = logging.getLogger(__name__)
# Below this many records the Avro decode runs inline (as storage/values/check.py does for JSON).
_INLINE_ROWS = 2_048
_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)\s*;", re.MULTILINE)
_MESSAGE = re.compile(r"^\s*message\s+(\w+)", re.MULTILINE)


def record_name(schema: SchemaText) -> str | None:
    """The record name the record strategies use: Avro's full name, JSON Schema's title, the
    first message of a .proto (with its package). None for an unnamed schema."""
    if schema.schema_type == "PROTOBUF":
        message = _MESSAGE.search(schema.text)
        package = _PACKAGE.search(schema.text)
        if message is None:
            return None
        return f"{package.group(1)}.{message.group(1)}" if package else message.group(1)
    try:
        doc = json.loads(schema.text)
    except json.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    if schema.schema_type == "JSON":
        title = doc.get("title")
        return title if isinstance(title, str) else None
    name, namespace = doc.get("name"), doc.get("namespace")
    if not isinstance(name, str):
        return None
    return f"{namespace}.{name}" if isinstance(namespace, str) and namespace and "." not in name else name


class SchemaIdCheck:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._schemas: TtlCache[int, SchemaText] = TtlCache()
        self._pairs: TtlCache[tuple[int, str], bool] = TtlCache(ttl_s=PAIR_TTL_S)
        # Avro topics: (id, subject) → the id's live version under the subject, for PAIR_TTL_S.
        self._versions: TtlCache[tuple[int, str], int] = TtlCache(ttl_s=PAIR_TTL_S)
        # (schema id, declared columns) pairs whose writer schema adds no column: not judged again.
        self._unchanged: TtlCache[tuple[int, str], bool] = TtlCache()

    async def check(self, topic: str, values: pa.Array[Any], strategy: str | None = None, role: str = "value") -> None:
        """`role` "key": the keys, against `<topic>-key` (confluent.key.schema.validation)."""
        try:
            framed = split(values, source=f"topic {topic!r} {role}")
        except WireFormatError as exc:
            raise SchemaValidationError(
                f"topic {topic!r} requires schema-registry framed {role}s (confluent.{role}.schema.validation): "
                f"{str(exc).rsplit(' (', 1)[0]}",
                index=exc.index,
            ) from None
        ids = framed.schema_ids.fill_null(0).to_numpy(zero_copy_only=False)
        present = np.asarray(framed.schema_ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        for schema_id in (int(i) for i in np.unique(ids[present])):  # one round per distinct id
            first = int(np.argmax(present & (ids == schema_id)))
            schema = await self._schema(topic, schema_id, first)
            subject = self._subject(topic, schema, strategy, first, schema_id, role)
            if self._pairs.get((schema_id, subject)):
                continue
            versions = await self._store.registry_schema_versions(schema_id)
            if not any(v.subject == subject for v in versions):
                who = f"record {first}" if role == "value" else f"record {first}'s {role}"
                raise SchemaValidationError(
                    f"topic {topic!r}: {who} names schema id {schema_id}, which is not registered "
                    f"under subject {subject!r}",
                    index=first,
                )
            self._pairs.put((schema_id, subject), True)

    async def decoded(self, info: TopicInfo, batch: pa.RecordBatch) -> tuple[TopicInfo, pa.Table | None]:
        """A registry-format topic's (Avro, Protobuf, JSON Schema) declared columns for `batch`
        (segment names), decoded once per schema id with that id's writer schema
        (storage/values/registry_formats.py); None for other topics. Every id must be registered under
        the topic's subject; a value that is not framed, or does not decode, refuses the batch
        (AvroValueError / SchemaValidationError naming the record). The agent hands the result
        to the partition writer as JSON topics' decoded columns are handed.

        Schema evolution: a writer schema with record fields the topic lacks first grows the
        topic's columns in the metadata store (`_evolve`), and the batch is decoded into the grown
        columns; the topic is returned as it now is, so the caller's cache and the partition
        writer follow it; fields added inside a record widen its ROW column in place (nested_widen.py).
        A field retyped incompatibly, nested or not, refuses the batch (ColumnEvolutionError)."""
        schema = parse_value_schema(info.value_schema)
        fmt = registry_format(schema.format if schema is not None else None)
        if schema is None or fmt is None or batch.num_rows == 0:
            return info, None
        assert schema.subject is not None
        values = batch.column("value")
        try:
            framed = split(values, source=f"topic {info.name!r} value")
        except WireFormatError as exc:
            error = AvroValueError if fmt.name == AVRO else SchemaValidationError
            raise error(
                f"topic {info.name!r} is a {fmt.name} topic (subject {schema.subject!r}): record {exc.index} "
                f"{str(exc).rsplit(' (', 1)[0]}",
                index=exc.index,
            ) from None
        ids = framed.schema_ids.fill_null(0).to_numpy(zero_copy_only=False)
        present = np.asarray(framed.schema_ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        writers: dict[int, str] = {}
        firsts: dict[int, int] = {}
        newer: dict[int, int] = {}
        for schema_id in (int(i) for i in np.unique(ids[present])):  # one round per distinct id
            first = int(np.argmax(present & (ids == schema_id)))
            stored = await self._schema(info.name, schema_id, first)
            if stored.schema_type != fmt.schema_type:
                error = AvroValueError if fmt.name == AVRO else SchemaValidationError
                raise error(
                    f"topic {info.name!r}: record {first} names schema id {schema_id}, a {stored.schema_type} "
                    f"schema, not {fmt.schema_type}",
                    index=first,
                )
            version = await self._live_under(info.name, schema_id, schema.subject, first)
            writers[schema_id] = stored.text
            firsts[schema_id] = first
            if schema.version is None or version > schema.version:
                newer[schema_id] = version  # only a newer version than the columns' may grow them
        if newer and self._growth(info, schema, fmt, writers, firsts, newer) is not None:
            info = await self._evolve(info, fmt, writers, firsts, newer)
            schema = parse_value_schema(info.value_schema)
            assert schema is not None
        if batch.num_rows < _INLINE_ROWS:
            return info, fmt.decode(values, schema, writers)
        return info, await run_blocking(fmt.decode, values, schema, writers)

    def _growth(
        self,
        info: TopicInfo,
        schema: ValueSchema,
        fmt: RegistryFormat,
        writers: Mapping[int, str],
        firsts: Mapping[int, int],
        newer: Mapping[int, int],
    ) -> ValueSchema | None:
        """`schema` grown by the new fields of every writer schema whose version under the
        subject is newer than the columns' (`newer`: id → version; in version order, so earlier
        versions' columns come first), or None if none adds any; the version is raised with it.
        Results that add nothing are cached per (id, columns): the common case costs a lookup."""
        grew: ValueSchema | None = None
        for schema_id in sorted(newer, key=lambda i: newer[i]):
            current = grew or schema
            if current.version is not None and newer[schema_id] <= current.version:
                continue
            key = (schema_id, current.to_json())
            if self._unchanged.get(key):
                continue
            bigger = grown(
                current,
                writers[schema_id],
                topic=info.name,
                schema_id=schema_id,
                index=firsts[schema_id],
                columns_of=fmt.columns,
            )
            if bigger is None:
                self._unchanged.put(key, True)
            else:
                grew = replace(bigger, version=newer[schema_id])
        return grew

    async def _evolve(
        self,
        info: TopicInfo,
        fmt: RegistryFormat,
        writers: Mapping[int, str],
        firsts: Mapping[int, int],
        newer: Mapping[int, int],
    ) -> TopicInfo:
        """Store the grown columns: a compare-and-set on the value_schema this agent last saw, so
        of agents evolving at once one wins, and the others grow the winner's columns further
        (or find nothing left to add). Bounded: each lost round means another agent appended
        columns, which only a few distinct writer schemas can do."""
        for _ in range(_EVOLVE_ATTEMPTS):
            schema = parse_value_schema(info.value_schema)
            if schema is None or schema.format != fmt.name:
                raise TopicNotFoundError(info.name)  # re-created as another kind of topic meanwhile
            bigger = self._growth(info, schema, fmt, writers, firsts, newer)
            if bigger is None:
                return info  # another agent already added them (or a newer version's)
            after = await self._store.swap_value_schema(info.name, info.value_schema, bigger.to_json())
            if after.topic_id != info.topic_id:
                raise TopicNotFoundError(info.name)  # the topic this batch was checked against is gone
            if after.value_schema == bigger.to_json():
                added = [c.name for c in bigger.columns[len(schema.columns) :]]
                widened = [c.name for c, o in zip(bigger.columns, schema.columns, strict=False) if c != o]
                log.info("topic %r: schema evolution added columns %s, widened %s", info.name, added, widened)
                return after
            info = after
        raise StorageUnavailableError(f"topic {info.name!r}: columns kept changing while evolving its schema; retry")

    async def resolve(
        self, value_schema: str | None, name: str = "", config: Mapping[str, str] | None = None
    ) -> str | None:
        """CREATE TOPIC … WITH (format = 'avro', subject = s): the columns of the subject's
        latest schema, filled in before the topic is stored. Also a topic created without
        declared columns but with `confluent.value.schema.validation=true` (TopicNameStrategy)
        whose subject `<name>-value` already has an Avro schema: it becomes an Avro topic. If the
        subject has no schema yet, that topic keeps bytes values (validated, not typed). Other
        schemas pass unchanged."""
        if value_schema is None and config and self._validated_by_topic_name(config):
            found = await self._latest(f"{name}-value")
            typed = by_schema_type(found[1].schema_type) if found is not None else None
            if typed is None:
                return None
            value_schema = ValueSchema((), None, typed.name, f"{name}-value").to_json()
        schema = parse_value_schema(value_schema)
        fmt = registry_format(schema.format if schema is not None else None)
        if schema is None or fmt is None or schema.columns:
            return value_schema
        assert schema.subject is not None
        found = await self._latest(schema.subject)
        if found is None:
            raise SubjectNotFoundError(
                f"subject {schema.subject!r} has no schema: register the {fmt.schema_type} schema before creating "
                "the topic"
            )
        version, latest = found
        if latest.schema_type != fmt.schema_type:
            message = (
                f"subject {schema.subject!r}: its latest version is a {latest.schema_type} schema, "
                f"not {fmt.schema_type}"
            )
            raise SchemaValidationError(message, index=0)
        columns = fmt.columns(latest.text, schema.subject)
        return ValueSchema(columns.columns, schema.watermark, fmt.name, schema.subject, version).to_json()

    @staticmethod
    def _validated_by_topic_name(config: Mapping[str, str]) -> bool:
        strategy = config.get(VALUE_SUBJECT_STRATEGY)
        on = str(config.get(VALUE_SCHEMA_VALIDATION, "false")).lower() == "true"
        return on and strategy not in (RECORD_STRATEGY, TOPIC_RECORD_STRATEGY)

    async def _latest(self, subject: str) -> tuple[int, SchemaText] | None:
        versions = [v for v in await self._store.registry_versions(subject) if not v.deleted]
        if not versions:
            return None
        latest = max(versions, key=lambda v: v.version)
        stored = await self._store.registry_schema(latest.schema_id)
        return None if stored is None else (latest.version, stored.schema)

    async def _live_under(self, topic: str, schema_id: int, subject: str, first: int) -> int:
        """The id's version under `subject` (the newest, if registered more than once)."""
        known = self._versions.get((schema_id, subject))
        if known is not None:
            return known
        versions = [v.version for v in await self._store.registry_schema_versions(schema_id) if v.subject == subject]
        if not versions:
            raise SchemaValidationError(
                f"topic {topic!r}: record {first} names schema id {schema_id}, which is not registered "
                f"under subject {subject!r}",
                index=first,
            )
        self._versions.put((schema_id, subject), max(versions))
        return max(versions)

    async def _schema(self, topic: str, schema_id: int, first: int) -> SchemaText:
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        stored = await self._store.registry_schema(schema_id)
        if stored is None:
            raise SchemaValidationError(
                f"topic {topic!r}: record {first} names schema id {schema_id}, which is not registered", index=first
            )
        self._schemas.put(schema_id, stored.schema)
        return stored.schema

    @staticmethod
    def _subject(
        topic: str, schema: SchemaText, strategy: str | None, first: int, schema_id: int, role: str = "value"
    ) -> str:
        if strategy not in (RECORD_STRATEGY, TOPIC_RECORD_STRATEGY):
            return f"{topic}-{role}"
        name = record_name(schema)
        if name is None:
            raise SchemaValidationError(
                f"topic {topic!r}: record {first}'s schema {schema_id} has no record name for {strategy}", index=first
            )
        return name if strategy == RECORD_STRATEGY else f"{topic}-{name}"
