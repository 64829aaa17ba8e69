"""The classic consumer-group protocol (JoinGroup/SyncGroup/Heartbeat/LeaveGroup), one
coordinator per agent, for the groups Kafka clients address to it.

Membership lives in memory: it is rebuilt by the clients themselves after a coordinator
restart (they rejoin). Committed offsets are not here: they are the same store our SDK and
CLI use (the front-end contract's commit_offsets / committed_offsets, engine/api/contract.py),
so a group has one set of offsets whichever API wrote them.

A rebalance waits for every known member to rejoin (or its rebalance timeout, after which
the missing ones are dropped); a new group waits `initial_delay_s` to gather its first
members, as Kafka's group.initial.rebalance.delay.ms does. Members that stop heartbeating
for their session timeout are removed by a reaper that wakes every `reap_interval_s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from streamhouse.kafka import errors as codes

Body = dict[str, Any]
EMPTY, PREPARING, COMPLETING, STABLE, DEAD = "Empty", "PreparingRebalance", "CompletingRebalance", "Stable", "Dead"
INCONSISTENT_GROUP_PROTOCOL = 23


@dataclass(eq=False)
class Member:
    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocols: list[tuple[str, bytes]]
    last_seen: float = field(default_factory=time.monotonic)
    assignment: bytes = b""
    join: asyncio.Future[Body] | None = None
    sync: asyncio.Future[tuple[int, bytes]] | None = None

    def metadata(self, protocol: str | None) -> bytes:
        return next((m for name, m in self.protocols if name == protocol), b"")


@dataclass(eq=False)
class Group:
    group_id: str
    state: str = EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str = ""
    members: dict[str, Member] = field(default_factory=dict)
    pending: set[str] = field(default_factory=set)  # ids handed out with MEMBER_ID_REQUIRED
    timer: asyncio.TimerHandle | None = None
    initial: bool = False  # a new group's first rebalance: wait out the initial delay


class Coordinator:
    def __init__(self, *, initial_delay_s: float = 0.5, reap_interval_s: float = 0.5) -> None:
        self.groups: dict[str, Group] = {}
        self.initial_delay_s = initial_delay_s
        self.reap_interval_s = reap_interval_s
        self._reaper: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reaper = asyncio.ensure_future(self._reap_forever())

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        for group in self.groups.values():
            self._fail_waiters(group, codes.NOT_COORDINATOR)

    def drop(self, gid: str) -> None:
        """Forget a group another agent now coordinates; its waiting members are told so."""
        group = self.groups.pop(gid, None)
        if group is not None:
            if group.timer is not None:
                group.timer.cancel()
            self._fail_waiters(group, codes.NOT_COORDINATOR)

    # -- join -----------------------------------------------------------------------------------
    async def join(self, body: Body, version: int, client_id: str, client_host: str) -> Body:
        gid, member_id, instance = body["group_id"], body["member_id"], body["group_instance_id"]
        group = self.groups.setdefault(gid, Group(gid))
        protocols = [(p["name"], bytes(p["metadata"])) for p in body["protocols"]]
        if not protocols or (group.members and body["protocol_type"] != group.protocol_type):
            return join_error(INCONSISTENT_GROUP_PROTOCOL, member_id)
        if not member_id:
            member_id = f"{client_id or 'member'}-{uuid.uuid4()}"
            if instance is not None:
                static = self._replace_static(group, instance, member_id, protocols)
                if static is not None:
                    return static
            elif version >= 4:
                # KIP-394: the client must come back with this id, so a lost response leaves no ghost.
                group.pending.add(member_id)
                return join_error(codes.MEMBER_ID_REQUIRED, member_id)
        elif member_id not in group.members and member_id not in group.pending:
            return join_error(codes.UNKNOWN_MEMBER_ID, member_id)
        group.pending.discard(member_id)
        rebalance_ms = body["rebalance_timeout_ms"] if body["rebalance_timeout_ms"] > 0 else body["session_timeout_ms"]
        member = group.members.get(member_id)
        if member is not None and group.state == STABLE and member.protocols == protocols and member_id != group.leader:
            member.last_seen = time.monotonic()
            return self._join_response(group, member)  # nothing changed: no rebalance
        if member is None:
            member = Member(member_id, instance, client_id, client_host, body["session_timeout_ms"], rebalance_ms, [])
            group.members[member_id] = member
        member.protocols, member.session_timeout_ms, member.rebalance_timeout_ms = (
            protocols,
            body["session_timeout_ms"],
            rebalance_ms,
        )
        member.last_seen = time.monotonic()
        if member.join is not None and not member.join.done():
            member.join.set_result(join_error(codes.REBALANCE_IN_PROGRESS, member_id))
        member.join = asyncio.get_running_loop().create_future()
        group.protocol_type = body["protocol_type"]
        future = member.join
        if group.state != PREPARING:
            self._prepare(group)
        self._maybe_complete(group)
        return await future

    def _replace_static(
        self, group: Group, instance: str, member_id: str, protocols: list[tuple[str, bytes]]
    ) -> Body | None:
        """KIP-345 static membership, the cheap part: a restarted member with a known
        group.instance.id takes its old place under a new member id; in a stable group, with
        the same protocols and not as leader, it keeps its assignment and nobody rebalances.
        The old member id is no longer known (UNKNOWN_MEMBER_ID)."""
        old = next((m for m in group.members.values() if m.instance_id == instance), None)
        if old is None:
            return None
        del group.members[old.member_id]
        if old.join is not None and not old.join.done():
            old.join.set_result(join_error(codes.UNKNOWN_MEMBER_ID, old.member_id))
        if old.sync is not None and not old.sync.done():
            old.sync.set_result((codes.UNKNOWN_MEMBER_ID, b""))
        was_leader = group.leader == old.member_id
        old.member_id, old.join, old.sync, old.last_seen = member_id, None, None, time.monotonic()
        group.members[member_id] = old
        if was_leader:
            group.leader = member_id
        if group.state == STABLE and old.protocols == protocols and not was_leader:
            return self._join_response(group, old)
        return None  # joins like any member from here (a rebalance)

    def _prepare(self, group: Group) -> None:
        first = group.state == EMPTY
        for member in group.members.values():
            if member.sync is not None and not member.sync.done():
                member.sync.set_result((codes.REBALANCE_IN_PROGRESS, b""))
        group.state = PREPARING
        delay = self.initial_delay_s if first else max(m.rebalance_timeout_ms for m in group.members.values()) / 1000
        if group.timer is not None:
            group.timer.cancel()
        group.timer = asyncio.get_running_loop().call_later(delay, self._complete, group)
        group.initial = first

    def _maybe_complete(self, group: Group) -> None:
        if group.state != PREPARING or group.initial:
            return  # a new group waits out its initial delay to gather members
        if all(m.join is not None and not m.join.done() for m in group.members.values()):
            self._complete(group)

    def _complete(self, group: Group) -> None:
        if group.state != PREPARING:
            return
        if group.timer is not None:
            group.timer.cancel()
            group.timer = None
        group.initial = False
        # Members that did not rejoin in time are out.
        for member_id in [i for i, m in group.members.items() if m.join is None or m.join.done()]:
            del group.members[member_id]
        group.generation += 1
        if not group.members:
            group.state, group.leader, group.protocol = EMPTY, "", None
            return
        members = list(group.members.values())
        if group.leader not in group.members:
            group.leader = members[0].member_id
        leader = group.members[group.leader]
        common = [name for name, _ in leader.protocols if all(name in dict(m.protocols) for m in members)]
        if not common:
            for m in members:
                assert m.join is not None
                m.join.set_result(join_error(INCONSISTENT_GROUP_PROTOCOL, m.member_id))
            group.members.clear()
            group.state = EMPTY
            return
        group.protocol = common[0]
        group.state = COMPLETING
        for m in members:
            assert m.join is not None
            m.last_seen = time.monotonic()
            m.join.set_result(self._join_response(group, m))

    def _join_response(self, group: Group, member: Member) -> Body:
        members = []
        if member.member_id == group.leader:
            members = [
                {"member_id": m.member_id, "group_instance_id": m.instance_id, "metadata": m.metadata(group.protocol)}
                for m in group.members.values()
            ]
        return {
            "error_code": 0, "generation_id": group.generation, "protocol_type": group.protocol_type,
            "protocol_name": group.protocol, "leader": group.leader, "member_id": member.member_id,
            "members": members,
        }  # fmt: skip

    # -- sync, heartbeat, leave -----------------------------------------------------------------
    def _member(self, gid: str, member_id: str, generation: int) -> tuple[Group | None, Member | None, int]:
        group = self.groups.get(gid)
        member = group.members.get(member_id) if group is not None else None
        if group is None or member is None:
            return group, None, codes.UNKNOWN_MEMBER_ID
        if generation != group.generation:
            return group, member, codes.ILLEGAL_GENERATION
        member.last_seen = time.monotonic()
        if group.state == PREPARING:
            return group, member, codes.REBALANCE_IN_PROGRESS
        return group, member, 0

    async def sync(self, body: Body) -> Body:
        group, member, error = self._member(body["group_id"], body["member_id"], body["generation_id"])
        if error or group is None or member is None:
            return {"error_code": error, "assignment": b""}
        out: Body = {"error_code": 0, "protocol_type": group.protocol_type, "protocol_name": group.protocol}
        if group.state == COMPLETING and member.member_id == group.leader:
            given = {a["member_id"]: bytes(a["assignment"]) for a in body["assignments"]}
            for m in group.members.values():
                m.assignment = given.get(m.member_id, b"")
                if m.sync is not None and not m.sync.done():
                    m.sync.set_result((0, m.assignment))
            group.state = STABLE
        if group.state == STABLE:
            return dict(out, assignment=member.assignment)
        member.sync = asyncio.get_running_loop().create_future()
        error, assignment = await member.sync
        return dict(out, error_code=error, assignment=assignment)

    def heartbeat(self, body: Body) -> Body:
        _, _, error = self._member(body["group_id"], body["member_id"], body["generation_id"])
        return {"error_code": error}

    def leave(self, body: Body, version: int) -> Body:
        group = self.groups.get(body["group_id"])
        leaving = [body["member_id"]] if version < 3 else [m["member_id"] for m in body["members"]]
        results = []
        for member_id in leaving:
            known = group is not None and member_id in group.members
            results.append({"member_id": member_id, "group_instance_id": None,
                            "error_code": 0 if known else codes.UNKNOWN_MEMBER_ID})  # fmt: skip
            if group is not None and known:
                self._remove(group, member_id)
        error = codes.UNKNOWN_MEMBER_ID if version < 3 and results[0]["error_code"] else 0
        return {"error_code": error, "members": results}

    def _remove(self, group: Group, member_id: str) -> None:
        member = group.members.pop(member_id)
        if member.join is not None and not member.join.done():
            member.join.set_result(join_error(codes.UNKNOWN_MEMBER_ID, member_id))
        if member.sync is not None and not member.sync.done():
            member.sync.set_result((codes.UNKNOWN_MEMBER_ID, b""))
        if not group.members:
            if group.timer is not None:
                group.timer.cancel()
                group.timer = None
            group.state, group.leader, group.protocol = EMPTY, "", None
            group.generation += 1
            return
        if group.state != PREPARING:
            self._prepare(group)
            group.initial = False
        self._maybe_complete(group)

    def generation_error(self, gid: str, member_id: str, generation: int) -> int:
        """For OffsetCommit: 0 if this member of this generation may commit (or the commit
        is a simple consumer's, generation -1 with no member)."""
        if generation < 0 and not member_id:
            return 0
        return self._member(gid, member_id, generation)[2]

    # -- session expiry -------------------------------------------------------------------------
    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(self.reap_interval_s)
            self.reap(time.monotonic())

    def reap(self, now: float) -> None:
        for group in list(self.groups.values()):
            for member_id, member in list(group.members.items()):
                waiting = member.join is not None and not member.join.done()
                if not waiting and now - member.last_seen > member.session_timeout_ms / 1000:
                    self._remove(group, member_id)

    def _fail_waiters(self, group: Group, error: int) -> None:
        for m in group.members.values():
            if m.join is not None and not m.join.done():
                m.join.set_result(join_error(error, m.member_id))
            if m.sync is not None and not m.sync.done():
                m.sync.set_result((error, b""))


def join_error(error: int, member_id: str) -> Body:
    return {"error_code": error, "generation_id": -1, "protocol_name": "", "leader": "", "member_id": member_id,
            "members": []}  # fmt: skip
