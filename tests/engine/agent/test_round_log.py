"""A periodic round (lease renewals, job placement) during a store outage says so once, with no
traceback, and once when it recovers; a bug is still logged with its traceback every round.
(The long chaos run logged a traceback per round for every PostgreSQL restart.)"""

from __future__ import annotations

import logging

import pytest

from streamhouse.agent.failures import RoundLog
from streamhouse.storage.errors import StorageUnavailableError

log = logging.getLogger("test.round_log")


def test_an_outage_is_said_once_and_a_bug_every_round(caplog: pytest.LogCaptureFixture) -> None:
    said = RoundLog("job placement round", log)
    with caplog.at_level(logging.INFO, logger=log.name):
        said.succeeded()  # nothing was failing: nothing to say
        for _ in range(5):
            said.failed(StorageUnavailableError("metadata store: connection refused"))
        said.succeeded()
        said.succeeded()
        for _ in range(2):
            said.failed(KeyError("a bug"))
    lines = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines[0] == (
        "WARNING",
        "job placement round: store unreachable (StorageUnavailableError: metadata store: connection refused);"
        " retried every round",
        False,
    )
    assert lines[1][0] == "WARNING" and lines[1][1].startswith("job placement round recovered after ")
    assert lines[2:] == [("ERROR", "job placement round failed", True)] * 2
