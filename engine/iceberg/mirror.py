"""One topic's table brought in line with its committed segments (issue 16): the synchronous
pyiceberg half of a publishing round (engine/iceberg/publisher.py runs it in a thread).

The table's live data files are meant to be exactly the topic's committed layout-2 segments.
A round compares the two by object URL: segments not in the table are appended (a fast append
when nothing goes; else one overwrite snapshot that removes what retention dropped or what the
merger and compactor replaced and adds their replacements), files whose segments are gone are
removed. Because the table itself is the record of what was published, a restart or a lease
move resumes exactly: nothing is appended twice and nothing is skipped. Each snapshot's summary
also states the published end offset per partition (`streamhouse.end-offsets`, JSON), what a
reader checks its position against.

Snapshots older than the retention are expired (the current one never), and the Iceberg
metadata files only they used (manifest lists, manifests) are deleted; the data files are
segments, deleted by the agent's deferred deleter once no live snapshot references them
(engine/iceberg/references.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from streamhouse.iceberg.data_files import data_file, end_offsets, snapshot_files
from streamhouse.iceberg.tables import CatalogSettings, evolve_schema, load_or_create
from streamhouse.storage.model import SegmentInfo, TopicInfo

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table

log = logging.getLogger(__name__)

END_OFFSETS = "streamhouse.end-offsets"  # snapshot summary property: {"<partition>": end offset}


@dataclass(frozen=True)
class MirrorOutcome:
    """What one round did to a topic's table."""

    topic: str
    snapshot_id: int | None  # the table's current snapshot after the round
    added: int
    removed: int
    expired: int
    end_offsets: Mapping[int, int]


class TableMirror:
    """One topic's table and the live files of its current snapshot, kept between rounds (read
    again from the manifests only when another holder committed meanwhile)."""

    def __init__(self, catalog: SqlCatalog, settings: CatalogSettings) -> None:
        self.catalog = catalog
        self.settings = settings
        self._table: Table | None = None
        self._snapshot_id: int | None = None
        self._files: dict[str, DataFile] = {}

    def load(self, info: TopicInfo) -> set[str]:
        """Open (create, evolve) the table; the URLs of its live data files."""
        table = evolve_schema(load_or_create(self.catalog, self.settings, info), info)
        current = table.current_snapshot()
        snapshot_id = current.snapshot_id if current is not None else None
        if self._table is None or snapshot_id != self._snapshot_id or table.metadata.table_uuid != self._uuid():
            self._files = snapshot_files(current, table.io)
        self._table, self._snapshot_id = table, snapshot_id
        return set(self._files)

    def _uuid(self) -> object:
        return None if self._table is None else self._table.metadata.table_uuid

    def forget(self) -> None:
        """Drop the cached state (after a failed commit: read everything again next round)."""
        self._table, self._snapshot_id, self._files = None, None, {}

    def commit(
        self,
        info: TopicInfo,
        add: Sequence[tuple[SegmentInfo, pq.FileMetaData]],
        remove: Sequence[str],
        segments: Sequence[SegmentInfo],
    ) -> MirrorOutcome:
        """One snapshot that adds `add` (segments with their footers) and removes the files at
        `remove`; `segments` are every segment the table holds afterwards (for the summary)."""
        table = self._table
        assert table is not None, "load() first"
        ends = end_offsets(segments)
        if not add and not remove:
            return MirrorOutcome(info.name, self._snapshot_id, 0, 0, 0, ends)
        props = {END_OFFSETS: json.dumps({str(p): e for p, e in sorted(ends.items())})}
        new = [data_file(seg, meta, self.settings.object_url(seg.object_key), table.metadata) for seg, meta in add]
        with table.transaction() as tx:
            update = tx.update_snapshot(snapshot_properties=props)
            producer = update.overwrite() if remove else update.fast_append()
            for path in remove:
                producer.delete_data_file(self._files[path])
            for entry in new:
                producer.append_data_file(entry)
            producer.commit()
        for path in remove:
            del self._files[path]
        self._files.update((entry.file_path, entry) for entry in new)
        current = table.current_snapshot()
        self._snapshot_id = current.snapshot_id if current is not None else None
        return MirrorOutcome(info.name, self._snapshot_id, len(new), len(remove), 0, ends)

    def expire(self, older_than_ms: int) -> int:
        """Expire the snapshots taken before `older_than_ms` (epoch ms; never the current one)
        and delete the manifest lists and manifests only they used; how many expired."""
        table = self._table
        if table is None:
            return 0
        current = table.current_snapshot()
        old = [
            s
            for s in table.metadata.snapshots
            if s.timestamp_ms < older_than_ms and (current is None or s.snapshot_id != current.snapshot_id)
        ]
        if not old:
            return 0
        table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in old]).commit()
        kept = {m.manifest_path for s in table.metadata.snapshots for m in s.manifests(table.io)}
        doomed = {s.manifest_list for s in old}
        doomed |= {m.manifest_path for s in old for m in s.manifests(table.io)} - kept
        for path in doomed:
            try:
                table.io.delete(path)
            except OSError as exc:  # garbage under iceberg/ at worst; nothing reads it any more
                log.warning("%s: could not delete expired Iceberg file %s: %s", table.name(), path, exc)
        return len(old)


__all__ = ["END_OFFSETS", "MirrorOutcome", "TableMirror"]
