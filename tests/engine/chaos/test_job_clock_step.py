"""A continuous job keeps checkpointing across a wall-clock step back (found by `streamhouse
chaos`, seed 19: a clock-step of +7 min on the agent running the job, then back, held every
checkpoint for 7 minutes, so the job's results stopped moving and the CI run timed out).

The step goes through storage/clock.py's offset file, as the harness steps an agent's clock."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import streamhouse
from streamhouse.client.client import Client
from streamhouse.storage import clock

STEP_MS = 3_600_000


@pytest.fixture
def stepped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Client, Path]]:
    offset_file = tmp_path / "clock"
    offset_file.write_text("0")
    monkeypatch.setattr(clock, "_OFFSET_FILE", str(offset_file))
    with streamhouse.open(tmp_path / "data") as client:
        yield client, offset_file


def step(offset_file: Path, ms: int) -> None:
    offset_file.write_text(str(ms))
    time.sleep(clock._REREAD_S * 2)  # now_ms reads the file again at most every 200 ms


def test_a_job_checkpoints_after_the_clock_steps_back(stepped: tuple[Client, Path]) -> None:
    sh, offset_file = stepped
    sh.sql("CREATE TOPIC src (v BIGINT) WITH (partitions = 2)")
    sh.sql("CREATE MATERIALIZED VIEW out WITH ('checkpoint-interval' = '100ms') AS SELECT v FROM src")
    sh.produce_batch("src", [{"v": i} for i in range(10)])
    sh.wait_for_job("out", timeout=30)
    step(offset_file, STEP_MS)  # a checkpoint taken while the clock is an hour ahead ...
    sh.produce_batch("src", [{"v": i} for i in range(10, 20)])
    sh.wait_for_job("out", timeout=30)
    step(offset_file, 0)  # ... and the clock back: the next checkpoint is not an hour away
    sh.produce_batch("src", [{"v": i} for i in range(20, 30)])
    sh.wait_for_job("out", timeout=15)
    assert sorted(r["v"] for r in sh.sql("SELECT v FROM out").to_pylist()) == list(range(30))
