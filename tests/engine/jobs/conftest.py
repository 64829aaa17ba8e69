from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from streamhouse.client.client import Client
from tests.engine.jobs.embedded import open_engine


@pytest.fixture
def sh(tmp_path: Path) -> Iterator[Client]:
    """An embedded engine with fast leases (tests/engine/jobs/embedded.py)."""
    with open_engine(tmp_path) as client:
        yield client
