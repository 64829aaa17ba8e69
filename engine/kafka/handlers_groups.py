"""Kafka group APIs over the coordinator (groups.py) and our committed-offset store:
FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
DescribeGroups, ListGroups, DeleteGroups.

A group's coordinator is the holder of its lease (group_leases.py): FindCoordinator takes it
or names the holder, and the member APIs and OffsetCommit/OffsetFetch answer NOT_COORDINATOR
unless this agent holds it or can claim it now. Without leases (one agent alone) this agent
coordinates every group. Groups that exist only as committed offsets (written by our SDK or
CLI) show as Kafka "Empty" groups.
"""

from __future__ import annotations

from typing import Any

from streamhouse.api.contract import FrontEnd
from streamhouse.kafka import errors as codes
from streamhouse.kafka.group_leases import GroupLeases
from streamhouse.kafka.groups import EMPTY, Coordinator, join_error
from streamhouse.kafka.handlers import Body, Context, Node, error_code
from streamhouse.kafka.registry import Broker
from streamhouse.storage import access
from streamhouse.storage import namespace as ns
from streamhouse.storage.errors import InvalidInputError, StreamHouseError

NON_EMPTY_GROUP = 68
INVALID_GROUP_ID = 24
GROUP_AUTHORIZATION_FAILED = 30


