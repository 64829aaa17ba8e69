"""The group coordinator's rules (engine/kafka/groups.py) one by one, in-process: member ids
(KIP-394), the join barrier, generations, errors on stale or unknown members, a rebalance
when a member joins or leaves, and session expiry. The end-to-end behaviour with real
clients is in tests/engine/kafka/test_kafka_groups.py."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from streamhouse.kafka import errors as codes
from streamhouse.kafka.groups import COMPLETING, EMPTY, PREPARING, STABLE, Coordinator


def _join(member_id: str = "", *, session_ms: int = 10_000, protocols: tuple[str, ...] = ("range",)) -> dict[str, Any]:
    return {
        "group_id": "g", "member_id": member_id, "group_instance_id": None, "protocol_type": "consumer",
        "session_timeout_ms": session_ms, "rebalance_timeout_ms": 2_000,
        "protocols": [{"name": p, "metadata": p.encode()} for p in protocols],
    }  # fmt: skip


async def _member(c: Coordinator, **kw: Any) -> dict[str, Any]:
    first = await c.join(_join(**kw), 5, "client", "host")
    assert first["error_code"] == codes.MEMBER_ID_REQUIRED and first["member_id"]
    return await c.join(_join(first["member_id"], **kw), 5, "client", "host")


def _sync(member_id: str, generation: int, assignments: dict[str, bytes] | None = None) -> dict[str, Any]:
    given = [{"member_id": m, "assignment": a} for m, a in (assignments or {}).items()]
    return {"group_id": "g", "member_id": member_id, "generation_id": generation, "assignments": given}


def _beat(member_id: str, generation: int) -> dict[str, Any]:
    return {"group_id": "g", "member_id": member_id, "generation_id": generation}


async def test_first_member_leads_and_syncs_alone() -> None:
    c = Coordinator(initial_delay_s=0.05)
    joined = await _member(c)
    assert joined["error_code"] == 0 and joined["leader"] == joined["member_id"]
    assert joined["protocol_name"] == "range" and joined["generation_id"] == 1
    assert [m["metadata"] for m in joined["members"]] == [b"range"]
    assert c.groups["g"].state == COMPLETING
    synced = await c.sync(_sync(joined["member_id"], 1, {joined["member_id"]: b"all"}))
    assert (synced["error_code"], synced["assignment"]) == (0, b"all")
    assert c.groups["g"].state == STABLE
    assert c.heartbeat(_beat(joined["member_id"], 1))["error_code"] == 0


async def test_unknown_members_and_stale_generations_are_refused() -> None:
    c = Coordinator(initial_delay_s=0.05)
    joined = await _member(c)
    me = joined["member_id"]
    await c.sync(_sync(me, 1, {me: b"x"}))
    assert c.heartbeat(_beat("stranger", 1))["error_code"] == codes.UNKNOWN_MEMBER_ID
    assert c.heartbeat(_beat(me, 0))["error_code"] == codes.ILLEGAL_GENERATION
    assert (await c.sync(_sync(me, 7)))["error_code"] == codes.ILLEGAL_GENERATION
    assert (await c.join(_join("made-up"), 5, "c", "h"))["error_code"] == codes.UNKNOWN_MEMBER_ID
    assert c.generation_error("g", me, 0) == codes.ILLEGAL_GENERATION
    assert c.generation_error("g", "", -1) == 0  # a simple consumer's commit


async def test_a_joining_member_rebalances_the_group() -> None:
    c = Coordinator(initial_delay_s=0.05)
    first = await _member(c)
    a = first["member_id"]
    await c.sync(_sync(a, 1, {a: b"everything"}))
    second = asyncio.ensure_future(_member(c))
    await asyncio.sleep(0.05)
    assert c.groups["g"].state == PREPARING
    assert c.heartbeat(_beat(a, 1))["error_code"] == codes.REBALANCE_IN_PROGRESS
    assert not second.done()  # the barrier waits for the known member to rejoin
    rejoined = await c.join(_join(a), 5, "client", "host")
    b_joined = await second
    assert rejoined["generation_id"] == b_joined["generation_id"] == 2
    assert rejoined["leader"] == a and len(rejoined["members"]) == 2 and b_joined["members"] == []
    b = b_joined["member_id"]
    follower = asyncio.ensure_future(c.sync(_sync(b, 2)))
    await asyncio.sleep(0.01)
    assert not follower.done()  # followers wait for the leader's assignment
    assert (await c.sync(_sync(a, 2, {a: b"half-a", b: b"half-b"})))["assignment"] == b"half-a"
    assert (await follower)["assignment"] == b"half-b"


async def test_leave_and_session_expiry() -> None:
    c = Coordinator(initial_delay_s=0.05)
    a = (await _member(c, session_ms=100))["member_id"]
    await c.sync(_sync(a, 1, {a: b"x"}))
    c.reap(time.monotonic() + 0.05)
    assert a in c.groups["g"].members
    c.reap(time.monotonic() + 0.5)  # no heartbeat for longer than the session timeout
    assert c.groups["g"].members == {} and c.groups["g"].state == EMPTY
    b = (await _member(c))["member_id"]
    left = c.leave({"group_id": "g", "members": [{"member_id": b}, {"member_id": "ghost"}]}, 3)
    assert [m["error_code"] for m in left["members"]] == [0, codes.UNKNOWN_MEMBER_ID]
    assert c.groups["g"].state == EMPTY


async def test_members_without_a_common_protocol_are_refused() -> None:
    c = Coordinator(initial_delay_s=0.05)
    a = asyncio.ensure_future(_member(c, protocols=("range",)))
    b = asyncio.ensure_future(_member(c, protocols=("roundrobin",)))
    results = await asyncio.gather(a, b)
    assert {r["error_code"] for r in results} == {23}  # INCONSISTENT_GROUP_PROTOCOL


async def test_a_restarted_static_member_keeps_its_place_without_a_rebalance() -> None:
    c = Coordinator(initial_delay_s=0.05)

    def static(member_id: str, instance: str) -> dict[str, Any]:
        return dict(_join(member_id), group_instance_id=instance)

    a_join, b_join = await asyncio.gather(
        c.join(static("", "i-a"), 5, "c", "h"), c.join(static("", "i-b"), 5, "c", "h")
    )
    assert a_join["error_code"] == b_join["error_code"] == 0  # static members need no second join
    leader = a_join["leader"]
    follower = b_join["member_id"] if leader == a_join["member_id"] else a_join["member_id"]
    instance = "i-b" if follower == b_join["member_id"] else "i-a"
    waiting = asyncio.ensure_future(c.sync(_sync(follower, 1)))
    await c.sync(_sync(leader, 1, {leader: b"mine", follower: b"yours"}))
    assert (await waiting)["assignment"] == b"yours"
    # The follower restarts: same instance id, new member id, same generation and assignment.
    again = await c.join(static("", instance), 5, "c", "h")
    assert again["error_code"] == 0 and again["generation_id"] == 1 and again["member_id"] != follower
    assert c.groups["g"].state == STABLE
    assert (await c.sync(_sync(again["member_id"], 1)))["assignment"] == b"yours"
    assert c.heartbeat(_beat(follower, 1))["error_code"] == codes.UNKNOWN_MEMBER_ID  # the old id is gone
    assert c.heartbeat(_beat(leader, 1))["error_code"] == 0  # the leader saw no rebalance
