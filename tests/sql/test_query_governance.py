"""Query governance (issue 10 item 4): no statement can take the agent down. Absurd window TVFs
are refused before running with the numbers; every statement runs under a memory cap and a time
limit (agent flags, lowered per session with SET); a statement over a limit ends with a typed
error, the same class over gRPC as embedded; a client that cancels, disconnects or is
interrupted (Ctrl-C) stops the work on the agent; and the agent answers the next statement at
once. Remote tests run a real agent subprocess and watch its CPU time to see the work stop."""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import streamhouse
from streamhouse.cli.main import main
from streamhouse.client.client import Client
from streamhouse.sql.errors import SqlError
from streamhouse.sql.query.limits import QueryLimits, SetStatement, parse_set, session_limits
from streamhouse.sql.windows.calls import MAX_WINDOWS_PER_ROW
from streamhouse.sql.windows.rewrite import rewrite_windows
from streamhouse.storage.errors import (
    InvalidInputError,
    QueryCancelledError,
    QueryMemoryExceededError,
    QueryTimeoutError,
    StreamHouseError,
)
from tests.agent_process import AgentLauncher, AgentProcess

ROWS = 2_600
T0 = 1_700_000_000_000
CREATE = "CREATE TOPIC bids (auction BIGINT, price DOUBLE, ts TIMESTAMP(3)) WITH (partitions = 1)"
HOP_1MS_1DAY = "SELECT count(*) FROM TABLE(HOP(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MILLISECOND, INTERVAL '1' DAY))"
# Minutes of CPU when left alone (a 3-way cross join of 2,600 rows into an aggregate): only a
# limit or a cancellation ends it.
ENDLESS = "SELECT a.auction, sum(a.price * b.price * c.price) FROM bids a, bids b, bids c GROUP BY 1"
# Cannot spill: string_agg holds its whole result (6.76 M strings) in one accumulator.
GREEDY = "SELECT string_agg(CAST(a.price AS VARCHAR), ',') FROM bids a, bids b"
COUNT = "SELECT count(*) AS n FROM bids"
PROMPT_S = 3.0  # "at once", with room for a loaded CI machine


def fill(client: Client) -> None:
    client.sql(CREATE)
    rows = [{"auction": i % 7, "price": i * 0.5, "ts": T0 + i * 1000} for i in range(ROWS)]
    client.produce_batch("bids", rows, partition=0, acks="durable")


def timed(client: Client, sql: str) -> tuple[pa.Table, float]:
    started = time.monotonic()
    table = client.sql(sql)
    return table, time.monotonic() - started


def answers_at_once(client: Client) -> None:
    table, elapsed = timed(client, COUNT)
    assert table.column("n").to_pylist() == [ROWS]
    assert elapsed < PROMPT_S, f"the next statement took {elapsed:.1f} s"


def cpu_seconds(agent: AgentProcess) -> float:
    """User + system CPU time of the agent process so far."""
    fields = Path(f"/proc/{agent.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_over(agent: AgentProcess, seconds: float) -> float:
    before = cpu_seconds(agent)
    time.sleep(seconds)
    return cpu_seconds(agent) - before


def assert_work_stopped(agent: AgentProcess, busy: float | None = None) -> None:
    """After a grace period the agent is idle again: under 15 % of one core, and well under what
    the running query used (`busy`: its CPU seconds over 2 s, when measured). Other processes
    share the machine, so a running query may get much less than its two cores."""
    if busy is not None:
        assert busy > 0.2, f"the query was not running ({busy:.2f} s CPU in 2 s)"
    time.sleep(1.0)
    idle = cpu_over(agent, 2.0)
    bound = 0.3 if busy is None else min(0.3, busy / 3)
    assert idle < bound, f"still computing: {idle:.2f} s CPU in 2 s after the cancel (busy: {busy})"


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Client]:
    with streamhouse.open(str(tmp_path / "data")) as client:
        fill(client)
        yield client


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    with AgentLauncher(tmp_path) as launcher:
        yield launcher.start("--data-dir", str(tmp_path / "data"), "--query-memory", "256MB", "--query-timeout", "120")


@pytest.fixture
def remote(agent: AgentProcess) -> Iterator[Client]:
    with streamhouse.connect(agent.address) as client:
        fill(client)
        yield client


