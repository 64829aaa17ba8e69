"""A burst after an idle spell (issue 10, item 5): rows that arrive in event-time order within
the declared delay are never late, whatever the fetch batching, the order partitions are read
in, or idle timers; a partition that wakes holds the watermark back again.

- Through a real job (the embedded engine, and a `streamhouse serve` subprocess over gRPC):
  the README's per-minute view over a 4-partition topic, idle for longer than its
  `idle-timeout`, then 600 in-order rows in one or several produce calls: no late rows, an
  empty dead-letter topic, and the view equals the ad-hoc query over the windows that closed.
- On the operator: a round of every partition's rows is judged before the watermark moves and
  fires once; rows landing while a round reads (`pending`) and a topic waking from idle (every
  partition gets a fresh timeout) keep the idle rule from passing rows already in the log.
- Lateness is a property of each partition's row order: one big round (a view created after
  the data) and any random rounds count the same rows late.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import streamhouse
from streamhouse.client.client import Client
from streamhouse.sql.streaming.operator import WindowOperator
from streamhouse.sql.streaming.plan import plan_job
from streamhouse.sql.streaming.watermarks import Watermarks
from tests.agent_process import AgentLauncher
from tests.engine.jobs.embedded import rows, wait_for

T0 = 1_700_000_040_000  # a whole minute
BIDS = (
    "CREATE TOPIC bids (auction BIGINT, price DOUBLE, ts TIMESTAMP(3), "
    "WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (partitions = 4)"
)
PER_MINUTE = (
    "SELECT window_start, window_end, auction, count(*) AS bids, max(price) AS best "
    "FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) "
    "GROUP BY window_start, window_end, auction"
)


def job(sh: Client) -> dict[str, object]:
    (found,) = sh.sql("SHOW JOBS").to_pylist()
    return found


def burst_after_idle(sh: Client, calls: int) -> None:
    """The issue's scenario on any client: the view, an idle spell, 600 in-order rows."""
    sh.sql(BIDS)
    sh.sql(
        "CREATE MATERIALIZED VIEW bids_per_minute WITH ('dead-letter' = 'late_bids', "
        "'checkpoint-interval' = '100ms', 'idle-timeout' = '1s', 'start' = 'earliest') "
        f"AS {PER_MINUTE}"
    )
    time.sleep(2.0)  # quiet for twice the idle timeout: every partition is idle
    # 600 rows, one a second, in order; round robin over the 4 partitions, in `calls` produces.
    events = [{"auction": i % 7, "price": float(i), "ts": T0 + i * 1000} for i in range(600)]
    size = 600 // calls
    for start in range(0, 600, size):
        sh.produce_batch("bids", events[start : start + size])
    # The last row is at 599 s: the watermark (594 s) closes the first 9 minutes.
    closed = f"SELECT * FROM ({PER_MINUTE}) WHERE window_end <= TIMESTAMP '2023-11-14 22:23:00'"
    expected = rows(sh, closed)
    assert sum(int(r[3]) for r in expected) == 540  # type: ignore[call-overload]
    view = "SELECT window_start, window_end, auction, bids, best FROM bids_per_minute"
    wait_for(lambda: job(sh)["rows_in"] == 600 and len(rows(sh, view)) >= len(expected), timeout=30.0)
    assert rows(sh, view) == expected
    status = job(sh)
    assert (status["late_rows"], status["source_lag"]) == (0, 0)
    assert sh.read("late_bids").num_rows == 0  # the dead-letter topic is empty


@pytest.mark.parametrize("calls", [1, 6])
def test_a_burst_after_an_idle_spell_is_on_time(sh: Client, calls: int) -> None:
    burst_after_idle(sh, calls)


def test_a_burst_after_an_idle_spell_through_a_real_agent(tmp_path: Path) -> None:
    with AgentLauncher(tmp_path) as agents:
        agent = agents.start("--data-dir", str(tmp_path / "data"), "--durable-flush-ms", "20")
        with streamhouse.connect(agent.address) as client:
            burst_after_idle(client, calls=4)


# --- the operator: rounds -------------------------------------------------------------------

SCHEMA = pa.schema(
    [
        pa.field("_partition", pa.int32(), nullable=False),
        pa.field("_offset", pa.int64(), nullable=False),
        pa.field("k", pa.string()),
        pa.field("ts", pa.timestamp("ms")),
    ]
)
COUNTS = (
    "SELECT window_start, window_end, k, count(*) AS n FROM "
    "TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND)) GROUP BY window_start, window_end, k"
)


def operator(delay: int, idle_timeout_ms: int | None, partitions: int) -> WindowOperator:
    job = plan_job(COUNTS, {"bids": SCHEMA}.__getitem__, lambda _: ("ts", delay))
    return WindowOperator(job, idle_timeout_ms, partitions=tuple(range(partitions)))


