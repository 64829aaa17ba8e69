"""Segments as Iceberg data files, without copying a byte (issue 16).

pyiceberg's `add_files` refuses Parquet files that carry field ids (it expects files another
writer made without them), so a data file entry is built here from what we already have: the
segment's metadata row (size, partition) and its verified Parquet footer, whose column
statistics pyiceberg's own helpers turn into the entry's counts, bounds and split offsets.
The partition value is stated (identity on `_partition`), not inferred from statistics.

Everything here is synchronous pyiceberg work: callers run it in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from streamhouse.storage.model import SegmentInfo
from streamhouse.storage.segment.field_ids import PARTITION_COLUMN, field_id

if TYPE_CHECKING:
    from pyiceberg.io import FileIO
    from pyiceberg.manifest import DataFile
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.snapshots import Snapshot


def has_field_ids(metadata: pq.FileMetaData) -> bool:
    """Whether a segment is of layout 2 (field ids, plain names, `_partition` stored): only those
    are published; older segments name their columns in a way no table schema could share."""
    schema = metadata.schema.to_arrow_schema()
    return PARTITION_COLUMN in schema.names and field_id(schema.field(PARTITION_COLUMN)) is not None


def data_file(segment: SegmentInfo, metadata: pq.FileMetaData, url: str, table: TableMetadata) -> DataFile:
    """The data file entry of one committed segment at `url`, in the table's current spec."""
    from pyiceberg.io.pyarrow import (
        compute_statistics_plan,
        data_file_statistics_from_parquet_metadata,
        parquet_path_to_id_mapping,
    )
    from pyiceberg.manifest import DataFile, DataFileContent, FileFormat
    from pyiceberg.typedef import Record

    schema = table.schema()
    stats = data_file_statistics_from_parquet_metadata(
        parquet_metadata=metadata,
        stats_columns=compute_statistics_plan(schema, table.properties),
        parquet_column_mapping=parquet_path_to_id_mapping(schema),
    )
    entry = DataFile.from_args(
        content=DataFileContent.DATA,
        file_path=url,
        file_format=FileFormat.PARQUET,
        partition=Record(segment.partition),
        file_size_in_bytes=segment.size_bytes,
        sort_order_id=None,
        spec_id=table.default_spec_id,
        equality_ids=None,
        key_metadata=None,
        **stats.to_serialized_dict(),
    )
    entry.spec_id = table.default_spec_id  # from_args leaves it unset; a later overwrite reads it
    return entry


def snapshot_files(snapshot: Snapshot | None, io: FileIO) -> dict[str, DataFile]:
    """The live data files of a snapshot, by path (none for an empty table)."""
    if snapshot is None:
        return {}
    files: dict[str, DataFile] = {}
    for manifest in snapshot.manifests(io):
        for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
            files[entry.data_file.file_path] = entry.data_file
    return files


def live_paths(table: Table, manifest_cache: dict[str, frozenset[str]]) -> set[str]:
    """Every data file path some snapshot of `table` still references (what must not be
    deleted). Manifests never change once written, so `manifest_cache` keeps each one's paths
    across calls: a round reads only the manifests new since the last one."""
    paths: set[str] = set()
    seen: set[str] = set()
    for snapshot in table.metadata.snapshots:
        for manifest in snapshot.manifests(table.io):
            if manifest.manifest_path in seen:
                continue
            seen.add(manifest.manifest_path)
            cached = manifest_cache.get(manifest.manifest_path)
            if cached is None:
                cached = frozenset(
                    e.data_file.file_path for e in manifest.fetch_manifest_entry(table.io, discard_deleted=True)
                )
                manifest_cache[manifest.manifest_path] = cached
            paths |= cached
    for gone in manifest_cache.keys() - seen:  # manifests of expired snapshots are never read again
        del manifest_cache[gone]
    return paths


def end_offsets(segments: Iterable[SegmentInfo]) -> dict[int, int]:
    """Per partition, the end offset of the newest segment among `segments`."""
    ends: dict[int, int] = {}
    for seg in segments:
        ends[seg.partition] = max(ends.get(seg.partition, 0), seg.end_offset)
    return ends


__all__ = ["data_file", "end_offsets", "has_field_ids", "live_paths", "snapshot_files"]