# -- window TVFs ------------------------------------------------------------------------------
def test_absurd_hop_is_refused_before_running_with_the_numbers(embedded: Client) -> None:
    started = time.monotonic()
    with pytest.raises(SqlError) as info:
        embedded.sql(HOP_1MS_1DAY)
    assert time.monotonic() - started < 1.0
    message = str(info.value)
    assert (
        "HOP: INTERVAL '1' DAY / INTERVAL '1' MILLISECOND = 86,400,000 windows per row exceeds the limit of 10,000 "
        "(argument 3)" in message
    ), message
    with pytest.raises(SqlError, match=r"CUMULATE: .* = 3,600,000 windows per row exceeds the limit of 10,000"):
        embedded.sql(
            "SELECT count(*) FROM TABLE(CUMULATE(TABLE bids, DESCRIPTOR(ts), INTERVAL '1' MILLISECOND, "
            "INTERVAL '1' HOUR))"
        )
    answers_at_once(embedded)


def test_the_window_bound_is_inclusive() -> None:
    schema = pa.schema([("ts", pa.timestamp("ms"))])
    at_limit = f"INTERVAL '{MAX_WINDOWS_PER_ROW}' MILLISECOND"
    sql = f"SELECT * FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MILLISECOND, {at_limit}))"
    assert rewrite_windows(sql, lambda name: schema) != sql  # accepted and rewritten
    over = f"INTERVAL '{MAX_WINDOWS_PER_ROW + 1}' MILLISECOND"
    with pytest.raises(SqlError, match="10,001 windows per row"):
        rewrite_windows(sql.replace(at_limit, over), lambda name: schema)


# -- settings ---------------------------------------------------------------------------------
def test_settings_parse_and_never_exceed_the_agent() -> None:
    ceiling = QueryLimits(timeout_s=300.0, memory_bytes=1 << 30)
    assert parse_set("set Statement_Timeout TO 10000;") == SetStatement("statement_timeout", "10000")
    assert parse_set("RESET query_memory") == SetStatement("query_memory", None)
    assert session_limits({"statement_timeout": "10000"}, ceiling).timeout_s == 10.0  # bare number: ms
    assert session_limits({"statement_timeout": "1500ms", "query_memory": "512MB"}, ceiling) == QueryLimits(
        1.5, 512 << 20
    )
    assert parse_set("SELECT 1") is None
    for settings, fragment in [
        ({"statement_timeout": "10 min"}, "over this agent's limit of 300 s"),
        ({"query_memory": "2GB"}, "over this agent's limit of 1.0 GB"),
        ({"query_memory": "lots"}, "is not a size"),
        ({"statement_timeout": "0"}, "must be positive"),
    ]:
        with pytest.raises(InvalidInputError, match=fragment):
            session_limits(settings, ceiling)
    with pytest.raises(InvalidInputError, match="did you mean query_memory"):
        parse_set("SET query_memroy = '1GB'")


def test_a_refused_set_changes_nothing(embedded: Client) -> None:
    embedded.sql("SET statement_timeout = '30s'")
    with pytest.raises(InvalidInputError, match="did you mean statement_timeout"):
        embedded.sql("SET statement_timout = '1s'")
    with pytest.raises(InvalidInputError, match="over this agent's limit"):
        embedded.sql("SET statement_timeout = '1h'")  # the default agent limit is 300 s
    assert embedded.settings == {"statement_timeout": "30s"}
    embedded.sql("RESET ALL")
    assert embedded.settings == {}


# -- limits, embedded -------------------------------------------------------------------------
def test_embedded_memory_cap_and_timeout(embedded: Client) -> None:
    embedded.sql("SET query_memory = '8MB'")
    with pytest.raises(QueryMemoryExceededError, match=r"query memory limit of 8\.0 MB exceeded"):
        embedded.sql(GREEDY)
    answers_at_once(embedded)
    embedded.sql("RESET query_memory")
    embedded.sql("SET statement_timeout = '1s'")
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="time limit of 1 s"):
        embedded.sql(ENDLESS)
    assert time.monotonic() - started < 1 + PROMPT_S
    answers_at_once(embedded)


def test_operators_that_can_spill_do_under_the_cap(embedded: Client, tmp_path: Path) -> None:
    """6.76 M groups do not fit in 8 MB: the aggregate spills to data/spill and finishes."""
    spill = tmp_path / "data" / "spill"
    seen: set[str] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.update(p.name for p in spill.rglob("*") if p.is_file())
            time.sleep(0.005)

    watcher = threading.Thread(target=watch)
    watcher.start()
    embedded.sql("SET query_memory = '8MB'")
    try:
        # The outer aggregate keeps one row: an ORDER BY … LIMIT here would add a TopK, which
        # cannot spill and may find the fair pool's share taken (seen in CI).
        table = embedded.sql(
            "SELECT count(*) AS groups, max(n) AS most, min(k) AS low FROM "
            "(SELECT a.price * 10000 + b.price AS k, count(*) AS n FROM bids a, bids b GROUP BY 1)"
        )
    finally:
        done.set()
        watcher.join()
    assert table.to_pylist() == [{"groups": 6_760_000, "most": 1, "low": 0.0}]
    assert seen, "nothing was spilled"
    assert not [p for p in spill.rglob("*") if p.is_file()], "spill files left behind"


