"""Disaster recovery's IO (issue 14 item 5): rebuild an empty metadata database from the object
store — the latest snapshot (engine/agent/snapshotter.py) plus the segment objects written after
it, read from their Parquet footers. The rules (which segments, which rows, epochs, ids) are
storage/metadata/recover.py's, pure; this module lists, reads and imports.

Used by `streamhouse recover --from … --metadata …` (engine/cli/recover.py) and `streamhouse
serve --recover` (engine/cli/serve.py), both before any agent uses the new database.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from dataclasses import dataclass

from streamhouse.agent.reconciler import PREFIX, parse_segment_key
from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import CorruptDataError, NotFoundError
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.metadata import snapshot as sn
from streamhouse.storage.metadata.recover import FoundSegment, RecoveryPlan, plan_recover
from streamhouse.storage.model import ObjectInfo, SegmentInfo
from streamhouse.storage.object_store import ObjectStore, open_object_store
from streamhouse.storage.segment.footer import TRAILER_BYTES, parse_footer

log = logging.getLogger(__name__)

_TAIL_BYTES = 64 << 10  # one GET holds the whole footer of nearly every segment
_PARALLEL_READS = 16
_PAGE = 1000


class NothingToRecoverError(NotFoundError):
    """The object store holds neither a metadata snapshot nor a segment: wrong URL or prefix?"""


@dataclass(frozen=True)
class Recovered:
    plan: RecoveryPlan
    unreadable: tuple[str, ...]  # segment objects whose footer could not be read (not recovered)
    imported: bool
    lost_states: tuple[tuple[str, str], ...] = ()  # (job, state key) of checkpoints whose state object is gone

    def lines(self) -> list[str]:
        out = self.plan.report.lines()
        if self.unreadable:
            out.append(f"{len(self.unreadable)} segment objects unreadable, not recovered (e.g. {self.unreadable[0]})")
        for job, key in self.lost_states:
            out.append(
                f"job {job!r}: the state object of its checkpoint as of the snapshot ({key}) is gone (a later "
                "checkpoint superseded it): the job cannot resume; DROP and CREATE it again"
            )
        if not self.imported:
            out.append("dry run: nothing was written")
        return out


async def recover(metadata: MetadataStore, store: ObjectStore, *, dry_run: bool = False) -> Recovered:
    """Rebuild `metadata` (which must be empty: MetadataNotEmptyError otherwise, checked first
    and again inside the import's transaction) from `store`. A corrupt latest snapshot is a
    CorruptDataError naming its object: recovery never silently falls back to an older one
    (move the bad object away to recover from the previous snapshot)."""
    sn.check_empty((await metadata.export_tables()).row_counts(), metadata.url)
    snapshot_keys = sn.latest_first(info.key for info in await store.list(sn.SNAPSHOT_PREFIX))
    dump: sn.MetadataDump | None = None
    if snapshot_keys:
        source = f"{store.url}/{snapshot_keys[0]}"
        data = await store.get(snapshot_keys[0])
        try:
            dump = await run_blocking(sn.decode_snapshot, bytes(data), source=source)
        except CorruptDataError as exc:
            raise CorruptDataError(
                f"the latest metadata snapshot is damaged: {exc.args[0]}; nothing was written (move that "
                f"object out of {sn.SNAPSHOT_PREFIX} to recover from the one before it)",
                source=source,
                position=exc.position,
            ) from exc
    listed = await _list_segments(store)
    if dump is None and not listed:
        raise NothingToRecoverError(
            f"{store.url} holds no metadata snapshot ({sn.SNAPSHOT_PREFIX}) and no segment ({PREFIX}): "
            "nothing to recover (is the URL or its prefix right?)"
        )
    known: set[str] = set()
    if dump is not None:
        for name in ("segments", "deferred_deletions"):
            table = dump.table(name)
            if table is not None:
                i = table.column("object_key")
                known.update(str(row[i]) for row in table.rows)
    found, unreadable = await _read_footers(store, [info for info in listed if info.key not in known])
    plan = plan_recover(
        dump,
        found,
        (info.key for info in listed),
        now_ms=await metadata.now_ms(),
        snapshot_key=snapshot_keys[0] if snapshot_keys else None,
    )
    if not dry_run:
        await metadata.import_tables(plan.tables)
    return Recovered(plan, tuple(unreadable), not dry_run, await _lost_states(store, dump))


async def recover_urls(
    metadata_url: str, object_store_url: str, *, s3_endpoint: str | None = None, dry_run: bool = False
) -> Recovered:
    """`recover` on stores opened from their URLs (and closed after)."""
    store = open_object_store(object_store_url, s3_endpoint=s3_endpoint)
    try:
        metadata = await open_metadata_store(metadata_url)
        try:
            return await recover(metadata, store, dry_run=dry_run)
        finally:
            await metadata.close()
    finally:
        await store.close()


async def _lost_states(store: ObjectStore, dump: sn.MetadataDump | None) -> tuple[tuple[str, str], ...]:
    """Jobs whose latest checkpoint in the snapshot names a state object no longer stored (the
    runner deletes a state once the next checkpoint commits)."""
    table = None if dump is None else dump.table("job_checkpoints")
    if table is None:
        return ()
    latest: dict[str, tuple[int, str | None]] = {}
    for row in table.dicts():
        job, seq, key = str(row["job"]), int(row["seq"] or 0), row["state_key"]
        if seq > latest.get(job, (0, None))[0]:
            latest[job] = (seq, None if key is None else str(key))
    lost: list[tuple[str, str]] = []
    for job, (_, key) in sorted(latest.items()):
        if key is None:
            continue
        try:
            await store.head(key)
        except NotFoundError:
            lost.append((job, key))
    return tuple(lost)


async def _list_segments(store: ObjectStore) -> list[ObjectInfo]:
    """Every segment object under topics/, walked in pages (bounded requests)."""
    out: list[ObjectInfo] = []
    after = ""
    while True:  # ends: `after` grows strictly with every page
        page = await store.list_page(PREFIX, after=after, limit=_PAGE)
        out.extend(info for info in page if parse_segment_key(info.key) is not None)
        if len(page) < _PAGE:
            return out
        after = page[-1].key


async def _read_footers(store: ObjectStore, objects: list[ObjectInfo]) -> tuple[list[FoundSegment], list[str]]:
    gate = asyncio.Semaphore(_PARALLEL_READS)
    found: list[FoundSegment] = []
    unreadable: list[str] = []

    async def one(info: ObjectInfo) -> None:
        async with gate:
            try:
                segment = await _footer(store, info)
            except (CorruptDataError, NotFoundError) as exc:
                # A damaged or vanished object cannot be recovered; the others still can.
                log.warning("segment object %s not recovered: %s", info.key, exc)
                unreadable.append(info.key)
                return
        found.append(FoundSegment(segment, info.modified_ms))

    await asyncio.gather(*(one(info) for info in objects))
    return found, sorted(unreadable)


async def _footer(store: ObjectStore, info: ObjectInfo) -> SegmentInfo:
    """The segment row an object's footer describes. The footer is not checked against a row's
    CRC (there is none yet): its CRC is computed here, and the parse checks its structure."""
    source = f"{store.url}/{info.key}"
    tail = bytes(await store.get(info.key, max(0, info.size - _TAIL_BYTES), info.size))
    if len(tail) < TRAILER_BYTES:
        raise CorruptDataError(f"object of {info.size} bytes is too short for a segment", source=source)
    length = struct.unpack("<I", tail[-TRAILER_BYTES:-4])[0] + TRAILER_BYTES
    if length > len(tail):
        tail = bytes(await store.get(info.key, max(0, info.size - length), info.size))
    tail = tail[-length:]
    footer = await run_blocking(parse_footer, tail, size_bytes=info.size, footer_crc=crc32c(tail), source=source)
    where = parse_segment_key(info.key)
    if where != (footer.topic, footer.partition):
        raise CorruptDataError(f"footer names {footer.topic!r}/{footer.partition}, its key {where}", source=source)
    return SegmentInfo(
        topic=footer.topic,
        partition=footer.partition,
        base_offset=footer.base_offset,
        end_offset=footer.end_offset,
        min_timestamp=footer.min_timestamp,
        max_timestamp=footer.max_timestamp,
        size_bytes=info.size,
        object_key=info.key,
        epoch=footer.epoch,
        footer_length=length,
        footer_crc=crc32c(tail),
    )


__all__ = ["NothingToRecoverError", "Recovered", "recover", "recover_urls"]
