"""Two real agents with `auth = "api-key"` on one metadata store and object store, in this
process: a REST produce to the agent that does not lead the partition is forwarded to the
leader with the client's own credential (engine/auth/context.py), and the agents' own keys
(engine/auth/agent_key.py) are accepted by each other (the WAL hand-over path) and revoked when
an agent stops."""

from __future__ import annotations

import asyncio
import functools
import threading
import urllib.error
import urllib.request
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from streamhouse.agent.config import AgentConfig
from streamhouse.api.values import batch_from_values
from streamhouse.auth.admin import AuthAdmin
from streamhouse.auth.agent_key import AGENTS_ORG
from streamhouse.client.forward import forward_to_leader
from streamhouse.server.agent_server import AgentServer
from streamhouse.storage.metadata.acl_sql import AclRule

T = TypeVar("T")


def post(port: int | None, path: str, body: bytes, token: str | None) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST")
    request.add_header("Content-Type", "application/json")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_forwarding_carries_credentials(tmp_path: Path) -> None:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    shared = {
        "metadata_url": f"sqlite:///{tmp_path / 'metadata.db'}",
        "object_store_url": f"file://{tmp_path / 'objects'}",
        "grpc_port": 0,
        "http_port": 0,
        "auth": "api-key",
        "snapshot_interval_ms": 0,
        "merge_interval_ms": 0,
        "reconcile_interval_ms": 0,
        "retention_check_interval_ms": 0,
    }
    a = run(AgentServer.start(AgentConfig(data_dir=str(tmp_path / "a"), **shared)))  # type: ignore[arg-type]
    b = run(AgentServer.start(AgentConfig(data_dir=str(tmp_path / "b"), **shared)))  # type: ignore[arg-type]
    try:
        admin = AuthAdmin(a.service.manager.metadata)
        run(admin.create_org("acme"))
        token = run(admin.create_key("acme", "alice")).token
        for op in ("create", "write"):  # ACLs deny by default with auth on
            run(a.service.manager.metadata.acl_add(AclRule("acme", "alice", "topic", "literal", "t", op)))
        assert post(a.http_port, "/v1/topics", b'{"topic_name": "t", "partitions_count": 1}', token)[0] == 201
        assert post(a.http_port, "/v1/topics/t/records", b'{"values": [0], "partition_id": 0}', token)[0] == 200
        # b does not lead partition 0: it forwards to a, which accepts the client's key.
        status, body = post(b.http_port, "/v1/topics/t/records", b'{"values": [1, 2], "partition_id": 0}', token)
        assert status == 200, body
        assert b'"base_offset":1' in body and b'"record_count":2' in body
        assert post(b.http_port, "/v1/topics/t/records", b'{"values": [3], "partition_id": 0}', None)[0] == 401

        agents = run(admin.keys(AGENTS_ORG))
        assert sorted(k.state for k in agents) == ["active", "active"] and all(k.admin for k in agents)
        assert b.auth is not None
        hand_over = b.auth.forward(functools.partial(forward_to_leader))
        # Agents name partitions by their stored names (acme's `t` is `acme~t`, storage/namespace.py).
        assert run(hand_over(a.address, "acme~t", 0, batch_from_values([4]))) == 3  # b's own key, accepted by a
        assert run(a.service.end_offset("acme~t", 0)) == 4
        run(b.stop(grace_s=1))
        assert sorted(k.state for k in run(admin.keys(AGENTS_ORG))) == ["active", "revoked"]
    finally:
        run(b.stop(grace_s=1))
        run(a.stop(grace_s=1))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
