"""Leases and fenced segment commits (docs/DESIGN.md §5) on SQLite and PostgreSQL.

Separate store instances on one URL stand in for separate agents: each has its own connection
(pool), so the database, not a shared Python lock, is what keeps them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streamhouse.storage.errors import FencedError, LeaseHeldError, OffsetConflictError
from streamhouse.storage.metadata import MetadataStore, open_metadata_store
from streamhouse.storage.model import Lease, partition_resource
from tests.storage.test_metadata_contract import make_segment

TOPIC = "events"
RESOURCE = partition_resource(TOPIC, 0)
LONG_TTL = 60_000


@contextlib.asynccontextmanager
async def agents(store: MetadataStore, count: int) -> AsyncIterator[list[MetadataStore]]:
    """`count` more stores on the same database, opened concurrently, closed afterwards."""
    opened = await asyncio.gather(*(open_metadata_store(store.url) for _ in range(count)))
    try:
        yield list(opened)
    finally:
        await asyncio.gather(*(s.close() for s in opened))


async def assert_contiguous(store: MetadataStore, topic: str = TOPIC, partition: int = 0) -> int:
    """The log has no gap and no overlap from 0 to the durable end; returns the end."""
    segments = await store.list_segments(topic, partition)
    end = await store.get_end_offset(topic, partition)
    expected_base = 0
    for segment in segments:
        assert segment.base_offset == expected_base
        assert segment.end_offset > segment.base_offset
        expected_base = segment.end_offset
    assert expected_base == end
    # Epochs only grow, so along the log the writers' epochs never go back.
    assert [s.epoch for s in segments] == sorted(s.epoch for s in segments)
    return end


async def test_old_epoch_is_fenced_after_takeover(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic(TOPIC, 1)
    async with agents(metadata_store, 2) as (a, b):
        old = await a.acquire_lease(RESOURCE, "a", 200)
        await a.commit_segment(make_segment(TOPIC, 0, 0, 10, old.epoch), "a", old.epoch)
        with pytest.raises(LeaseHeldError) as held:
            await b.acquire_lease(RESOURCE, "b", LONG_TTL)
        assert held.value.holder == "a"

        await asyncio.sleep(0.3)
        new = await b.acquire_lease(RESOURCE, "b", LONG_TTL)
        assert new.epoch == old.epoch + 1

        with pytest.raises(FencedError):
            await a.commit_segment(make_segment(TOPIC, 0, 10, 20, old.epoch), "a", old.epoch)
        with pytest.raises(FencedError):
            await a.renew_lease(RESOURCE, "a", old.epoch, LONG_TTL)
        with pytest.raises(LeaseHeldError):
            await a.acquire_lease(RESOURCE, "a", LONG_TTL)
        # The new leader's own idea of the end is unaffected by the stale attempt.
        await b.commit_segment(make_segment(TOPIC, 0, 10, 20, new.epoch), "b", new.epoch)
        assert await assert_contiguous(metadata_store) == 20


async def test_same_holder_restarted_fences_its_old_epoch(metadata_store: MetadataStore) -> None:
    # An agent that restarts under the same name gets a new epoch; its previous incarnation,
    # still holding buffers under the old one, must not be able to commit them.
    await metadata_store.create_topic(TOPIC, 1)
    old = await metadata_store.acquire_lease(RESOURCE, "a", 100)
    await asyncio.sleep(0.2)
    new = await metadata_store.acquire_lease(RESOURCE, "a", LONG_TTL)
    assert new.epoch == old.epoch + 1
    with pytest.raises(FencedError):
        await metadata_store.commit_segment(make_segment(TOPIC, 0, 0, 10, old.epoch), "a", old.epoch)
    with pytest.raises(FencedError):
        await metadata_store.renew_lease(RESOURCE, "a", old.epoch, LONG_TTL)
    await metadata_store.commit_segment(make_segment(TOPIC, 0, 0, 10, new.epoch), "a", new.epoch)
    assert await assert_contiguous(metadata_store) == 10


async def test_expired_lease_nobody_took_may_still_commit(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic(TOPIC, 1)
    lease = await metadata_store.acquire_lease(RESOURCE, "a", 200)
    await asyncio.sleep(0.3)
    assert lease.expires_at_ms <= await metadata_store.now_ms()
    # The epoch is the fence: nobody else can have written without bumping it.
    await metadata_store.commit_segment(make_segment(TOPIC, 0, 0, 5, lease.epoch), "a", lease.epoch)
    renewed = await metadata_store.renew_lease(RESOURCE, "a", lease.epoch, LONG_TTL)
    assert renewed.epoch == lease.epoch


async def test_concurrent_acquirers_get_exactly_one_holder(metadata_store: MetadataStore) -> None:
    async with agents(metadata_store, 8) as stores:
        for round_ in (1, 2, 3):
            results = await asyncio.gather(
                *(s.acquire_lease(RESOURCE, f"agent-{i}", LONG_TTL) for i, s in enumerate(stores)),
                return_exceptions=True,
            )
            winners = [r for r in results if isinstance(r, Lease)]
            losers = [r for r in results if isinstance(r, LeaseHeldError)]
            assert len(winners) == 1 and len(losers) == 7, results
            winner = winners[0]
            assert winner.epoch == round_
            assert all(err.holder == winner.holder for err in losers)
            assert await metadata_store.get_lease(RESOURCE) == winner
            await metadata_store.release_lease(RESOURCE, winner.holder, winner.epoch)


async def test_renewal_keeps_the_epoch(metadata_store: MetadataStore) -> None:
    lease = await metadata_store.acquire_lease(RESOURCE, "a", 1_000)
    assert lease.epoch == 1 and lease.holder == "a"
    renewed = await metadata_store.renew_lease(RESOURCE, "a", lease.epoch, LONG_TTL)
    assert renewed.epoch == lease.epoch
    assert renewed.expires_at_ms > lease.expires_at_ms
    again = await metadata_store.acquire_lease(RESOURCE, "a", LONG_TTL)  # re-acquire while live
    assert again.epoch == lease.epoch

    for holder, epoch in [("b", lease.epoch), ("a", lease.epoch - 1), ("a", lease.epoch + 1)]:
        with pytest.raises(FencedError):
            await metadata_store.renew_lease(RESOURCE, holder, epoch, LONG_TTL)
    with pytest.raises(FencedError):
        await metadata_store.renew_lease("partition/none/0", "a", 1, LONG_TTL)
    assert (await metadata_store.get_lease(RESOURCE)) == again


async def test_release_then_reacquire_increments_the_epoch(metadata_store: MetadataStore) -> None:
    first = await metadata_store.acquire_lease(RESOURCE, "a", LONG_TTL)
    # Releases by anyone but the current holder at the current epoch change nothing.
    await metadata_store.release_lease(RESOURCE, "b", first.epoch)
    await metadata_store.release_lease(RESOURCE, "a", first.epoch + 1)
    assert await metadata_store.get_lease(RESOURCE) == first

    await metadata_store.release_lease(RESOURCE, "a", first.epoch)
    released = await metadata_store.get_lease(RESOURCE)
    assert released is not None and released.expires_at_ms <= await metadata_store.now_ms()
    await metadata_store.release_lease(RESOURCE, "a", first.epoch)  # twice: still released
    assert await metadata_store.get_lease(RESOURCE) == released

    second = await metadata_store.acquire_lease(RESOURCE, "a", LONG_TTL)
    assert second.epoch == first.epoch + 1
    await metadata_store.release_lease(RESOURCE, "a", second.epoch)
    third = await metadata_store.acquire_lease(RESOURCE, "b", LONG_TTL)
    assert third.epoch == second.epoch + 1


async def test_durable_end_offset_only_grows(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic(TOPIC, 1)
    lease = await metadata_store.acquire_lease(RESOURCE, "a", LONG_TTL)
    await metadata_store.commit_segment(make_segment(TOPIC, 0, 0, 10, lease.epoch), "a", lease.epoch)
    before = await metadata_store.list_segments(TOPIC, 0)
    for base, end in [(5, 15), (0, 10), (11, 20), (9, 10)]:
        with pytest.raises(OffsetConflictError):
            await metadata_store.commit_segment(make_segment(TOPIC, 0, base, end, lease.epoch), "a", lease.epoch)
        assert await metadata_store.get_end_offset(TOPIC, 0) == 10
        assert await metadata_store.list_segments(TOPIC, 0) == before
    await metadata_store.commit_segment(make_segment(TOPIC, 0, 10, 15, lease.epoch), "a", lease.epoch)
    assert await assert_contiguous(metadata_store) == 15


async def test_segments_never_overlap(metadata_store: MetadataStore) -> None:
    await metadata_store.create_topic(TOPIC, 1)
    async with agents(metadata_store, 2) as (a, b):
        la = await a.acquire_lease(RESOURCE, "a", LONG_TTL)
        await a.commit_segment(make_segment(TOPIC, 0, 0, 4, la.epoch), "a", la.epoch)
        await a.release_lease(RESOURCE, "a", la.epoch)
        lb = await b.acquire_lease(RESOURCE, "b", LONG_TTL)
        # Both agents race to write [4, …) with different sizes: only the leader's lands,
        # and neither a stale leader nor a conflicting base can produce an overlap.
        outcomes = await asyncio.gather(
            a.commit_segment(make_segment(TOPIC, 0, 4, 9, la.epoch), "a", la.epoch),
            b.commit_segment(make_segment(TOPIC, 0, 4, 6, lb.epoch), "b", lb.epoch),
            b.commit_segment(make_segment(TOPIC, 0, 4, 8, lb.epoch), "b", lb.epoch),
            b.commit_segment(make_segment(TOPIC, 0, 3, 7, lb.epoch), "b", lb.epoch),
            return_exceptions=True,
        )
        assert isinstance(outcomes[0], FencedError)
        assert sum(o is None for o in outcomes) == 1
        assert isinstance(outcomes[3], OffsetConflictError)
        end = await assert_contiguous(metadata_store)
        assert end in (6, 8)
        await b.commit_segment(make_segment(TOPIC, 0, end, end + 1, lb.epoch), "b", lb.epoch)
        assert await assert_contiguous(metadata_store) == end + 1


# A writer process: take the lease, commit one segment at the durable end, release; repeat.
WRITER = """
import asyncio, os, sys
from streamhouse.storage.errors import LeaseHeldError
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.model import SegmentInfo, partition_resource

