"""The ObjectStore contract (docs/DESIGN.md §5): every test taking `object_store` runs on the local
directory store and on a real SeaweedFS, so both backends behave the same to callers."""

from __future__ import annotations

import asyncio
import random
import socket
from pathlib import Path

import pytest

from streamhouse.storage.errors import (
    InvalidInputError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageUnavailableError,
)
from streamhouse.storage.model import ObjectInfo
from streamhouse.storage.object_store import ObjectStore, open_object_store
from streamhouse.storage.object_store.keys import TEMP_PREFIX
from streamhouse.storage.object_store.local import LocalObjectStore
from streamhouse.storage.object_store.s3 import S3ObjectStore

MIB = 1 << 20
PAYLOADS = {
    "empty": b"",
    "one-mib": random.Random(7).randbytes(MIB),
    "every-byte": bytes(range(256)) * 3,
}


@pytest.mark.parametrize("name", PAYLOADS)
async def test_put_get_round_trip(object_store: ObjectStore, name: str) -> None:
    data = PAYLOADS[name]
    await object_store.put(f"round/{name}", data)
    assert await object_store.get(f"round/{name}") == data
    assert await object_store.head(f"round/{name}") == ObjectInfo(f"round/{name}", len(data))


async def test_if_absent_conflict_keeps_original(object_store: ObjectStore) -> None:
    await object_store.put("seg", b"original")
    with pytest.raises(ObjectExistsError) as raised:
        await object_store.put("seg", b"intruder!")
    assert raised.value.key == "seg"
    assert await object_store.get("seg") == b"original"


async def test_put_without_if_absent_overwrites(object_store: ObjectStore) -> None:
    await object_store.put("state", b"v1")
    await object_store.put("state", b"version two", if_absent=False)
    assert await object_store.get("state") == b"version two"
    assert (await object_store.head("state")).size == len(b"version two")


async def test_range_gets(object_store: ObjectStore) -> None:
    data = bytes(range(256)) * 4
    await object_store.put("ranged", data)
    await object_store.put("empty", b"")
    cases: list[tuple[int | None, int | None, bytes]] = [
        (1000, None, data[1000:]),  # start only: the footer read
        (1000, 5000, data[1000:]),  # end past the size is clamped
        (10, 20, data[10:20]),
        (0, 1, data[:1]),
        (1023, 1024, data[1023:]),
        (None, 5, data[:5]),
        (5, 5, b""),  # empty range
        (9, 3, b""),  # reversed range is empty too
        (1024, None, b""),  # starting exactly at the end
        (2000, 3000, b""),  # starting past the end
    ]
    for start, end, expected in cases:
        assert await object_store.get("ranged", start, end) == expected, (start, end)
    assert await object_store.get("empty", 0, 10) == b""
    assert await object_store.get("empty", 0) == b""
    with pytest.raises(InvalidInputError):
        await object_store.get("ranged", -1, 5)


async def test_missing_objects(object_store: ObjectStore) -> None:
    for read in (
        object_store.get("nope"),
        object_store.get("nope", 0, 10),
        object_store.get("nope", 3, 3),
        object_store.head("nope"),
        object_store.head("dir/nope"),
    ):
        with pytest.raises(ObjectNotFoundError):
            await read


async def test_list_by_prefix_sorted_with_sizes(object_store: ObjectStore) -> None:
    assert await object_store.list() == []
    sizes = {
        "topics/a/00001/y": 3,
        "topics/a/00000/x": 10,
        "topics/b/00000/z": 0,
        "topics/a-c": 4,  # '-' sorts before '/', which a directory walk would miss
        "topics/a0": 5,
        "other": 1,
    }
    await asyncio.gather(*(object_store.put(key, b"x" * size) for key, size in sizes.items()))
    everything = [ObjectInfo(key, size) for key, size in sorted(sizes.items())]
    assert await object_store.list() == everything
    assert await object_store.list("") == everything
    assert [i.key for i in await object_store.list("topics/a/")] == ["topics/a/00000/x", "topics/a/00001/y"]
    assert [i.key for i in await object_store.list("topics/a")] == [
        "topics/a-c",
        "topics/a/00000/x",
        "topics/a/00001/y",
        "topics/a0",
    ]
    assert await object_store.list("topics/b/00000/z") == [ObjectInfo("topics/b/00000/z", 0)]
    assert await object_store.list("topics/c/") == []
    assert await object_store.list("nothing") == []


