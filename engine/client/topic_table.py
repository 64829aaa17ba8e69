"""`sh.table(name)`: a topic seen as a table, for notebooks: its rows to Arrow or pandas, a
DataFrame appended to it, and an HTML card. A thin handle; nothing is cached."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from streamhouse.api.types import Acks, ProduceResult, TopicDescription
from streamhouse.storage.values.schema import parse_value_schema

if TYPE_CHECKING:
    import pandas as pd


class TableClient(Protocol):
    """What a topic table uses of the Client that made it (client.py builds tables, so this
    module names only these, not the Client)."""

    def sql(self, query: str) -> pa.Table: ...

    def describe(self, topic: str) -> TopicDescription: ...

    def produce_table(
        self,
        topic: str,
        data: pa.Table | pa.RecordBatch | pd.DataFrame,
        *,
        key_column: str | None = None,
        timestamp_column: str | None = None,
        acks: Acks = "leader",
        progress: bool | None = None,
    ) -> list[ProduceResult]: ...


@dataclass(frozen=True)
class TopicTable:
    client: TableClient
    name: str

    def to_arrow(self, *, system_columns: bool = False) -> pa.Table:
        """Every acknowledged row, partition by partition in offset order: the declared columns
        (with `system_columns`, also _partition, _offset, _timestamp, _key); a topic without
        declared columns gives its system columns and `_value`."""
        declared = parse_value_schema(self.description.info.value_schema)
        if declared is None or system_columns:
            columns = "*"
        else:
            columns = ", ".join(f'"{c.name}"' for c in declared.columns)
        return self.client.sql(f'SELECT {columns} FROM "{self.name}" ORDER BY _partition, _offset')

    def to_pandas(self, *, system_columns: bool = False, **to_pandas: Any) -> pd.DataFrame:
        return self.to_arrow(system_columns=system_columns).to_pandas(**to_pandas)

    def append(
        self,
        data: pa.Table | pa.RecordBatch | pd.DataFrame,
        *,
        key_column: str | None = None,
        timestamp_column: str | None = None,
        acks: Acks = "leader",
        progress: bool | None = None,
    ) -> list[ProduceResult]:
        """Rows in as records (`Client.produce_table`): what to_pandas() gave back goes back in."""
        return self.client.produce_table(
            self.name, data, key_column=key_column, timestamp_column=timestamp_column, acks=acks, progress=progress
        )

    @property
    def description(self) -> TopicDescription:
        return self.client.describe(self.name)

    def __len__(self) -> int:
        return int(self.client.sql(f'SELECT count(*) AS n FROM "{self.name}"').column("n")[0].as_py())

    def _repr_html_(self) -> str:
        return self.description._repr_html_()
