"""The lease helper (engine/agent/leases.py) every leased thing uses — partitions, jobs, Kafka
groups — on SQLite and PostgreSQL: acquire with epoch fencing, the three take-back rules,
renew, a lost lease stopping its holder once, release.

Separate store instances on one URL stand in for separate agents (as in tests/storage/test_fencing.py).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest

from streamhouse.agent.leases import HeldLease, HeldLeases, Leases, TakeBack
from streamhouse.storage.errors import FencedError, LeaseHeldError, StorageUnavailableError
from streamhouse.storage.metadata import MetadataStore, open_metadata_store

RESOURCE = "job/report"
LONG_TTL = 60_000


def leases(store: MetadataStore, holder: str, ttl_ms: int = LONG_TTL) -> Leases:
    return Leases(store, holder=holder, agent_id=holder.partition("@")[0], ttl_ms=ttl_ms)


async def expiry(store: MetadataStore) -> int:
    stored = await store.get_lease(RESOURCE)
    assert stored is not None
    return stored.expires_at_ms


class Lost:
    """An on_lost callback that records what it was told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, FencedError]] = []

    async def __call__(self, key: str, error: FencedError) -> None:
        self.calls.append((key, error))


async def test_acquire_fences_by_epoch_and_names_the_holder(metadata_store: MetadataStore) -> None:
    a, b = leases(metadata_store, "a@h:1", ttl_ms=200), leases(metadata_store, "b@h:2")
    before = time.monotonic()
    first = await a.acquire(RESOURCE)
    assert (first.resource, first.holder, first.epoch, first.ttl_ms) == (RESOURCE, "a@h:1", 1, 200)
    assert before <= first.renewed_at <= time.monotonic()
    again = await a.acquire(RESOURCE)  # already this holder's: same epoch
    assert (again.holder, again.epoch) == (first.holder, first.epoch)
    with pytest.raises(LeaseHeldError) as held:
        await b.acquire(RESOURCE, take_back="new-epoch")  # take-back never touches another agent's lease
    assert held.value.holder == "a@h:1"
    await asyncio.sleep(0.3)  # a's lease expires unrenewed
    second = await b.acquire(RESOURCE)
    assert second.epoch == first.epoch + 1
    with pytest.raises(FencedError):
        await a.renew(first)


@pytest.mark.parametrize(
    ("take_back", "earlier_self", "same_holder"),
    [
        ("nobody", "held", "same epoch"),
        ("earlier-self", "new epoch", "same epoch"),
        ("new-epoch", "new epoch", "new epoch"),
    ],
)
async def test_take_back(
    metadata_store: MetadataStore, take_back: TakeBack, earlier_self: str, same_holder: str
) -> None:
    """An earlier process of this agent (same agent id, another address) and this very holder."""
    earlier = await leases(metadata_store, "a@h:1").acquire(RESOURCE)
    now = leases(metadata_store, "a@h:2")
    if earlier_self == "held":
        with pytest.raises(LeaseHeldError):
            await now.acquire(RESOURCE, take_back=take_back)
        await leases(metadata_store, "a@h:1").release(earlier)
        mine = await now.acquire(RESOURCE, take_back=take_back)
    else:
        mine = await now.acquire(RESOURCE, take_back=take_back)
    assert mine.epoch == earlier.epoch + 1 and mine.holder == "a@h:2"
    with pytest.raises(FencedError):
        await leases(metadata_store, "a@h:1").renew(earlier)
    again = await now.acquire(RESOURCE, take_back=take_back)
    assert again.epoch == (mine.epoch if same_holder == "same epoch" else mine.epoch + 1)
    if same_holder == "new epoch":
        with pytest.raises(FencedError):
            await now.renew(mine)  # the earlier writer of this very process is fenced too
    stored = await metadata_store.get_lease(RESOURCE)
    assert stored is not None and (stored.holder, stored.epoch) == ("a@h:2", again.epoch)