async def test_delete_is_idempotent(object_store: ObjectStore) -> None:
    await object_store.put("d/k", b"bytes")
    await object_store.delete("d/k")
    with pytest.raises(ObjectNotFoundError):
        await object_store.head("d/k")
    await object_store.delete("d/k")
    await object_store.delete("never/existed")
    await object_store.put("d/k", b"again")  # if_absent sees the key free again
    assert await object_store.get("d/k") == b"again"
    assert await object_store.list() == [ObjectInfo("d/k", 5)]


async def test_nested_and_non_ascii_keys(object_store: ObjectStore) -> None:
    keys = [
        "topics/orders/00003/00000000000000001000-7.parquet",
        "ünï/cødé/日本語.bin",
        "with space/plus+equals=amp&percent%20",
    ]
    for i, key in enumerate(keys):
        await object_store.put(key, key.encode() * (i + 1))
    for i, key in enumerate(keys):
        assert await object_store.get(key) == key.encode() * (i + 1)
    assert [info.key for info in await object_store.list()] == sorted(keys)
    assert [info.key for info in await object_store.list("ünï/")] == ["ünï/cødé/日本語.bin"]


async def test_concurrent_if_absent_exactly_one_wins(object_store: ObjectStore) -> None:
    payloads = [f"writer {i} ".encode() * (100 + i) for i in range(8)]
    results = await asyncio.gather(*(object_store.put("race/seg", data) for data in payloads), return_exceptions=True)
    winners = [i for i, result in enumerate(results) if result is None]
    assert len(winners) == 1, results
    losers = [result for result in results if result is not None]
    assert all(isinstance(result, ObjectExistsError) for result in losers), results
    assert await object_store.get("race/seg") == payloads[winners[0]]


BAD_KEYS = ["", "/abs", "..", "../up", "a/../../b", "a//b", "./a", "a/./b", "a/", "a\x00b"]


@pytest.mark.parametrize("key", BAD_KEYS)
async def test_invalid_keys_rejected(object_store: ObjectStore, key: str) -> None:
    with pytest.raises(InvalidInputError):
        await object_store.put(key, b"x")
    with pytest.raises(InvalidInputError):
        await object_store.get(key)
    with pytest.raises(InvalidInputError):
        await object_store.delete(key)
    assert await object_store.list() == []


@pytest.mark.parametrize("prefix", ["../", "a/../../", "/abs/", "a//b"])
async def test_invalid_list_prefixes_rejected(object_store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidInputError):
        await object_store.list(prefix)


# --- local only ---------------------------------------------------------------------------


async def test_local_path_traversal_writes_nothing_outside_root(tmp_path: Path) -> None:
    store = LocalObjectStore(f"file://{tmp_path / 'root'}")
    for key in ("../escape", "a/../../escape", "/tmp/escape", "../root2/x"):
        with pytest.raises(InvalidInputError):
            await store.put(key, b"x")
    with pytest.raises(InvalidInputError):
        await store.list("../")
    assert list(tmp_path.iterdir()) == []


async def test_local_layout_and_temp_files(tmp_path: Path) -> None:
    store = LocalObjectStore(str(tmp_path))  # a plain path works like file://
    await store.put("a/b/c", b"data")
    assert (tmp_path / "a" / "b" / "c").read_bytes() == b"data"
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["c"]  # no temp left behind
    (tmp_path / "a" / "b" / f"{TEMP_PREFIX}crashed-writer").write_bytes(b"partial")
    assert await store.list() == [ObjectInfo("a/b/c", 4)]
    with pytest.raises(InvalidInputError):
        await store.put(f"a/{TEMP_PREFIX}x", b"x")


async def test_local_file_and_directory_cannot_share_a_name(tmp_path: Path) -> None:
    store = LocalObjectStore(f"file://{tmp_path}")
    await store.put("a/b", b"1")
    with pytest.raises(InvalidInputError):
        await store.put("a", b"2")
    with pytest.raises(InvalidInputError):
        await store.put("a/b/c", b"3", if_absent=False)
    with pytest.raises(ObjectNotFoundError):
        await store.get("a")
    with pytest.raises(ObjectNotFoundError):
        await store.head("a")
    await store.delete("a")  # a directory is not an object: nothing to delete
    assert await store.list() == [ObjectInfo("a/b", 1)]


