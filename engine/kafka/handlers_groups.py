"""Kafka group APIs over the coordinator (groups.py) and our committed-offset store:
FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch,
DescribeGroups, ListGroups, DeleteGroups.

This agent answers as the coordinator of every group (single agent). Groups that exist
only as committed offsets (written by our SDK or CLI) show as Kafka "Empty" groups.
"""

from __future__ import annotations

from typing import Any

from streamhouse.agent.service import AgentService
from streamhouse.kafka import errors as codes
from streamhouse.kafka.groups import EMPTY, Coordinator
from streamhouse.kafka.handlers import Body, Context, Node, error_code
from streamhouse.storage.errors import StreamHouseError

NON_EMPTY_GROUP = 68


class GroupHandlers:
    def __init__(self, service: AgentService, node: Node, coordinator: Coordinator) -> None:
        self.service = service
        self.node = node
        self.coordinator = coordinator
        self.by_key: dict[int, Any] = {
            10: self.find_coordinator, 11: self.join_group, 14: self.sync_group, 12: self.heartbeat,
            13: self.leave_group, 8: self.offset_commit, 9: self.offset_fetch, 15: self.describe_groups,
            16: self.list_groups, 42: self.delete_groups,
        }  # fmt: skip

    async def find_coordinator(self, body: Body, version: int, ctx: Context) -> Body:
        me = {"node_id": self.node.node_id, "host": self.node.host, "port": self.node.port}
        if version < 4:
            return {"error_code": 0, "error_message": None, **me}
        return {"coordinators": [{"key": key, "error_code": 0, **me} for key in body["coordinator_keys"]]}

    async def join_group(self, body: Body, version: int, ctx: Context) -> Body:
        response = await self.coordinator.join(body, version, ctx.client_id, ctx.client_host)
        if version < 7 and response.get("protocol_name") is None:
            response["protocol_name"] = ""
        return response

    async def sync_group(self, body: Body, version: int, ctx: Context) -> Body:
        return await self.coordinator.sync(body)

    async def heartbeat(self, body: Body, version: int, ctx: Context) -> Body:
        return self.coordinator.heartbeat(body)

    async def leave_group(self, body: Body, version: int, ctx: Context) -> Body:
        return self.coordinator.leave(body, version)

    async def offset_commit(self, body: Body, version: int, ctx: Context) -> Body:
        gid = body["group_id"]
        refused = self.coordinator.generation_error(gid, body["member_id"], body["generation_id"])
        topics = []
        for topic in body["topics"]:
            error = refused
            if not error:
                offsets = {p["partition_index"]: p["committed_offset"] for p in topic["partitions"]}
                try:
                    await self.service.commit_offsets(gid, topic["name"], offsets)
                except StreamHouseError as exc:
                    error = error_code(exc)
            parts = [{"partition_index": p["partition_index"], "error_code": error} for p in topic["partitions"]]
            topics.append({"name": topic["name"], "partitions": parts})
        return {"throttle_time_ms": 0, "topics": topics}

    async def offset_fetch(self, body: Body, version: int, ctx: Context) -> Body:
        gid = body["group_id"]
        try:
            if body["topics"] is None:
                committed = await self.service.metadata.fetch_offsets(gid)
                wanted: dict[str, list[int]] = {}
                for topic, p in sorted(committed):
                    wanted.setdefault(topic, []).append(p)
            else:
                committed = {}
                wanted = {t["name"]: t["partition_indexes"] for t in body["topics"]}
                for name in wanted:
                    committed.update(await self.service.metadata.fetch_offsets(gid, name))
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
            group = self.coordinator.groups.get(gid)
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
            stored = await self.service.metadata.fetch_offsets(gid)
            state = EMPTY if stored or group is not None else "Dead"
            out.append({"error_code": 0, "group_id": gid, "group_state": state,
                        "protocol_type": "consumer" if stored else "", "protocol_data": "", "members": []})  # fmt: skip
        return {"throttle_time_ms": 0, "groups": out}

    async def list_groups(self, body: Body, version: int, ctx: Context) -> Body:
        states: dict[str, tuple[str, str]] = {gid: (EMPTY, "consumer") for gid in await self.service.list_groups()}
        for gid, group in self.coordinator.groups.items():
            if group.members:
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
            group = self.coordinator.groups.get(gid)
            if group is not None and group.members:
                results.append({"group_id": gid, "error_code": NON_EMPTY_GROUP})
                continue
            stored = await self.service.metadata.fetch_offsets(gid)
            if not stored and group is None:
                results.append({"group_id": gid, "error_code": codes.GROUP_ID_NOT_FOUND})
                continue
            await self.service.metadata.delete_group(gid)
            self.coordinator.groups.pop(gid, None)
            results.append({"group_id": gid, "error_code": 0})
        return {"throttle_time_ms": 0, "results": results}
