"""The agent's cache of schemas by id (issue 13: 10,000 entries, 1 h TTL).

A schema id names one immutable (type, text, references) forever: rows are never updated and
never deleted (storage/metadata/migrations/0004), so an entry can never be stale and needs no
invalidation across agents; the TTL and the bound only cap memory. Everything that can change
(subject versions, compatibility and mode settings, subject listings) is read from the
metadata store on every request instead of being cached, so another agent's write is seen at
once and there is nothing to invalidate. Serialisers cache on their side too, so this is hit
mostly by deserialisers asking for ids.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")

MAX_ENTRIES = 10_000
TTL_S = 3600.0


class TtlCache(Generic[K, V]):
    """Least recently used first out past `max_entries`; an entry older than `ttl_s` is a miss."""

    def __init__(
        self, max_entries: int = MAX_ENTRIES, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if max_entries < 1 or ttl_s <= 0:
            raise ValueError("a cache needs at least one entry and a positive TTL")
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or self._clock() - entry[0] > self._ttl:
            if entry is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return entry[1]

    def put(self, key: K, value: V) -> None:
        self._entries[key] = (self._clock(), value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)
