"""The table of schema-registry value formats (Avro, Protobuf, JSON Schema; the interface is
registry_format.py), looked up by a topic's ValueSchema.format or by a registry schema type, and
`decode_stored`: the declared columns of buffered batches replayed from the WAL, any format."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import pyarrow as pa

from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.schemas.wire import split, valid_mask
from streamhouse.storage.values import avro_decode, json_schema_decode, protobuf_decode
from streamhouse.storage.values.registry_format import RegistryFormat
from streamhouse.storage.values.schema import ValueSchema

log = logging.getLogger(__name__)
FORMATS: dict[str, RegistryFormat] = {
    f.name: f for f in (avro_decode.FORMAT, protobuf_decode.FORMAT, json_schema_decode.FORMAT)
}


def registry_format(name: str | None) -> RegistryFormat | None:
    """The format of a topic's ValueSchema.format, None for JSON and raw topics."""
    return None if name is None else FORMATS.get(name)


def by_schema_type(schema_type: str) -> RegistryFormat | None:
    """The format whose topics take schemas of a registry schema type (AVRO, PROTOBUF, JSON)."""
    return next((f for f in FORMATS.values() if f.schema_type == schema_type), None)


async def decode_stored(
    metadata: MetadataStore, batches: Sequence[pa.RecordBatch], schema: ValueSchema
) -> list[pa.Table]:
    """The declared columns of buffered batches that produce did not leave decoded (replayed from
    the WAL after a restart): the writer schemas looked up by id, then the same decode. These
    values passed the produce-time decode, so this fails only if the registry lost a schema; then
    the columns are null (the values themselves are kept in `_value`) and it is logged, rather than
    blocking the partition's flush forever."""
    fmt = registry_format(schema.format)
    assert fmt is not None, schema.format
    ids: set[int] = set()
    for batch in batches:
        framed = split(batch.column("value"), source="buffered batch")
        present = valid_mask(framed.schema_ids)
        ids.update(int(i) for i in set(framed.schema_ids.fill_null(0).to_numpy(zero_copy_only=False)[present]))
    writers: dict[int, str] = {}
    for schema_id in sorted(ids):
        stored = await metadata.registry_schema(schema_id)
        if stored is not None:
            writers[schema_id] = stored.schema.text
    out: list[pa.Table] = []
    for batch in batches:
        try:
            out.append(await run_blocking(fmt.decode, batch.column("value"), schema, writers))
        except (StreamHouseError, pa.ArrowInvalid) as exc:
            log.warning("%s topic columns of %d buffered records written as null: %s", fmt.name, batch.num_rows, exc)
            segment = schema.segment_schema()
            out.append(pa.Table.from_arrays([pa.nulls(batch.num_rows, f.type) for f in segment], schema=segment))
    return out
