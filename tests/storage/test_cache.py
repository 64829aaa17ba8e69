from __future__ import annotations

from pathlib import Path

from streamhouse.storage.segment.cache import BlockCache, LruBytes, TtlCache


def test_lru_is_bounded_by_bytes_and_evicts_least_recent() -> None:
    lru = LruBytes(100)
    lru.put("a", b"x" * 40)
    lru.put("b", b"x" * 40)
    assert lru.get("a") is not None  # a is now the most recent
    evicted = lru.put("c", b"x" * 40)
    assert [k for k, _ in evicted] == ["b"]
    assert lru.used_bytes == 80 and len(lru) == 2
    assert lru.get("b") is None


def test_lru_replacing_a_key_keeps_the_accounting_exact() -> None:
    lru = LruBytes(100)
    lru.put("a", b"x" * 60)
    lru.put("a", b"x" * 10)
    assert lru.used_bytes == 10


def test_value_over_budget_is_not_kept() -> None:
    lru = LruBytes(10)
    assert lru.put("big", b"x" * 11) == [("big", b"x" * 11)]
    assert lru.used_bytes == 0


async def test_block_cache_spills_to_disk_and_reads_back(tmp_path: Path) -> None:
    cache = BlockCache(memory_bytes=100, disk_dir=tmp_path / "blocks", disk_bytes=1000)
    await cache.put("seg#0", b"a" * 80)
    await cache.put("seg#1", b"b" * 80)  # evicts seg#0 from memory to disk
    assert cache.memory_bytes == 80 and cache.disk_bytes == 80
    assert await cache.get("seg#0") == b"a" * 80  # from disk, promoted back to memory
    assert await cache.get("missing") is None
    assert (cache.hits, cache.misses) == (1, 1)


async def test_disk_tier_is_bounded(tmp_path: Path) -> None:
    cache = BlockCache(memory_bytes=10, disk_dir=tmp_path / "blocks", disk_bytes=250)
    for i in range(10):
        await cache.put(f"k{i}", bytes([i]) * 100)
    assert cache.disk_bytes <= 250
    assert len(list((tmp_path / "blocks").glob("*.blk"))) == 2
    assert await cache.get("k0") is None
    assert await cache.get("k8") == bytes([8]) * 100
    assert await cache.get("k9") == bytes([9]) * 100


def test_ttl_cache_expires_by_its_clock() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(ttl_s=1.0, clock=lambda: now[0])
    cache.put("a", 1)
    now[0] = 0.9
    assert cache.get("a") == 1
    now[0] = 1.5
    assert cache.get("a") is None


def test_ttl_cache_bounds_entries_and_invalidates() -> None:
    cache: TtlCache[int, int] = TtlCache(ttl_s=10, max_entries=3)
    for i in range(5):
        cache.put(i, i)
    assert [cache.get(i) for i in range(5)] == [None, None, 2, 3, 4]
    cache.invalidate(3)
    assert cache.get(3) is None
