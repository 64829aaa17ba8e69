"""The parts of `streamhouse chaos` that need no cluster: the fault plan replays from its seed,
durations parse, and the TCP fault proxy passes, delays, swallows and resets real traffic."""

from __future__ import annotations

import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamhouse.chaos.cluster import LEASE_TTL_MS
from streamhouse.chaos.faults import KINDS, RESTARTS, plan
from streamhouse.chaos.proxy import FaultProxy
from streamhouse.cli.chaos import parse_duration
from streamhouse.storage.errors import InvalidInputError
from tests.engine.chaos.tcp_server import tcp_server


def test_the_plan_is_a_function_of_the_seed() -> None:
    assert plan(7, 600) == plan(7, 600)
    assert plan(7, 600) != plan(8, 600)
    faults = plan(7, 600)
    counts = Counter(f.kind for f in faults)
    assert set(counts) == set(KINDS) and max(counts.values()) - min(counts.values()) <= 1  # round robin
    assert all(f.hold_s > LEASE_TTL_MS / 1000 for f in faults if f.kind == "pause")  # past the lease
    assert all(f.target for f in faults if f.kind in (*RESTARTS, "pause", "clock-step", "disk-full"))
    assert [f.at_s for f in faults] == sorted(f.at_s for f in faults) and faults[-1].at_s < 600
    assert {f.kind for f in plan(7, 600, ("kill9",))} == {"kill9"}


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("3m", 180), ("2h", 7200), ("1h30m", 5400)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "3 minutes", "-5m", "h"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(InvalidInputError, match="--duration"):
        parse_duration(text)


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    def echo(conn: socket.socket) -> None:
        with conn:
            try:
                while data := conn.recv(4096):
                    conn.sendall(data)
            except OSError:
                pass

    server = tcp_server(echo)
    yield server.getsockname()[1]
    server.close()


def _round_trip(port: int, timeout_s: float = 2.0) -> tuple[bytes, float]:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as s:
        began = time.monotonic()
        s.sendall(b"ping")
        return s.recv(4), time.monotonic() - began


def test_the_proxy_passes_delays_drops_and_resets(echo_port: int) -> None:
    proxy = FaultProxy("127.0.0.1", echo_port)
    try:
        assert _round_trip(proxy.port)[0] == b"ping"
        proxy.set("delay", 0.3)
        time.sleep(0.05)
        answer, took = _round_trip(proxy.port)
        assert answer == b"ping" and took >= 0.6  # delayed each way
        proxy.set("drop")
        time.sleep(0.05)
        with pytest.raises(TimeoutError):
            _round_trip(proxy.port, timeout_s=0.5)
        proxy.set("reset")
        time.sleep(0.05)
        with pytest.raises((ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
            answer, _ = _round_trip(proxy.port)
            if not answer:  # a reset seen as end of stream on some kernels
                raise ConnectionResetError
        proxy.set("pass")
        time.sleep(0.05)
        assert _round_trip(proxy.port)[0] == b"ping"
    finally:
        proxy.close()


class _Timeline:
    """Stands in for the Cluster in FaultRunner (the nemesis' scheduling only): records when
    each agent was killed, restarted, paused and resumed; a restart takes 0.5 s."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, float]] = []
        self.agents = {name: name for name in ("a", "b", "c")}
        self.proxy = self

    def set(self, mode: str, delay: float = 0.0) -> None:
        self.events.append(("s3", mode, time.monotonic()))

    def kill(self, agent: str) -> None:
        self.events.append(("kill", agent, time.monotonic()))

    def start_agent(self, agent: str) -> int:
        time.sleep(0.5)
        self.events.append(("ready", agent, time.monotonic()))
        return 1

    def pause(self, agent: str) -> None:
        self.events.append(("pause", agent, time.monotonic()))

    def wipe_disk(self, agent: str) -> None:
        self.events.append(("wipe", agent, time.monotonic()))

    def resume(self, agent: str) -> None:
        self.events.append(("resume", agent, time.monotonic()))


def test_background_restarts_overlap_other_faults_but_not_their_own_agent() -> None:
    from streamhouse.chaos.faults import FaultRunner, PlannedFault
    from streamhouse.chaos.history import History

    faults = [
        PlannedFault(0.0, "kill9", "a", 0.0),
        PlannedFault(0.0, "s3-drop", "", 0.1),  # runs while a restarts
        PlannedFault(0.0, "pause", "a", 0.1),  # waits for a to be back
    ]
    timeline, history = _Timeline(), History()
    runner = FaultRunner(timeline, history, faults, time.monotonic(), gap_s=0.05, background_restarts=True)  # type: ignore[arg-type]
    runner.start()
    runner.join(10)
    at = {(kind, who): t for kind, who, t in timeline.events}
    assert at[("s3", "drop")] < at[("ready", "a")] < at[("pause", "a")]
    assert runner.done == Counter({"kill9": 1, "s3-drop": 1, "pause": 1}) and runner.errors == []
    assert len(history.ops) == 3


def test_a_disk_loss_wipes_the_disk_between_the_kill_and_the_restart() -> None:
    from streamhouse.chaos.faults import FaultRunner, PlannedFault
    from streamhouse.chaos.history import Fault, History

    for background in (False, True):
        timeline, history = _Timeline(), History()
        faults = [PlannedFault(0.0, "disk-loss", "b", 0.05), PlannedFault(0.0, "kill9", "c", 0.0)]
        runner = FaultRunner(timeline, history, faults, time.monotonic(), gap_s=0.05, background_restarts=background)  # type: ignore[arg-type]
        runner.start()
        runner.join(10)
        assert [(kind, who) for kind, who, _ in timeline.events if who == "b"] == [
            ("kill", "b"), ("wipe", "b"), ("ready", "b")
        ]  # fmt: skip
        assert ("wipe", "c") not in {(kind, who) for kind, who, _ in timeline.events}  # kill9 keeps the disk
        fault = next(op for op in history.ops if isinstance(op, Fault) and op.kind == "disk-loss")
        assert "disk wiped" in fault.detail and runner.errors == []
        # The checker reads a disk-loss's start as a moment the agent is about to die (checker.on_lost_disk).
        kill = next(t for kind, who, t in timeline.events if (kind, who) == ("kill", "b"))
        assert fault.start <= kill - runner.t0


def test_wipe_disk_empties_the_agent_dirs_and_keeps_them(tmp_path: Path) -> None:
    from streamhouse.chaos.cluster import Cluster

    cluster = Cluster(tmp_path)
    agent = cluster.agents["a"]
    (agent.wal_dir / "wal-000.log").write_bytes(b"x")
    (agent.data_dir / "spill" / "deep").mkdir(parents=True)
    (agent.data_dir / "spill" / "deep" / "f").write_bytes(b"y")
    cluster.wipe_disk(agent)
    assert agent.wal_dir.is_dir() and agent.data_dir.is_dir()
    assert list(agent.wal_dir.iterdir()) == [] and list(agent.data_dir.iterdir()) == []
    assert agent.clock_file.exists() and (tmp_path / "b").is_dir()  # the clock and other agents untouched