class GroupHandlers:
    def __init__(
        self, front: FrontEnd, node: Node, coordinator: Coordinator, leases: GroupLeases | None = None
    ) -> None:
        self.front = front
        self.node = node
        self.coordinator = coordinator
        self.leases = leases
        self.by_key: dict[int, Any] = {
            10: self.find_coordinator, 11: self.join_group, 14: self.sync_group, 12: self.heartbeat,
            13: self.leave_group, 8: self.offset_commit, 9: self.offset_fetch, 15: self.describe_groups,
            16: self.list_groups, 42: self.delete_groups,
        }  # fmt: skip

    async def find_coordinator(self, body: Body, version: int, ctx: Context) -> Body:
        if version < 4:
            return await self._coordinator(body["key"], body["key_type"])
        return {"coordinators": [dict(await self._coordinator(key, body["key_type"]), key=key)
                                 for key in body["coordinator_keys"]]}  # fmt: skip

    async def _coordinator(self, key: str, key_type: int) -> Body:
        out: Body = {"error_code": 0, "error_message": None, "node_id": -1, "host": "", "port": -1}
        if key_type != 0:  # 1 = transactions, which are not implemented
            return dict(out, error_code=codes.COORDINATOR_NOT_AVAILABLE, error_message="transactions are not supported")
        broker = Broker(self.node.node_id, self.node.host, self.node.port)
        if self.leases is not None:
            try:
                found = await self.leases.coordinator(key)
            except InvalidInputError as exc:
                return dict(out, error_code=INVALID_GROUP_ID, error_message=str(exc))
            if found is None:
                return dict(out, error_code=codes.COORDINATOR_NOT_AVAILABLE)
            broker = found
        return dict(out, node_id=broker.node_id, host=broker.host, port=broker.port)

    async def _not_mine(self, gid: str) -> bool:
        """True when another agent coordinates `gid` (or the store cannot say): answer
        NOT_COORDINATOR. A group whose lease is free, lapsed or an earlier run's is claimed
        here first: a client sent here by FindCoordinator elsewhere is not bounced back."""
        return self.leases is not None and not await self.leases.claim(gid)

    async def join_group(self, body: Body, version: int, ctx: Context) -> Body:
        if not access.allows("read", "group", body["group_id"]):  # ACLs (storage/access.py): Kafka's JoinGroup
            return join_error(GROUP_AUTHORIZATION_FAILED, body["member_id"])
        if await self._not_mine(body["group_id"]):
            return join_error(codes.NOT_COORDINATOR, body["member_id"])
        response = await self.coordinator.join(_in_org(body), version, ctx.client_id, ctx.client_host)
        if version < 7 and response.get("protocol_name") is None:
            response["protocol_name"] = ""
        return response

    async def sync_group(self, body: Body, version: int, ctx: Context) -> Body:
        if not access.allows("read", "group", body["group_id"]):  # as Kafka: READ on the group
            return {"error_code": GROUP_AUTHORIZATION_FAILED, "assignment": b""}
        if await self._not_mine(body["group_id"]):
            return {"error_code": codes.NOT_COORDINATOR, "assignment": b""}
        return await self.coordinator.sync(_in_org(body))

    async def heartbeat(self, body: Body, version: int, ctx: Context) -> Body:
        if not access.allows("read", "group", body["group_id"]):
            return {"error_code": GROUP_AUTHORIZATION_FAILED}
        if await self._not_mine(body["group_id"]):
            return {"error_code": codes.NOT_COORDINATOR}
        return self.coordinator.heartbeat(_in_org(body))

    async def leave_group(self, body: Body, version: int, ctx: Context) -> Body:
        if not access.allows("read", "group", body["group_id"]):
            return {"error_code": GROUP_AUTHORIZATION_FAILED, "members": []}
        if await self._not_mine(body["group_id"]):
            return {"error_code": codes.NOT_COORDINATOR, "members": []}
        return self.coordinator.leave(_in_org(body), version)

    async def offset_commit(self, body: Body, version: int, ctx: Context) -> Body:
        gid = body["group_id"]
        refused = self.coordinator.generation_error(_key(gid), body["member_id"], body["generation_id"])
        if await self._not_mine(gid):
            refused = codes.NOT_COORDINATOR
        topics = []
        for topic in body["topics"]:
            error = refused
            if not error:
                offsets = {p["partition_index"]: p["committed_offset"] for p in topic["partitions"]}
                try:
                    await self.front.commit_offsets(gid, topic["name"], offsets)
                except StreamHouseError as exc:
                    error = error_code(exc)
            parts = [{"partition_index": p["partition_index"], "error_code": error} for p in topic["partitions"]]
            topics.append({"name": topic["name"], "partitions": parts})
        return {"throttle_time_ms": 0, "topics": topics}

    async def offset_fetch(self, body: Body, version: int, ctx: Context) -> Body:
        gid = body["group_id"]
        if await self._not_mine(gid):
            return {"topics": [], "error_code": codes.NOT_COORDINATOR}
        try:
            if body["topics"] is None:
                committed = await self.front.committed_offsets(gid)
                wanted: dict[str, list[int]] = {}
                for topic, p in sorted(committed):
                    wanted.setdefault(topic, []).append(p)
            else:
                committed = {}
                wanted = {t["name"]: t["partition_indexes"] for t in body["topics"]}
                for name in wanted:
                    committed.update(await self.front.committed_offsets(gid, name))
        except StreamHouseError as exc:
            return {"topics": [], "error_code": error_code(exc)}
        topics = [
            {"name": name, "partitions": [
                {"partition_index": p, "committed_offset": committed.get((name, p), -1), "metadata": "",
                 "error_code": 0} for p in parts]}
            for name, parts in wanted.items()
        ]  # fmt: skip
        return {"throttle_time_ms": 0, "topics": topics, "error_code": 0}

    async def describe_groups(self, body: Body, version: int, ctx: Context) -> Body:
        out = []
        for gid in body["groups"]:
            group = self.coordinator.groups.get(_key(gid))
            if not access.allows("describe", "group", gid):
                out.append({"error_code": GROUP_AUTHORIZATION_FAILED, "group_id": gid, "group_state": "",
                            "protocol_type": "", "protocol_data": "", "members": []})  # fmt: skip
                continue
            if group is not None and group.members:
                members = [
                    {"member_id": m.member_id, "group_instance_id": m.instance_id, "client_id": m.client_id,
                     "client_host": m.client_host, "member_metadata": m.metadata(group.protocol),
                     "member_assignment": m.assignment}
                    for m in group.members.values()
                ]  # fmt: skip
                out.append({"error_code": 0, "group_id": gid, "group_state": group.state,
                            "protocol_type": group.protocol_type or "", "protocol_data": group.protocol or "",
                            "members": members})  # fmt: skip
                continue
            try:
                stored = await self.front.committed_offsets(gid)
            except InvalidInputError:  # an empty or over-long name: no group can have it
                out.append({"error_code": INVALID_GROUP_ID, "group_id": gid, "group_state": "",
                            "protocol_type": "", "protocol_data": "", "members": []})  # fmt: skip
                continue
            state = EMPTY if stored or group is not None else "Dead"
            out.append({"error_code": 0, "group_id": gid, "group_state": state,
                        "protocol_type": "consumer" if stored else "", "protocol_data": "", "members": []})  # fmt: skip
        return {"throttle_time_ms": 0, "groups": out}

    async def list_groups(self, body: Body, version: int, ctx: Context) -> Body:
        states: dict[str, tuple[str, str]] = {gid: (EMPTY, "consumer") for gid in await self.front.list_groups()}
        for key, group in self.coordinator.groups.items():
            gid = ns.outer(key, ns.current())  # None: another org's group
            if gid is not None and group.members and access.allows("describe", "group", gid):
                states[gid] = (group.state, group.protocol_type or "")
        wanted = set(body["states_filter"] or [])
        groups = [
            {"group_id": gid, "protocol_type": ptype, "group_state": state}
            for gid, (state, ptype) in sorted(states.items())
            if not wanted or state in wanted
        ]
        return {"throttle_time_ms": 0, "error_code": 0, "groups": groups}

    async def delete_groups(self, body: Body, version: int, ctx: Context) -> Body:
        results = []
        for gid in body["groups_names"]:
            group = self.coordinator.groups.get(_key(gid))
            if group is not None and group.members:
                results.append({"group_id": gid, "error_code": NON_EMPTY_GROUP})
                continue
            try:
                stored = await self.front.committed_offsets(gid)
            except InvalidInputError:  # an empty or over-long name: no group can have it
                results.append({"group_id": gid, "error_code": INVALID_GROUP_ID})
                continue
            if not stored and group is None:
                results.append({"group_id": gid, "error_code": codes.GROUP_ID_NOT_FOUND})
                continue
            await self.front.delete_group(gid)
            self.coordinator.groups.pop(_key(gid), None)
            results.append({"group_id": gid, "error_code": 0})
        return {"throttle_time_ms": 0, "results": results}


def _key(gid: str) -> str:
    """The coordinator's key of the request's org's group (storage/namespace.py): two orgs'
    groups of one name are two groups, and one org's members are never another's to see."""
    org = ns.current()
    return gid if org is None else f"{org}{ns.SEPARATOR}{gid}"


def _in_org(body: Body) -> Body:
    return body if ns.current() is None else dict(body, group_id=_key(body["group_id"]))