def table(partition: int, first_offset: int, times: list[int]) -> pa.Table:
    return pa.table(
        {
            "_partition": pa.array([partition] * len(times), pa.int32()),
            "_offset": pa.array(range(first_offset, first_offset + len(times)), pa.int64()),
            "k": pa.array(["ab"[t // 1000 % 2] for t in times], pa.string()),
            "ts": pa.array(times, pa.timestamp("ms")),
        },
        schema=SCHEMA,
    )


@st.composite
def arrivals(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]]]:
    """(delay, partitions, [(partition, ts)] in arrival order): each arriving row is at most
    `delay` − 1 ms behind the largest time that arrived before it, on any partition."""
    delay = draw(st.integers(1, 3000))
    partitions = draw(st.integers(1, 4))
    top, found = 0, []
    for _ in range(draw(st.integers(1, 60))):
        ts = max(0, top + draw(st.integers(-(delay - 1), draw(st.sampled_from([2500, 30_000])))))
        top = max(top, ts)
        found.append((draw(st.integers(0, partitions - 1)), ts))
    return delay, partitions, found


@settings(max_examples=80, deadline=None)
@given(stream=arrivals(), choices=st.randoms(use_true_random=False), idle=st.sampled_from([None, 1, 1000]))
def test_rows_in_order_within_the_delay_are_never_late(
    stream: tuple[int, int, list[tuple[int, int]]], choices: random.Random, idle: int | None
) -> None:
    """Rows land in the log in arrival order, also while a round is reading; a job round reads
    every partition (in a random order, a random number of rows each), then asks which
    partitions still have unread records, and hands the round to the operator. Whatever the
    cuts, the order, the clock and the idle timeout: nothing is late."""
    delay, partitions, found = stream
    op = operator(delay, idle, partitions)
    logs: list[list[int]] = [[] for _ in range(partitions)]
    read = [0] * partitions
    landed = now = 0
    while landed < len(found) or any(read[p] < len(logs[p]) for p in range(partitions)):
        batches = {}
        for i, p in enumerate(choices.sample(range(partitions), partitions)):
            # At least one arrival a round (so the loop ends), more between the round's reads.
            for q, ts in found[landed : landed + choices.randint(int(i == 0), 3)]:
                logs[q].append(ts)
                landed += 1
            if read[p] < len(logs[p]):
                batches[p] = table(p, read[p], logs[p][read[p] : read[p] + choices.randint(1, 6)])
                read[p] += batches[p].num_rows
        pending = [p for p in range(partitions) if p not in batches and read[p] < len(logs[p])]
        now += choices.randint(0, 1500)
        assert op.process_round(batches, now, pending).late.num_rows == 0
    op.flush()
    assert op.late_rows == 0 and op.rows_in == len(found)


def test_a_round_fires_once_after_every_partition_is_seen() -> None:
    """Every partition idle, then a round with rows of all four: the first partition's rows do
    not push the watermark past the others' (the issue's 375 late rows of 600)."""
    op = operator(5000, 1000, 4)
    assert op.process_round({}, 0).stats.watermark is None
    assert op.idle_partitions(5000) == [0, 1, 2, 3]
    round_ = {p: table(p, 0, [i * 1000 for i in range(p, 600, 4)]) for p in (3, 1, 0, 2)}
    step = op.process_round(round_, 5000)
    # The least of the partitions' largest times (596 s, partition 0) − 5 s: 118 windows closed.
    assert step.late.num_rows == 0 and step.stats.watermark == 596_000 - 5000
    assert step.fired == 118 and step.output.num_rows == 2 * 118  # keys a and b in each
    assert op.late_rows == 0


def test_a_waking_partition_holds_the_watermark_back() -> None:
    op = operator(1000, 1000, 2)
    op.process_round({0: table(0, 0, [10_000]), 1: table(1, 0, [10_000])}, 0)
    assert op.watermark == 9000
    op.process_round({0: table(0, 1, [15_000])}, 900)
    op.process_round({0: table(0, 2, [20_000])}, 1800)  # partition 1 idle (since 0): 19 s
    assert op.watermark == 19_000 and op.idle_partitions(1800) == [1]
    # Partition 1 wakes in the same round as partition 0 moves on: min over both, so 0's 40 s
    # does not pass 1's 21 s.
    step = op.process_round({0: table(0, 3, [40_000]), 1: table(1, 1, [21_000])}, 1900)
    assert step.late.num_rows == 0 and op.watermark == 20_000
    # Unread records in partition 1 (pending) keep it active past its idle timeout.
    op.process_round({0: table(0, 4, [50_000])}, 2800)
    op.process_round({0: table(0, 5, [60_000])}, 3000, pending=[1])
    assert op.watermark == 20_000 and op.idle_partitions(3000) == []
    op.process_round({1: table(1, 2, [22_000, 23_000])}, 3100)
    assert op.late_rows == 0 and op.watermark == 22_000


def test_a_topic_waking_from_idle_gives_every_partition_a_fresh_timeout() -> None:
    """Every partition idle; a burst reaches partition 0 first (the producer's batch is split by
    partition): the others hold the watermark back for a full timeout, and their rows of the
    same burst are on time."""
    op = operator(5000, 1000, 4)
    op.process_round({}, 0)
    assert op.idle_partitions(2000) == [0, 1, 2, 3]
    step = op.process_round({0: table(0, 0, list(range(0, 600_000, 4000)))}, 2000)
    assert step.fired == 0 and op.watermark is None and op.idle_partitions(2000) == []
    rest = {p: table(p, 0, list(range(p * 1000, 600_000, 4000))) for p in (1, 2, 3)}
    assert op.process_round(rest, 2050).late.num_rows == 0
    assert op.watermark == 596_000 - 5000
    # Had partitions 1-3 shown nothing for a whole timeout, they would stop holding it back.
    quiet = operator(5000, 1000, 4)
    quiet.process_round({}, 0)
    quiet.process_round({0: table(0, 0, [100_000])}, 2000)
    assert quiet.process_round({}, 2999).stats.watermark is None
    assert quiet.process_round({}, 3000).stats.watermark == 95_000


def test_records_landing_behind_a_read_hold_the_watermark_back() -> None:
    """A round reads partition 0 (nothing yet), then a row lands there, then a later one in
    partition 1, which the round reads: partition 0 is past its idle timeout, but its log has a
    record the job has not read (`pending`), so partition 1's row does not make it late."""
    op = operator(1000, 1000, 2)
    op.process_round({0: table(0, 0, [1000]), 1: table(1, 0, [1000])}, 0)
    op.process_round({1: table(1, 1, [20_000])}, 900)
    op.process_round({1: table(1, 2, [30_000])}, 1800)  # partition 0 idle since 0: 29 s
    assert op.watermark == 29_000
    step = op.process_round({1: table(1, 3, [40_000])}, 2000, pending=[0])
    assert op.watermark == 29_000 and step.fired == 0
    assert op.process_round({0: table(0, 1, [32_000])}, 2050).late.num_rows == 0
    # Without the pending mark, partition 0 counts as idle and its row is late.
    blind = operator(1000, 1000, 2)
    blind.process_round({0: table(0, 0, [1000]), 1: table(1, 0, [1000])}, 0)
    blind.process_round({1: table(1, 1, [20_000])}, 900)
    blind.process_round({1: table(1, 2, [30_000])}, 1800)
    blind.process_round({1: table(1, 3, [40_000])}, 2000)
    assert blind.watermark == 39_000
    assert blind.process_round({0: table(0, 1, [32_000])}, 2050).late.num_rows == 1


def test_watermarks_count_a_partition_with_data_as_active() -> None:
    marks = Watermarks(0, 1000, partitions=(0, 1))
    marks.observe(0, 100, 0)
    marks.observe(1, 50, 0)
    marks.observe(0, 500, 2000)
    marks.observe(1, None, 2000, had_data=True)  # rows without a time, or unread records
    assert marks.current(2000) == 50 and marks.idle_partitions(2000) == []
    marks.observe(0, 600, 2500)
    marks.observe(1, None, 2500)  # nothing to read: its clock runs on from 2000
    assert marks.current(2999) == 50 and marks.current(3000) == 600 and marks.idle_partitions(3000) == [1]


# --- lateness is a property of each partition's row order ---------------------------------

WINDOWS = {
    "TUMBLE": "TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '4' SECOND)",
    "HOP": "HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '6' SECOND)",
    "CUMULATE": "CUMULATE(TABLE bids, DESCRIPTOR(ts), INTERVAL '2' SECOND, INTERVAL '6' SECOND)",
}


@st.composite
def out_of_order(draw: st.DrawFn) -> list[list[int]]:
    """Each partition's event times in offset order, out of order by up to 12 s."""
    return [draw(st.lists(st.integers(0, 40_000), max_size=25)) for _ in range(draw(st.integers(1, 3)))]


def feed(kind: str, delay: int, logs: list[list[int]], choices: random.Random | None) -> tuple[list[int], list[object]]:
    """Late row ids and outputs of a run reading `logs` in random rounds (random partition
    order and batch sizes), or all in one round (`choices` None: a view created after the
    data); every partition active (no idle timeout)."""
    sql = COUNTS.replace("TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '5' SECOND)", WINDOWS[kind])
    job = plan_job(sql, {"bids": SCHEMA}.__getitem__, lambda _: ("ts", delay))
    op = WindowOperator(job, None, partitions=tuple(range(len(logs))))
    read = [0] * len(logs)
    late: list[int] = []
    outputs: list[object] = []
    while any(read[p] < len(log) for p, log in enumerate(logs)):
        batches = {}
        order = range(len(logs)) if choices is None else choices.sample(range(len(logs)), len(logs))
        for p in order:
            if read[p] < len(logs[p]) and (choices is None or choices.random() < 0.7):
                size = len(logs[p]) if choices is None else choices.randint(1, 8)
                batches[p] = table(p, read[p], logs[p][read[p] : read[p] + size])
                read[p] += batches[p].num_rows
        step = op.process_round(batches, 0)
        if step.late.num_rows:
            partitions, offsets = step.late.column("_partition").to_pylist(), step.late.column("_offset").to_pylist()
            late += [o * 10 + p for p, o in zip(partitions, offsets, strict=True)]
        outputs += step.output.to_pylist()
    outputs += op.flush().output.to_pylist()
    return sorted(late), sorted(outputs, key=repr)


@pytest.mark.parametrize("kind", sorted(WINDOWS))
@settings(max_examples=40, deadline=None)
@given(logs=out_of_order(), delay=st.integers(0, 3000), seeds=st.tuples(st.integers(), st.integers()))
def test_lateness_does_not_depend_on_batching_or_partition_order(
    kind: str, logs: list[list[int]], delay: int, seeds: tuple[int, int]
) -> None:
    """A view created after the data (one big round) and live views (any rounds) count the
    same rows late: each row is judged against its own partition's earlier rows too. With
    TUMBLE (one window a row) the view's rows are the same as well."""
    backfill = feed(kind, delay, logs, None)
    live = feed(kind, delay, logs, random.Random(seeds[0]))
    other = feed(kind, delay, logs, random.Random(seeds[1]))
    assert backfill[0] == live[0] == other[0]
    expected_late = [
        o * 10 + p
        for p, log in enumerate(logs)
        for o, ts in enumerate(log)
        if o and _first_end(kind, ts) - 1 <= max(log[:o]) - delay
    ]
    assert live[0] == sorted(expected_late)
    if kind == "TUMBLE":
        assert backfill[1] == live[1] == other[1]


def _first_end(kind: str, ts: int) -> int:
    step = 4000 if kind == "TUMBLE" else 2000
    return ts // step * step + step


# --- records out of sight: a partition led by another agent -----------------------------------


def test_a_partition_led_elsewhere_is_idle_only_after_its_leader_could_have_rolled(tmp_path: Path) -> None:
    """Another agent's leader keeps acknowledged records out of this agent's reads until it
    rolls them into a segment (`roll_age_ms`): while another agent leads partition 1, its
    silence holds the watermark back for idle-timeout + roll age, not idle-timeout alone;
    once nobody leads it, the idle timeout alone applies."""
    from streamhouse.client.embedded import EmbeddedTransport
    from streamhouse.storage.model import partition_resource

    with streamhouse.open(tmp_path / "data", roll_age_ms=6_000) as sh:
        transport = sh.transport
        assert isinstance(transport, EmbeddedTransport)
        metadata = transport.service.metadata
        sh.sql(BIDS.replace("partitions = 4", "partitions = 2"))
        lease = transport._run(metadata.acquire_lease(partition_resource("bids", 1), "another-agent", 120_000))
        sh.sql(
            "CREATE MATERIALIZED VIEW per_minute WITH ('checkpoint-interval' = '100ms', 'idle-timeout' = '1s') "
            f"AS {PER_MINUTE}"
        )
        started = time.monotonic()
        sh.produce_batch(
            "bids", [{"auction": 1, "price": 1.0, "ts": T0 + s * 1000} for s in range(0, 200, 5)], partition=0
        )
        wait_for(lambda: job(sh)["rows_in"] == 40, timeout=30.0)
        time.sleep(max(0.0, started + 4.0 - time.monotonic()))  # past the 1 s idle timeout, well short of 1 s + 6 s
        assert sh.read("per_minute").num_rows == 0, "partition 1 stopped holding the watermark back too soon"
        transport._run(metadata.release_lease(lease.resource, lease.holder, lease.epoch))
        wait_for(lambda: sh.read("per_minute").num_rows == 3, timeout=5.0)  # minutes 0-2 closed; idle alone now
        assert time.monotonic() - started < 1.0 + 6.0
