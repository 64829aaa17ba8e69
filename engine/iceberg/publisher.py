"""The Iceberg publisher (issue 16): a leased background service of every agent started with
`--iceberg-interval-ms` that keeps each topic with `iceberg.enabled=true` published as the
Iceberg table `streamhouse.<topic>`, its segments the table's data files (no copy).

Every interval, for each such topic, under the topic's lease `iceberg/<topic>` (taken back
from an earlier process of this agent, released after the round, so any agent may do the next
one): list the committed segments, bring the table in line with them (engine/iceberg/mirror.py:
new segments appended, retention's removals and the merger's and compactor's replacements
mirrored, one snapshot with the published end offsets per partition), then expire snapshots
past the retention. Only segments of layout 2 (Parquet field ids, storage/segment/field_ids.py)
can be data files: older ones are rewritten in layout 2 under the same lease (upgrade.py) and
published by the next round; a partition's newest segment waits for its next write.

pyiceberg is synchronous (SQLAlchemy, its file IO): its work runs in a thread. Failures are per
topic, in `health` like the other services' (backoff, one log line per change, readiness).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from streamhouse.agent.background import ROUND, BackgroundService
from streamhouse.agent.config import AgentConfig, merge_grace_ms
from streamhouse.agent.failures import Backoff, FailureTracker
from streamhouse.agent.leases import Leases
from streamhouse.iceberg.data_files import has_field_ids
from streamhouse.iceberg.mirror import MirrorOutcome, TableMirror
from streamhouse.iceberg.tables import NAMESPACE, CatalogSettings, drop_table, open_catalog
from streamhouse.iceberg.upgrade import Upgrades
from streamhouse.storage import topic_settings
from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import FencedError, NotFoundError, StreamHouseError
from streamhouse.storage.metadata.base import MetadataStore
from streamhouse.storage.model import SegmentInfo, TopicInfo
from streamhouse.storage.object_store.base import ObjectStore
from streamhouse.storage.segment.footer import parse_footer

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog

log = logging.getLogger(__name__)

FIRST_RETRY_S = 1.0
OUTAGE_CAP_S = 30.0
FAULT_CAP_S = 300.0
_PARALLEL_GETS = 16  # footer reads in flight: small ranged GETs are latency-bound


def require_pyiceberg() -> None:
    """StreamHouseError unless the `iceberg` extra is installed (said at agent start, not in
    the first round's log)."""
    try:
        import pyiceberg.catalog.sql  # noqa: F401
    except ImportError as exc:
        raise StreamHouseError(
            f"--iceberg-interval-ms needs the iceberg extra: pip install 'streamhouse[iceberg]' ({exc})"
        ) from None


def publish_resource(topic: str) -> str:
    return f"iceberg/{topic}"


def enabled(info: TopicInfo) -> bool:
    return info.config.get(topic_settings.ICEBERG_ENABLED, "false") == "true"


@dataclass(frozen=True)
class PublishSettings:
    interval_s: float  # <= 0: the publisher never starts
    snapshot_retention_ms: int
    catalog: CatalogSettings
    grace_ms: int = 5_000  # how long a layout-1 object replaced by its rewrite stays (merge_grace_ms)

    @classmethod
    def from_config(cls, config: AgentConfig) -> PublishSettings:
        return cls(
            interval_s=config.iceberg_interval_ms / 1000,
            snapshot_retention_ms=config.iceberg_snapshot_retention_ms,
            catalog=CatalogSettings(config.resolved_metadata_url, config.resolved_object_store_url, config.s3_endpoint),
            grace_ms=merge_grace_ms(config),
        )


def _subject(key: str) -> str:
    return "Iceberg publishing (listing topics)" if key == ROUND else f"Iceberg publishing of topic {key!r}"


class IcebergPublisher(BackgroundService):
    task_name = "iceberg-publisher"

    def __init__(self, metadata: MetadataStore, store: ObjectStore, leases: Leases, settings: PublishSettings) -> None:
        health = FailureTracker[str](
            Backoff(FIRST_RETRY_S, OUTAGE_CAP_S, FAULT_CAP_S),
            label=_subject,
            topic=lambda key: "" if key == ROUND else key,
            log=log,
        )
        super().__init__(leases, settings.interval_s, health)
        self.metadata = metadata
        self.store = store
        self.settings = settings
        self._catalog: SqlCatalog | None = None
        self._mirrors: dict[str, TableMirror] = {}
        self._skipped: dict[str, set[str]] = {}  # per topic, the object keys of layout-1 segments
        self._upgrades = Upgrades(metadata, store, leases, settings.grace_ms)  # layout 1 rewritten in layout 2
        self.on_published: Callable[[MirrorOutcome], None] = lambda outcome: None  # metrics hook

    async def run_once(self) -> list[MirrorOutcome]:
        """One round over the topics with iceberg.enabled; never raises a store error."""
        try:
            topics = [t for t in await self.metadata.list_topics() if enabled(t)]
            self.health.succeeded(ROUND)
            for gone in self._skipped.keys() - {t.name for t in topics}:  # deleted or no longer published
                del self._skipped[gone]
                self._upgrades.forget(gone)
        except StreamHouseError as exc:
            self.health.failed(ROUND, exc)
            return []
        done: list[MirrorOutcome] = []
        try:
            await self.drop_stale({t.name for t in topics})
        except Exception as exc:  # the catalog unreachable: said once, retried next round
            self.health.failed(ROUND, exc)
            return []
        for info in topics:
            if self.health.wait_s(info.name) > 0:
                continue
            try:
                outcome = await self.publish(info)
                self.health.succeeded(info.name)
            except NotFoundError:
                self.health.forget(info.name)  # deleted meanwhile
                continue
            except Exception as exc:  # pyiceberg, SQLAlchemy, file IO: recorded, retried after backoff
                self._mirrors.pop(info.name, None)  # read the table afresh next time
                self.health.failed(info.name, exc)
                continue
            if outcome is not None:
                done.append(outcome)
                if outcome.added or outcome.removed or outcome.expired:
                    self.on_published(outcome)
        return done

    async def publish(self, info: TopicInfo) -> MirrorOutcome | None:
        """Bring one topic's table in line with its segments under the topic's lease (None:
        another agent holds it)."""
        async with self.leased(publish_resource(info.name)) as lease:
            if lease is None:
                return None
            segments: list[SegmentInfo] = []
            for partition in range(info.partitions):
                segments += await self.metadata.list_segments(info.name, partition)
            mirror = await self._mirror(info.name)
            # Layout-1 segments of this topic, read once and never published (gone ones forgotten).
            skipped = self._skipped.setdefault(info.name, set())
            skipped &= {s.object_key for s in segments}
            current = await asyncio.to_thread(mirror.load, info)
            urls = {self.settings.catalog.object_url(s.object_key): s for s in segments if s.object_key not in skipped}
            new = [s for url, s in urls.items() if url not in current]
            if new:  # replaced by a swap since the listing: recorded for deletion, never published
                gone = await self.metadata.deferred_among([s.object_key for s in new])
                new = [s for s in new if s.object_key not in gone]
            add = [(s, meta) for s, meta in zip(new, await self._footers(new), strict=True) if meta is not None]
            upgraded = await self._upgrades.run(info.name, segments, self._skipped.get(info.name, set()), lease)
            if upgraded is None:
                return None  # the lease is lost: its new holder publishes
            lease = upgraded
            remove = sorted(current - urls.keys())
            added = {self.settings.catalog.object_url(s.object_key) for s, _ in add}
            held = [s for url, s in urls.items() if url in current or url in added]
            if not lease.fresh():
                try:
                    lease = await self.leases.renew(lease)
                except FencedError:
                    return None  # its new holder publishes
            outcome = await asyncio.to_thread(mirror.commit, info, add, remove, held)
            expired = await asyncio.to_thread(mirror.expire, now_ms() - self.settings.snapshot_retention_ms)
        if add or remove:
            log.info(
                "%s: Iceberg snapshot %s: %d segments added, %d removed",
                info.name,
                outcome.snapshot_id,
                len(add),
                len(remove),
            )
        return MirrorOutcome(
            info.name, outcome.snapshot_id, outcome.added, outcome.removed, expired, outcome.end_offsets
        )

    async def drop_stale(self, published: set[str]) -> list[str]:
        """Drop the tables of topics deleted or no longer published (iceberg.enabled turned
        off): nothing would expire their snapshots again, so the objects they reference would
        be kept forever. Each under its topic's lease; the tables dropped."""
        catalog = await self._open()
        names = [ident[-1] for ident in await asyncio.to_thread(catalog.list_tables, NAMESPACE)]
        dropped: list[str] = []
        for name in names:
            if name in published:
                continue
            async with self.leased(publish_resource(name)) as lease:
                if lease is None:
                    continue
                if await asyncio.to_thread(drop_table, catalog, name):
                    log.info("%s: Iceberg table dropped (the topic is gone or no longer published)", name)
                    dropped.append(name)
            self._mirrors.pop(name, None)
        return dropped

    async def _open(self) -> SqlCatalog:
        if self._catalog is None:
            self._catalog = await asyncio.to_thread(open_catalog, self.settings.catalog)
        return self._catalog

    async def _mirror(self, topic: str) -> TableMirror:
        catalog = await self._open()
        mirror = self._mirrors.get(topic)
        if mirror is None:
            mirror = self._mirrors[topic] = TableMirror(catalog, self.settings.catalog)
        return mirror

    async def _footers(self, segments: Sequence[SegmentInfo]) -> list[pq.FileMetaData | None]:
        """Each segment's verified Parquet footer (None for layout 1: remembered and skipped)."""
        gate = asyncio.Semaphore(_PARALLEL_GETS)

        async def one(seg: SegmentInfo) -> pq.FileMetaData | None:
            async with gate:
                tail = await self.store.get(seg.object_key, seg.size_bytes - seg.footer_length, seg.size_bytes)
            footer = parse_footer(tail, size_bytes=seg.size_bytes, footer_crc=seg.footer_crc, source=seg.object_key)
            if not has_field_ids(footer.metadata):
                self._skipped.setdefault(seg.topic, set()).add(seg.object_key)
                return None
            return footer.metadata

        return list(await asyncio.gather(*(one(s) for s in segments)))

    async def close(self) -> None:
        await super().close()
        if self._catalog is not None:
            self._catalog.engine.dispose()
            self._catalog = None


__all__ = ["IcebergPublisher", "PublishSettings", "enabled", "publish_resource", "require_pyiceberg"]
