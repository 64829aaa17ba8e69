"""Layout-1 segments rewritten in layout 2 so their records reach a topic's Iceberg table (issue 16).

A table's data files are the segment objects themselves, and only layout-2 segments can be
(field ids, plain column names, `_partition` stored: storage/segment/field_ids.py). A topic
written before layout 2 still has layout-1 segments; leaving them out would give the table a
hole at the start of every such partition that no reader can see. So the publisher converts
them on publish: each is downloaded, verified, re-encoded by the merger's own code (a merge of
one segment writes the current layout, keeping its offsets, epoch, compaction gaps and footer
history), uploaded under a fresh key and swapped in with the same fenced transaction the merger
uses, under the publisher's lease `iceberg/<topic>`. A concurrent merge, compaction or retention
of the same rows makes the swap refused (SegmentsChangedError): nothing changed, tried again next
round. The replaced object is recorded for deletion after the merge grace, like a merge's; the
new segment is published by the next round like any other.

The partition's newest segment is never rewritten, for the merger's reasons (merger.py: a writer
whose commit reply was lost looks it up by key; WAL recovery reads its epoch), so a partition
whose last write predates layout 2 keeps those offsets out of the table until its next write
(said once in the log). A segment the merge refuses (SegmentMergeError, e.g. footer keys a
rewrite would lose) stays out, said once as an error, never retried by this process.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterable, Sequence

from streamhouse.agent.background import download_segments
from streamhouse.agent.leases import HeldLease, Leases
from streamhouse.storage.errors import (
    FencedError,
    NotFoundError,
    OffsetConflictError,
    SegmentMergeError,
    StreamHouseError,
)
from streamhouse.storage.executor import run_blocking
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.segment.merge import merge_segments, merged_key

log = logging.getLogger(__name__)

PER_ROUND = 16  # rewrites per topic and round: a round stays bounded; the rest follow next round


def split_upgradable(segments: Iterable[SegmentInfo], layout1: set[str]) -> tuple[list[SegmentInfo], list[SegmentInfo]]:
    """Of a topic's segments, the layout-1 ones (object keys in `layout1`) that may be rewritten
    now, and those that wait because they are their partition's newest segment."""
    newest: dict[int, SegmentInfo] = {}
    old: list[SegmentInfo] = []
    for seg in segments:
        if seg.partition not in newest or seg.base_offset > newest[seg.partition].base_offset:
            newest[seg.partition] = seg
        if seg.object_key in layout1:
            old.append(seg)
    last = {s.object_key for s in newest.values()}
    return [s for s in old if s.object_key not in last], [s for s in old if s.object_key in last]


async def rewrite(
    metadata: MetadataStore,
    store: ObjectStore,
    leases: Leases,
    lease: HeldLease,
    segment: SegmentInfo,
    grace_ms: int,
) -> tuple[SegmentInfo | None, HeldLease]:
    """Swap `segment` for a layout-2 copy of it; the new row (None: refused, nothing changed)
    and the lease (renewed if it had to be). FencedError if the lease is lost."""
    topic, partition = segment.topic, segment.partition
    inputs = await download_segments(store, [segment])
    encoded = await run_blocking(merge_segments, inputs, epoch=segment.epoch)  # SegmentMergeError: refused
    key = merged_key(topic, partition, segment.base_offset, segment.end_offset, segment.epoch, uuid.uuid4().hex[:12])
    await store.put(key, encoded.data, if_absent=True)  # upload first; never overwrites
    new = encoded.info(topic=topic, partition=partition, object_key=key, epoch=segment.epoch)
    try:
        if not lease.fresh():
            lease = await leases.renew(lease)
        await metadata.replace_segments([segment], new, lease.resource, lease.holder, lease.epoch, grace_ms)
    except (FencedError, OffsetConflictError, NotFoundError, SegmentMergeError) as exc:
        # A definite refusal: nothing references the upload, so it goes now.
        with contextlib.suppress(StreamHouseError, OSError):
            await store.delete(key)
        if isinstance(exc, FencedError | NotFoundError):
            raise
        log.debug("%s/%d: layout-2 rewrite of %s not swapped in: %s", topic, partition, segment.object_key, exc)
        return None, lease
    log.info(
        "%s/%d: offsets [%d, %d) rewritten from segment layout 1 to layout 2 for the Iceberg table (%s)",
        topic,
        partition,
        segment.base_offset,
        segment.end_offset,
        key,
    )
    return new, lease


class Upgrades:
    """A publisher's rewriting of layout-1 segments, with what it said about them (once each)."""

    def __init__(self, metadata: MetadataStore, store: ObjectStore, leases: Leases, grace_ms: int) -> None:
        self.metadata = metadata
        self.store = store
        self.leases = leases
        self.grace_ms = grace_ms
        # Per topic, object keys: the partition's newest (logged, rewritten after the next write)
        # and those the merge refused (SegmentMergeError: logged, never retried).
        self._waiting: dict[str, set[str]] = {}
        self._refused: dict[str, set[str]] = {}

    def forget(self, topic: str) -> None:
        """The topic is gone or no longer published."""
        self._waiting.pop(topic, None)
        self._refused.pop(topic, None)

    async def run(
        self, topic: str, segments: Sequence[SegmentInfo], layout1: set[str], lease: HeldLease
    ) -> HeldLease | None:
        """Rewrite up to PER_ROUND of a topic's layout-1 segments (object keys `layout1` among
        its `segments`); the lease, renewed if it had to be (None: lost, stop)."""
        now, waiting = split_upgradable(segments, layout1)
        live = {s.object_key for s in segments}
        said = self._waiting.setdefault(topic, set())
        said &= live
        refused = self._refused.setdefault(topic, set())
        refused &= live
        for seg in waiting:
            if seg.object_key not in said:
                said.add(seg.object_key)
                log.warning(
                    "%s/%d: offsets [%d, %d) are in a layout-1 segment, the partition's newest, so they are not in "
                    "the Iceberg table yet: it is rewritten in layout 2 and published after the next write",
                    seg.topic,
                    seg.partition,
                    seg.base_offset,
                    seg.end_offset,
                )
        for seg in [s for s in now if s.object_key not in refused][:PER_ROUND]:
            try:
                _, lease = await rewrite(self.metadata, self.store, self.leases, lease, seg, self.grace_ms)
            except FencedError:
                return None
            except SegmentMergeError as exc:  # e.g. footer keys a rewrite would lose: never guessed at
                refused.add(seg.object_key)
                log.error(
                    "%s/%d: offsets [%d, %d) stay out of the Iceberg table: their layout-1 segment %s cannot be "
                    "rewritten in layout 2: %s",
                    seg.topic,
                    seg.partition,
                    seg.base_offset,
                    seg.end_offset,
                    seg.object_key,
                    exc,
                )
        return lease


__all__ = ["PER_ROUND", "Upgrades", "rewrite", "split_upgradable"]