async def main(url: str, topic: str, rounds: int) -> None:
    store = await open_metadata_store(url)
    me, resource = f"proc-{os.getpid()}", partition_resource(topic, 0)
    try:
        while rounds:
            try:
                lease = await store.acquire_lease(resource, me, 60_000)
            except LeaseHeldError:
                await asyncio.sleep(0.001)
                continue
            end = await store.get_end_offset(topic, 0)
            key = f"k/{end}-{lease.epoch}"
            segment = SegmentInfo(topic, 0, end, end + 2, 0, 0, 1, key, lease.epoch, 8, 0)
            await store.commit_segment(segment, me, lease.epoch)
            await store.release_lease(resource, me, lease.epoch)
            rounds -= 1
    finally:
        await store.close()

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
"""


async def test_writer_processes_take_turns(metadata_store: MetadataStore) -> None:
    # Separate processes: for SQLite only the file lock (BEGIN IMMEDIATE) can keep them apart.
    await metadata_store.create_topic(TOPIC, 1)
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", WRITER, metadata_store.url, TOPIC, "5", stderr=asyncio.subprocess.PIPE
        )
        for _ in range(4)
    ]
    for proc in procs:
        _, stderr = await proc.communicate()
        assert proc.returncode == 0, stderr.decode()
    segments = await metadata_store.list_segments(TOPIC, 0)
    assert await assert_contiguous(metadata_store) == 40
    # Every segment was written under its own lease acquisition.
    assert [s.epoch for s in segments] == list(range(1, 21))


# -- randomized: holders acquire, renew, release, commit and let leases expire ----------------------
HOLDERS = ("a", "b", "c")
# (operation, holder, ttl or base offset shift, epoch shift: -1 plays a holder's stale incarnation)
Step = tuple[str, str, int, int]
epoch_shifts = st.sampled_from([0, 0, 0, -1])
ops = st.one_of(
    st.tuples(st.just("acquire"), st.sampled_from(HOLDERS), st.sampled_from([1, LONG_TTL]), st.just(0)),
    st.tuples(st.just("renew"), st.sampled_from(HOLDERS), st.sampled_from([1, LONG_TTL]), epoch_shifts),
    st.tuples(st.just("release"), st.sampled_from(HOLDERS), st.just(0), epoch_shifts),
    st.tuples(st.just("commit"), st.sampled_from(HOLDERS), st.sampled_from([0, 0, 0, -1, 1]), epoch_shifts),
    st.tuples(st.just("wait"), st.just(""), st.just(0), st.just(0)),
)


@dataclass
class Model:
    """What the database must hold, tracked from the outcomes it reported."""

    end: int = 0
    lease: tuple[str, int] | None = None  # (holder, epoch) of the lease row
    live: bool | None = None  # True: certainly unexpired, False: certainly expired, None: unknown
    believed: dict[str, int] = field(default_factory=dict)  # the epoch each holder thinks it has

    def acquired(self, holder: str, lease: Lease) -> None:
        if self.lease is None:
            assert lease.epoch == 1
        elif self.lease[0] == holder and self.live is not False:
            assert lease.epoch in (self.lease[1], self.lease[1] + 1)
            assert self.live is None or lease.epoch == self.lease[1]
        else:
            assert self.live is not True, "took a lease that was certainly live"
            assert lease.epoch == self.lease[1] + 1
        self.lease = (holder, lease.epoch)
        self.believed[holder] = lease.epoch


@settings(
    max_examples=40,
    deadline=None,
    # One store (one database) serves every example; each example uses its own topic.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(ops, min_size=1, max_size=30))
async def test_random_holders_keep_the_log_consistent(metadata_store: MetadataStore, steps: list[Step]) -> None:
    topic = f"r{len(await metadata_store.list_topics())}"
    resource = partition_resource(topic, 0)
    await metadata_store.create_topic(topic, 1)
    model = Model()
    for op, holder, arg, shift in steps:
        epoch = max(1, model.believed.get(holder, 1) + shift)
        current = model.lease == (holder, epoch)
        if op == "acquire":
            try:
                model.acquired(holder, await metadata_store.acquire_lease(resource, holder, arg))
                model.live = True if arg == LONG_TTL else None
            except LeaseHeldError as err:
                assert model.lease is not None and err.holder == model.lease[0] != holder
                assert model.live is not False, "refused a lease that was certainly expired"
        elif op == "renew":
            try:
                renewed = await metadata_store.renew_lease(resource, holder, epoch, arg)
                assert current and renewed.epoch == epoch
                model.live = True if arg == LONG_TTL else None
            except FencedError:
                assert not current
        elif op == "release":
            await metadata_store.release_lease(resource, holder, epoch)
            if current:
                model.live = False
        elif op == "commit":
            base = max(0, model.end + arg)
            segment = make_segment(topic, 0, base, base + 3, epoch)
            try:
                await metadata_store.commit_segment(segment, holder, epoch)
                assert current and base == model.end, "accepted a commit that is not current"
                model.end = segment.end_offset
            except FencedError:
                assert not current
            except OffsetConflictError:
                assert current and base != model.end
        else:
            await asyncio.sleep(0.005)  # longer than the 1 ms ttl: any short lease is now expired
            if model.live is None:
                model.live = False
        assert await assert_contiguous(metadata_store, topic) == model.end
