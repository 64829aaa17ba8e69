"""Caches of the read path: an LRU block cache with a byte budget (memory, optional disk
tier) for immutable segment row groups, and a TTL cache for metadata that can change.

Blocks are immutable (segments are never overwritten), so the block cache never needs
invalidation; only the metadata cache ages out.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

from streamhouse.storage.executor import run_blocking

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruBytes:
    """An LRU of bytes values bounded by total size, not count. Not thread-safe by design:
    it is used from one event loop."""

    def __init__(self, budget_bytes: int) -> None:
        self.budget_bytes = budget_bytes
        self.used_bytes = 0
        self._items: OrderedDict[str, bytes] = OrderedDict()

    def get(self, key: str) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: str, value: bytes) -> list[tuple[str, bytes]]:
        """Insert and return what was evicted (the disk tier takes it)."""
        if len(value) > self.budget_bytes:
            return [(key, value)]
        old = self._items.pop(key, None)
        if old is not None:
            self.used_bytes -= len(old)
        self._items[key] = value
        self.used_bytes += len(value)
        evicted: list[tuple[str, bytes]] = []
        while self.used_bytes > self.budget_bytes:
            k, v = self._items.popitem(last=False)
            self.used_bytes -= len(v)
            evicted.append((k, v))
        return evicted

    def __len__(self) -> int:
        return len(self._items)


class DiskTier:
    """Evicted blocks spill to files named by a hash of the key; LRU by access time."""

    def __init__(self, directory: Path, budget_bytes: int) -> None:
        self.directory = directory
        self.budget_bytes = budget_bytes
        directory.mkdir(parents=True, exist_ok=True)
        self._sizes: OrderedDict[str, int] = OrderedDict()
        self.used_bytes = 0
        # Blocks are re-verified by their reader, so a half-written file from a crash is
        # harmless; still, start clean rather than trust an old directory's accounting.
        for f in directory.glob("*.blk"):
            f.unlink(missing_ok=True)

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.sha1(key.encode()).hexdigest() + ".blk")

    def read(self, key: str) -> bytes | None:
        if key not in self._sizes:
            return None
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            self._forget(key)
            return None
        self._sizes.move_to_end(key)
        return data

    def write(self, key: str, value: bytes) -> None:
        if len(value) > self.budget_bytes or key in self._sizes:
            return
        tmp = self._path(key).with_suffix(".tmp")
        tmp.write_bytes(value)
        os.replace(tmp, self._path(key))
        self._sizes[key] = len(value)
        self.used_bytes += len(value)
        while self.used_bytes > self.budget_bytes:
            old = next(iter(self._sizes))
            self._path(old).unlink(missing_ok=True)
            self._forget(old)

    def write_many(self, items: list[tuple[str, bytes]]) -> None:
        for key, value in items:
            self.write(key, value)

    def _forget(self, key: str) -> None:
        self.used_bytes -= self._sizes.pop(key, 0)


class BlockCache:
    """Row-group bytes keyed by `object_key#row_group`: memory LRU, then an optional disk tier."""

    def __init__(self, memory_bytes: int = 256 << 20, disk_dir: Path | None = None, disk_bytes: int = 4 << 30) -> None:
        self._memory = LruBytes(memory_bytes)
        self._disk = DiskTier(disk_dir, disk_bytes) if disk_dir is not None else None
        self.hits = 0
        self.misses = 0

    async def get(self, key: str) -> bytes | None:
        value = self._memory.get(key)
        if value is None and self._disk is not None:
            value = await run_blocking(self._disk.read, key)
            if value is not None:
                await self._spill(self._memory.put(key, value))
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    async def put(self, key: str, data: bytes) -> None:
        await self._spill(self._memory.put(key, data))

    async def _spill(self, evicted: list[tuple[str, bytes]]) -> None:
        if self._disk is not None and evicted:
            await run_blocking(self._disk.write_many, evicted)

    @property
    def memory_bytes(self) -> int:
        return self._memory.used_bytes

    @property
    def disk_bytes(self) -> int:
        return 0 if self._disk is None else self._disk.used_bytes


class TtlCache(Generic[K, V]):
    """Values that expire `ttl_s` after they were stored (segment lists, topic configs)."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        stored, value = item
        if self._clock() - stored > self.ttl_s:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = (self._clock(), value)
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def invalidate(self, key: K) -> None:
        self._items.pop(key, None)
