"""One real agent (AgentServer: gRPC + HTTP + registry) started with `auth = "api-key"`, in
this process on a loop of its own thread (one agent for the whole folder keeps it fast), and
the credentials every test tries: none, malformed, wrong secret, revoked, expired, right."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from streamhouse.agent.config import AgentConfig
from streamhouse.auth import secret_hash as sh
from streamhouse.auth.admin import AuthAdmin
from streamhouse.server.agent_server import AgentServer
from streamhouse.storage.metadata.acl_sql import OPERATIONS, RESOURCE_TYPES, AclRule

T = TypeVar("T")


def http_json(base: str, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
    """One HTTP call with a bearer token: (status, the JSON answer), errors included."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def sasl_plain(port: int, token: str, **extra: Any) -> dict[str, Any]:
    """confluent-kafka settings for a SASL PLAIN login with an API key (key id / secret)."""
    key_id, secret = token.split(".")
    return {"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN", "sasl.username": key_id, "sasl.password": secret,
            "log_level": 0, **extra}  # fmt: skip


@dataclass(frozen=True)
class AuthAgent:
    server: AgentServer
    loop: asyncio.AbstractEventLoop
    grpc: str
    http: str
    good: str
    wrong: str
    revoked: str
    expired: str

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def refused(self) -> dict[str, str | None]:
        """Each credential that must be refused, by the reason it is counted under."""
        return {
            "missing": None,
            "malformed": "not-a-key",
            "wrong_secret": self.wrong,
            "revoked": self.revoked,
            "expired": self.expired,
        }


@pytest.fixture(scope="package")
def auth_agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthAgent]:
    data: Path = tmp_path_factory.mktemp("auth-agent")
    config = AgentConfig(
        data_dir=str(data),
        grpc_port=0,
        http_port=0,
        auth="api-key",
        snapshot_interval_ms=0,
        merge_interval_ms=0,
        reconcile_interval_ms=0,
        retention_check_interval_ms=0,
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="auth-agent", daemon=True)
    thread.start()

    def run(coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(60)

    server = run(AgentServer.start(config))
    admin = AuthAdmin(server.service.manager.metadata)
    run(admin.create_org("acme"))
    good = run(admin.create_key("acme", "alice")).token
    # ACLs deny by default with auth on: alice may do everything by rule (a prefix '' per type
    # and operation), so these tests exercise authentication only (test_acl_* narrow it).
    metadata = server.service.manager.metadata
    for rtype in RESOURCE_TYPES:
        for op in OPERATIONS:
            run(metadata.acl_add(AclRule("acme", "alice", rtype, "prefixed", "", op)))
    wrong = good.split(".")[0] + "." + sh.new_secret()
    revoked = run(admin.create_key("acme", "alice")).token
    run(admin.revoke(revoked.split(".")[0]))
    expired = run(admin.create_key("acme", "alice", expires_in_ms=1)).token
    time.sleep(0.05)
    try:
        yield AuthAgent(
            server,
            loop,
            server.address,
            f"http://127.0.0.1:{server.http_port}",
            good,
            wrong,
            revoked,
            expired,
        )
    finally:
        run(server.stop(grace_s=1))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
