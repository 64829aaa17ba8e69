"""Two real agents (`streamhouse serve` processes) on one PostgreSQL and one S3 prefix, with
their HTTP faces and Kafka listeners, shared by the registry tests of a module (each test uses
its own subjects and topics)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from streamhouse.devservices.ports import free_port
from tests.agent_process import AgentLauncher, AgentProcess
from tests.services.postgres import _fresh_database
from tests.services.seaweedfs import S3Server


@dataclass(frozen=True)
class RegistryAgents:
    a: AgentProcess
    b: AgentProcess
    kafka_port: int

    @property
    def url_a(self) -> str:
        return f"http://127.0.0.1:{self.a.http_port}/registry"

    @property
    def url_b(self) -> str:
        return f"http://127.0.0.1:{self.b.http_port}/registry"


@pytest.fixture(scope="module")
def agents(
    tmp_path_factory: pytest.TempPathFactory, postgres_server: str, s3_server: S3Server, s3_bucket: str
) -> Iterator[RegistryAgents]:
    tmp = tmp_path_factory.mktemp("registry")
    store = f"s3://{s3_bucket}/{uuid.uuid4().hex[:16]}"
    for pg_url in _fresh_database(postgres_server):
        with AgentLauncher(tmp) as launcher:
            common = ("--metadata", pg_url, "--object-store", store, "--s3-endpoint", s3_server.endpoint)
            port = free_port()
            a = launcher.start("--data-dir", str(tmp / "a"), *common, name="a", http_port=0, kafka_port=port)
            b = launcher.start("--data-dir", str(tmp / "b"), *common, name="b", http_port=0)
            yield RegistryAgents(a, b, port)
