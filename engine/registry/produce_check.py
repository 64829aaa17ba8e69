"""The produce-time check of a topic whose values must be schema-registry framed (issue 13;
topic setting `confluent.value.schema.validation=true`, the name Confluent Server gives it):
every non-null value starts with magic byte 0 and the id of a registered schema. Called by the
agent's produce before the WAL (every path: SDK, gRPC, Kafka, REST), so a refused batch stores
nothing; the error names the first bad record.

Known ids are remembered for the agent's life: a schema id is never deleted or reused
(storage/metadata/migrations/0004), so an id once seen stays valid and needs no invalidation.
The set is bounded; past the bound it starts over (a cache, not a truth). One store read per
id this agent has not seen yet, never one per record.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.schemas.errors import SchemaValidationError, WireFormatError
from streamhouse.storage.schemas.wire import split

MAX_KNOWN_IDS = 10_000


class SchemaIdCheck:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        self._known: set[int] = set()

    async def check(self, topic: str, values: pa.Array[Any]) -> None:
        try:
            framed = split(values, source=f"topic {topic!r} value")
        except WireFormatError as exc:
            raise SchemaValidationError(
                f"topic {topic!r} requires schema-registry framed values (confluent.value.schema.validation): "
                f"{str(exc).rsplit(' (', 1)[0]}",
                index=exc.index,
            ) from None
        ids = framed.schema_ids.fill_null(0).to_numpy(zero_copy_only=False)
        present = np.asarray(framed.schema_ids.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        unique = np.unique(ids[present])
        for schema_id in (int(i) for i in unique):  # one per distinct id in the batch
            if schema_id in self._known:
                continue
            if await self._store.registry_schema(schema_id) is None:
                first = int(np.argmax(present & (ids == schema_id)))
                raise SchemaValidationError(
                    f"topic {topic!r}: record {first} names schema id {schema_id}, which is not registered",
                    index=first,
                )
            if len(self._known) >= MAX_KNOWN_IDS:
                self._known.clear()
            self._known.add(schema_id)
