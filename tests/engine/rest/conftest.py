"""One real agent per test module for the REST tests: `streamhouse serve` on PostgreSQL and
SeaweedFS with its HTTP face on a free port, and a small urllib client for it."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tests.agent_process import AgentLauncher, AgentProcess
from tests.services.postgres import _fresh_database
from tests.services.seaweedfs import S3Server


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Rest:
    """JSON over HTTP to one agent; every answer comes back, errors included."""

    def __init__(self, base: str) -> None:
        self.base = base

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        request = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Reply(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, dict(e.headers), e.read())

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Reply:
        return self.call("POST", path, body, **kwargs)


def assert_error(reply: Reply, status: int, code: str | None = None) -> dict[str, str]:
    """The one error body: status, code and message, nothing else."""
    assert reply.status == status, (reply.status, reply.body)
    body = reply.json()
    assert set(body) == {"status", "code", "message"}, body
    assert body["message"]
    if code is not None:
        assert body["code"] == code, body
    return body  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def rest_agent(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str, s3_server: S3Server, s3_bucket: str
) -> Iterator[AgentProcess]:
    workdir = tmp_path_factory.mktemp("rest")
    databases = _fresh_database(postgres_server)
    pg_url = next(databases)
    s3 = f"s3://{s3_bucket}/{uuid.uuid4().hex[:16]}"
    try:
        with AgentLauncher(workdir) as launcher:
            yield launcher.start(
                *("--data-dir", str(workdir / "a"), "--metadata", pg_url, "--object-store", s3),
                *("--s3-endpoint", s3_server.endpoint),
                http_port=0,
            )
    finally:
        next(databases, None)  # runs the generator on: it drops the database


@pytest.fixture(scope="module")
def rest(rest_agent: AgentProcess) -> Rest:
    return Rest(f"http://127.0.0.1:{rest_agent.http_port}")
