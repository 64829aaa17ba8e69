"""Which segment objects a live Iceberg snapshot still references (issue 16), so that the deferred
deleter (engine/agent/background.py delete_due) keeps them.

A swap (merge, compaction, retention) records the objects it replaced for deletion after a
grace; the publisher then drops them from the table's current snapshot, but older snapshots a
reader may still be planning against keep pointing at them until they expire. The deleter
asks this check before each batch and leaves the referenced objects recorded (so the orphan
reconciler, which spares recorded objects, leaves them too); they go in a later round, once the
snapshots that used them have expired.

The answer is computed from every table of the catalog: one read of its metadata file and the
manifests not read before (they never change, so each is cached by path).

Every agent's deleters ask (IcebergKeepCheck), not only the publishers': any agent may run a
deleter while another publishes. The catalog is read only for objects of topics with
`iceberg.enabled=true`, so an agent whose topics are not published never imports pyiceberg; an
agent without pyiceberg that must answer for a published topic refuses to delete
(IcebergUnavailableError, in its readiness) rather than guess.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from streamhouse.iceberg.data_files import live_paths
from streamhouse.iceberg.tables import NAMESPACE, CatalogSettings, open_catalog
from streamhouse.storage import topic_settings
from streamhouse.storage.errors import StorageUnavailableError, StreamHouseError
from streamhouse.storage.metadata.base import MetadataStore

if TYPE_CHECKING:
    from pyiceberg.catalog.sql import SqlCatalog


class SnapshotReferences:
    """The deleter's keep check over one catalog (opened on first use)."""

    def __init__(self, settings: CatalogSettings) -> None:
        self.settings = settings
        self._catalog: SqlCatalog | None = None
        self._manifests: dict[tuple[str, str], dict[str, frozenset[str]]] = {}
        self._lock = threading.Lock()  # one walk at a time: the caches are not shared safely

    async def referenced(self, keys: Sequence[str]) -> set[str]:
        """Which of these object keys a live snapshot of some table references."""
        if not keys:
            return set()
        try:
            live = await asyncio.to_thread(self.live_keys)
        except Exception as exc:  # unknown means keep: nothing is deleted this round
            raise StorageUnavailableError(f"cannot read the Iceberg snapshots' references: {exc}") from exc
        return {k for k in keys if k in live}

    def live_keys(self) -> set[str]:
        """Every object key some live snapshot of some table references (blocking)."""
        with self._lock:
            if self._catalog is None:
                self._catalog = open_catalog(self.settings)
            catalog = self._catalog
            keys: set[str] = set()
            tables = catalog.list_tables(NAMESPACE)
            for ident in tables:
                name = (ident[0], ident[-1])
                table = catalog.load_table(ident)
                for path in live_paths(table, self._manifests.setdefault(name, {})):
                    key = self.settings.object_key(path)
                    if key is not None:
                        keys.add(key)
            for gone in self._manifests.keys() - {(i[0], i[-1]) for i in tables}:
                del self._manifests[gone]
            return keys

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.engine.dispose()
            self._catalog = None


class IcebergUnavailableError(StreamHouseError):
    """A published topic's objects are due for deletion on an agent that cannot read the
    Iceberg catalog (pyiceberg missing): they stay until it can."""


def key_topic(key: str) -> str | None:
    """The topic of a segment object key (`topics/<topic>/<partition>/...`, partition/roll.py,
    merge.py, compaction_plan.py); None for any other key."""
    parts = key.split("/", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "topics" else None


class IcebergKeepCheck:
    """The keep check of every agent's deferred deleters, whether or not the agent publishes:
    objects of topics with `iceberg.enabled=true` are asked about in the catalog (a publisher
    elsewhere may have put them in a snapshot); the others are never kept."""

    def __init__(self, metadata: MetadataStore, settings: CatalogSettings) -> None:
        self.metadata = metadata
        self.settings = settings
        self._references: SnapshotReferences | None = None

    async def referenced(self, keys: Sequence[str]) -> set[str]:
        if not keys:
            return set()
        published = {
            t.name for t in await self.metadata.list_topics() if t.config.get(topic_settings.ICEBERG_ENABLED) == "true"
        }
        asked = [k for k in keys if key_topic(k) in published]
        if not asked:
            return set()
        if self._references is None:
            try:
                import pyiceberg  # noqa: F401
            except ImportError:
                topics = sorted({str(key_topic(k)) for k in asked})
                raise IcebergUnavailableError(
                    f"objects of {', '.join(map(repr, topics))} (iceberg.enabled) are due for deletion, but this "
                    "agent cannot read the Iceberg catalog to see whether a snapshot still references them: "
                    "nothing is deleted until pyiceberg is installed (pip install 'streamhouse[iceberg]')"
                ) from None
            self._references = SnapshotReferences(self.settings)
        return await self._references.referenced(asked)

    def close(self) -> None:
        if self._references is not None:
            self._references.close()
            self._references = None


__all__ = ["IcebergKeepCheck", "IcebergUnavailableError", "SnapshotReferences", "key_topic"]
