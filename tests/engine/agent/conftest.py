"""Shared fixtures of the agent tests: one PartitionManager over SQLite + a local object store and
over PostgreSQL + SeaweedFS (the merger, reconciler and durable group-commit tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.partitions import PartitionManager

BOTH_STORES = ["sqlite-local", "postgresql-s3"]


def store_urls(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """AgentConfig's store fields for the fixture's param (one of BOTH_STORES)."""
    if request.param == "postgresql-s3":
        url, endpoint = request.getfixturevalue("s3_url")
        return {"metadata_url": request.getfixturevalue("pg_url"), "object_store_url": url, "s3_endpoint": endpoint}
    return {"metadata_url": f"sqlite:///{tmp_path / 'meta.db'}", "object_store_url": f"file://{tmp_path / 'objects'}"}


@pytest.fixture(params=BOTH_STORES)
async def agent(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[PartitionManager]:
    """A manager whose size/age rolls are far away (a module may define its own `agent`)."""
    config = AgentConfig(
        data_dir=str(tmp_path / "agent"), agent_id="a", roll_age_ms=600_000, **store_urls(request, tmp_path)
    )
    manager = await PartitionManager.start(config)
    yield manager
    await manager.close()