async def test_renew_keeps_the_epoch_and_release_frees_it(metadata_store: MetadataStore) -> None:
    a = leases(metadata_store, "a@h:1", ttl_ms=1_000)
    lease = await a.acquire(RESOURCE)
    expires = await expiry(metadata_store)
    await asyncio.sleep(0.05)
    renewed = await a.renew(lease)
    assert (renewed.epoch, renewed.holder) == (lease.epoch, lease.holder) and renewed.renewed_at > lease.renewed_at
    assert await expiry(metadata_store) > expires
    await a.release(renewed)
    await a.release(renewed)  # twice: a no-op
    other = await leases(metadata_store, "b@h:2").acquire(RESOURCE)  # at once, not a TTL later
    assert other.epoch == lease.epoch + 1
    await a.release(renewed)  # a stale release leaves the new holder alone
    assert await metadata_store.get_lease(RESOURCE) is not None
    with pytest.raises(LeaseHeldError):
        await a.acquire(RESOURCE)


async def test_fresh_is_half_the_ttl() -> None:
    lease = HeldLease(RESOURCE, "a@h:1", 1, 1_000, renewed_at=100.0)
    assert lease.fresh(now=100.49) and not lease.fresh(now=100.5)


async def test_a_lost_lease_stops_its_holder_once(metadata_store: MetadataStore) -> None:
    """Agent a pauses past its TTL, b takes one of its leases: a's renew round calls on_lost for
    that one (once, then forgets it) and keeps the other."""
    b_store = await open_metadata_store(metadata_store.url)
    try:
        lost = Lost()
        held: HeldLeases[str] = HeldLeases(leases(metadata_store, "a@h:1", ttl_ms=200), lost)
        for key in ("x", "y"):
            held.add(key, await held.leases.acquire(f"job/{key}"))
        await asyncio.sleep(0.3)
        taken = await leases(b_store, "b@h:2").acquire("job/x")
        await held.renew_all()
        assert [(key, type(error)) for key, error in lost.calls] == [("x", FencedError)]
        assert "x" not in held and list(held) == ["y"] and len(held) == 1
        assert not await held.renew("x") and not await held.confirm("x")
        await held.renew_all()
        assert len(lost.calls) == 1  # never again, never under the old epoch
        stored = await metadata_store.get_lease("job/x")
        assert stored is not None and (stored.holder, stored.epoch) == ("b@h:2", taken.epoch)
        y = await metadata_store.get_lease("job/y")
        assert y is not None and y.holder == "a@h:1" and y.expires_at_ms > await metadata_store.now_ms()
        await held.release("y")
        assert "y" not in held
        assert (await leases(b_store, "b@h:2").acquire("job/y")).epoch == 2
    finally:
        await b_store.close()


async def test_confirm_renews_only_a_lease_past_half_its_ttl(metadata_store: MetadataStore) -> None:
    held: HeldLeases[str] = HeldLeases(leases(metadata_store, "a@h:1", ttl_ms=LONG_TTL), Lost())
    lease = await held.leases.acquire(RESOURCE)
    held.add("k", lease)
    expires = await expiry(metadata_store)
    await asyncio.sleep(0.05)
    assert await held.confirm("k")
    assert held.get("k") == lease  # fresh: the store was not asked
    assert await expiry(metadata_store) == expires
    held.add("k", dataclasses.replace(lease, renewed_at=time.monotonic() - LONG_TTL / 1000))  # "paused"
    assert await held.confirm("k")
    confirmed = held.get("k")
    assert confirmed is not None and confirmed.fresh() and confirmed.epoch == lease.epoch
    assert await expiry(metadata_store) > expires


async def test_a_store_error_keeps_the_lease(metadata_store: MetadataStore) -> None:
    """An unreachable store is not a lost lease: the round stops with the error (or, with
    keep_going, logs it per lease) and the lease stays held for the next round."""
    down = await open_metadata_store(metadata_store.url)
    lost = Lost()
    held: HeldLeases[str] = HeldLeases(leases(down, "a@h:1"), lost)
    lease = await held.leases.acquire(RESOURCE)
    held.add("k", lease)
    await down.close()
    with pytest.raises(StorageUnavailableError):
        await held.renew_all()
    await held.renew_all(keep_going=True)
    assert held.get("k") == lease and not lost.calls
    stored = await metadata_store.get_lease(RESOURCE)
    assert stored is not None and (stored.holder, stored.epoch) == ("a@h:1", lease.epoch)
