"""The SDK over both transports: `client` is `streamhouse.open` (embedded, in-process) and
`streamhouse.connect` to a real agent subprocess, so every test that takes it is a contract
test of the two. A test file that needs another shape of client defines its own `client`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.client.client import Client
from streamhouse.devservices.agent import start_agent


@pytest.fixture(params=["embedded", "remote"])
def client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Client]:
    if request.param == "embedded":
        with streamhouse.open(tmp_path / "data") as c:
            yield c
        return
    with (
        start_agent(["--data-dir", str(tmp_path / "data")], log_path=tmp_path / "agent.log") as agent,
        streamhouse.connect(agent.address) as c,
    ):
        yield c