# --- S3 only ------------------------------------------------------------------------------


async def test_s3_prefixes_do_not_see_each_other(s3_url: tuple[str, str]) -> None:
    url, endpoint = s3_url
    first, second = S3ObjectStore(url, endpoint_url=endpoint), S3ObjectStore(url + "2", endpoint_url=endpoint)
    try:
        await first.put("k", b"first")
        await second.put("k", b"second")
        assert await first.list() == [ObjectInfo("k", 5)]
        assert await second.list() == [ObjectInfo("k", 6)]
        assert await first.get("k") == b"first"
    finally:
        await first.close()
        await second.close()


async def test_s3_unreachable_is_storage_unavailable() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = S3ObjectStore("s3://bucket/p", endpoint_url=f"http://127.0.0.1:{port}", max_attempts=1)
    try:
        with pytest.raises(StorageUnavailableError):
            await store.get("k")
        with pytest.raises(StorageUnavailableError):
            await store.put("k", b"x")
    finally:
        await store.close()


# --- choosing a backend -------------------------------------------------------------------


def test_open_object_store_picks_backend_by_url(tmp_path: Path) -> None:
    assert isinstance(open_object_store(f"file://{tmp_path}"), LocalObjectStore)
    assert isinstance(open_object_store(str(tmp_path)), LocalObjectStore)
    s3 = open_object_store("s3://bucket/some/prefix", s3_endpoint="http://127.0.0.1:1")
    assert isinstance(s3, S3ObjectStore)
    assert s3.url == "s3://bucket/some/prefix"
    assert isinstance(s3, ObjectStore) and isinstance(open_object_store(str(tmp_path)), ObjectStore)
    for url in ("gs://bucket/x", "http://host/x", "ftp://x/y"):
        with pytest.raises(InvalidInputError):
            open_object_store(url)
    with pytest.raises(InvalidInputError):
        open_object_store("s3:///no-bucket")
    with pytest.raises(InvalidInputError):
        open_object_store("file://remote-host/path")


async def test_list_page_walks_a_prefix_in_bounded_pages_with_modification_times(object_store: ObjectStore) -> None:
    import time

    keys = [f"topics/p/00000/{i:04d}" for i in range(25)] + ["topics/p-x/k", "topics/q/k"]
    before_ms = int(time.time() * 1000) - 5_000  # clocks of a remote store may differ a little
    await asyncio.gather(*(object_store.put(key, b"v") for key in keys))
    after_ms = int(time.time() * 1000) + 5_000
    walked: list[str] = []
    after = ""
    while True:
        page = await object_store.list_page("topics/p/", after=after, limit=7)
        assert len(page) <= 7
        if not page:
            break
        walked.extend(info.key for info in page)
        after = page[-1].key
    assert walked == keys[:25]
    for info in await object_store.list_page("topics/", limit=100) + [await object_store.head(keys[0])]:
        assert info.modified_ms is not None and before_ms <= info.modified_ms <= after_ms, info
    assert await object_store.list_page("nothing/") == []


async def test_list_page_walks_visit_what_list_lists_once(object_store: ObjectStore) -> None:
    keys = ["topics/a/00000/x", "topics/a/00001/y", "topics/a-c", "topics/a0", "topics/b/00000/z", "other", "o/p/q"]
    await asyncio.gather(*(object_store.put(key, b"v") for key in keys))
    for prefix in ["", "topics/", "topics/a", "topics/a/", "topics/a/0", "o", "nothing"]:
        expected = sorted(info.key for info in await object_store.list(prefix))
        for limit in (1, 2, 100):
            walked: list[str] = []
            after = ""
            for _ in range(len(keys) + 1):  # bounded: a walk that never ends fails
                page = await object_store.list_page(prefix, after=after, limit=limit)
                assert len(page) <= limit
                if not page:
                    break
                walked.extend(info.key for info in page)
                after = page[-1].key
            assert sorted(walked) == expected, (prefix, limit, walked)
            # One directory's keys stay together and in order (the reconciler's merge needs it).
            at = [i for i, k in enumerate(walked) if k.startswith("topics/a/")]
            assert at == list(range(at[0], at[0] + len(at))) if at else True
            assert [walked[i] for i in at] == sorted(walked[i] for i in at)