@pytest.fixture
def python_sigint() -> Iterator[None]:
    """Ctrl-C as a user's interpreter has it: Python's own SIGINT handler. An earlier test in the
    same worker process can leave another (a library's, or none), and `_thread.interrupt_main`
    then does nothing: in one full run both tests below saw no interrupt and the statement ran
    on to its end. What was there is printed, to find who left it."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    if previous is not signal.default_int_handler:
        print(f"SIGINT handler left by an earlier test: {previous!r}", file=sys.stderr)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("python_sigint")
def test_embedded_ctrl_c_cancels_the_statement(embedded: Client) -> None:
    threading.Timer(1.0, _thread.interrupt_main).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        embedded.sql(ENDLESS)
    assert time.monotonic() - started < 1 + PROMPT_S
    answers_at_once(embedded)


# -- limits, remote ---------------------------------------------------------------------------
def test_remote_limits_end_with_the_same_error_classes(agent: AgentProcess, remote: Client) -> None:
    with pytest.raises(InvalidInputError, match=r"over this agent's limit of 256\.0 MB"):
        remote.sql("SET query_memory = '1GB'")
    remote.sql("SET query_memory = '8MB'")
    with pytest.raises(QueryMemoryExceededError, match=r"query memory limit of 8\.0 MB exceeded"):
        remote.sql(GREEDY)
    answers_at_once(remote)
    remote.sql("RESET query_memory")

    remote.sql("SET statement_timeout = '2s'")
    started = time.monotonic()
    with pytest.raises(QueryTimeoutError, match="time limit of 2 s"):
        remote.sql(ENDLESS)
    assert time.monotonic() - started < 2 + PROMPT_S
    answers_at_once(remote)
    assert_work_stopped(agent)


def test_a_client_that_goes_away_stops_the_query(agent: AgentProcess, remote: Client) -> None:
    leaving = streamhouse.connect(agent.address)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            leaving.sql(ENDLESS)
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    time.sleep(0.5)
    busy = cpu_over(agent, 2.0)
    leaving.close()  # the channel closes under the running call: the agent sees a cancel
    worker.join(10)
    assert not worker.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], QueryCancelledError), outcome
    answers_at_once(remote)
    assert_work_stopped(agent, busy)


@pytest.mark.usefixtures("python_sigint")
def test_remote_ctrl_c_cancels_the_call_and_the_query(agent: AgentProcess, remote: Client) -> None:
    threading.Timer(1.0, _thread.interrupt_main).start()
    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        remote.sql(ENDLESS)
    assert time.monotonic() - started < 1 + PROMPT_S
    answers_at_once(remote)
    assert_work_stopped(agent)


# -- CLI --------------------------------------------------------------------------------------
def test_cli_prints_a_one_line_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    data = str(tmp_path / "d")
    assert main(["sql", CREATE, "--data-dir", data]) == 0
    capsys.readouterr()
    code = main(["sql", HOP_1MS_1DAY, "--data-dir", data])
    out = capsys.readouterr()
    assert code == 1 and out.out == ""
    assert out.err.startswith("error: ") and out.err.count("\n") == 1 and "Traceback" not in out.err
    assert "86,400,000 windows per row exceeds the limit of 10,000" in out.err

    # A file's statements share one session: its SET holds for the statements after it.
    with streamhouse.open(data) as client:
        client.produce_batch("bids", [{"auction": 1, "price": float(i), "ts": T0 + i} for i in range(ROWS)])
    script = tmp_path / "greedy.sql"
    script.write_text(f"SET query_memory = '8MB';\n{GREEDY};\n")
    code = main(["sql", "--file", str(script), "--data-dir", data])
    out = capsys.readouterr()
    assert code == 1 and "query_memory  8MB" in out.out
    errors = [line for line in out.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "query memory limit of 8.0 MB exceeded" in errors[0]
    assert out.err.splitlines()[-1] == errors[0] and "Traceback" not in out.err


def test_error_classes_are_streamhouse_errors() -> None:
    for cls in (QueryMemoryExceededError, QueryTimeoutError, QueryCancelledError):
        assert issubclass(cls, StreamHouseError)
        assert getattr(streamhouse, cls.__name__) is cls
    assert issubclass(QueryTimeoutError, TimeoutError)
