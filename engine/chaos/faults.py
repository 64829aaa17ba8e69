"""The fault schedule (a pure function of the seed: the same seed, duration and kinds give the
same plan, printed at the start so a run can be replayed) and its execution on a Cluster.

Faults come one at a time: each holds for its planned time, is healed, and the cluster gets a
short quiet gap before the next, so every kind is exercised many times in a long run and a
finding can be laid beside the one fault that was active.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass

from streamhouse.chaos.cluster import AGENT_NAMES, LEASE_TTL_MS, Cluster
from streamhouse.chaos.history import Fault, History
from streamhouse.storage.errors import StreamHouseError

KINDS = (
    "kill9", "pause", "pg-restart", "s3-drop", "s3-delay", "s3-reset", "disk-full", "clock-step", "disk-loss",
)  # fmt: skip
# Faults that kill an agent and start it again (disk-loss: with its WAL and data directory wiped
# in between, a lost disk); their restart may run in the background (FaultRunner).
RESTARTS = ("kill9", "disk-loss")
GAP_S = (1.0, 3.0)  # quiet time between faults (the default; `gap_s` scales it)
RESTART_QUIET_S = 3.0  # more quiet after a restart fault or pg-restart, at the default gap


@dataclass(frozen=True)
class PlannedFault:
    at_s: float  # planned start, seconds into the fault phase
    kind: str
    target: str  # agent name, or "" for PostgreSQL / S3
    hold_s: float
    amount: int = 0  # clock step in ms, or S3 delay in ms


def gaps(gap_s: float) -> tuple[float, float, float]:
    """(least, most) quiet time between faults and the extra after a restart, for a least gap of
    `gap_s` (1 s gives the defaults). A smaller gap makes cycles cheaper in a long run without
    weakening a fault: holds (a pause past the lease, an outage's length) do not change."""
    scale = gap_s / GAP_S[0]
    return GAP_S[0] * scale, GAP_S[1] * scale, RESTART_QUIET_S * scale


def plan(seed: int, duration_s: float, kinds: tuple[str, ...] = KINDS, gap_s: float = GAP_S[0]) -> list[PlannedFault]:
    """Kinds in a shuffled round robin (every kind equally often), targets and holds at random."""
    rng = random.Random(seed)
    least, most, restart_quiet = gaps(gap_s)
    out: list[PlannedFault] = []
    at = rng.uniform(least, most)
    order: list[str] = []
    while at < duration_s:
        if not order:
            order = list(kinds)
            rng.shuffle(order)
        kind = order.pop()
        target = rng.choice(AGENT_NAMES) if kind in (*RESTARTS, "pause", "clock-step") else ""
        if kind == "disk-full":
            target = AGENT_NAMES[-1]
        amount = 0
        if kind == "pause":
            hold = LEASE_TTL_MS / 1000 + rng.uniform(0.5, 2.0)  # past the lease: a zombie
        elif kind in RESTARTS:
            hold = rng.uniform(0.0, 2.0)  # down time before the restart
        elif kind == "pg-restart":
            hold = 0.0
        elif kind == "clock-step":
            hold = rng.uniform(2.0, 5.0)
            amount = rng.choice([-1, 1]) * rng.randint(5_000, 3_600_000)
        elif kind == "s3-delay":
            hold = rng.uniform(2.0, 5.0)
            amount = rng.randint(200, 1500)
        else:
            hold = rng.uniform(1.0, 4.0)
        out.append(PlannedFault(round(at, 3), kind, target, round(hold, 3), amount))
        at += hold + rng.uniform(least, most) + (restart_quiet if kind in (*RESTARTS, "pg-restart") else 0.0)
    return out


class FaultRunner(threading.Thread):
    """Plays a plan against the cluster, recording each fault in the history."""

    def __init__(
        self,
        cluster: Cluster,
        history: History,
        faults: list[PlannedFault],
        t0: float,
        gap_s: float = GAP_S[0],
        background_restarts: bool = False,
    ) -> None:
        super().__init__(daemon=True, name="chaos-faults")
        self.cluster, self.history, self.faults, self.t0, self.gap_s = cluster, history, faults, t0, gap_s
        # A restart fault's restart (seconds on a loaded machine) runs beside the next faults instead of
        # before them: cycles get cheaper and restarts overlap other faults (a harder mix). A
        # fault aimed at an agent still restarting waits for it.
        self.background_restarts = background_restarts
        self.restarting: dict[str, threading.Thread] = {}
        self.stop = threading.Event()
        self.done: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        self.errors: list[str] = []
        self.lock = threading.Lock()

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> None:
        try:
            self._play()
        finally:
            for thread in list(self.restarting.values()):
                thread.join()  # bounded: start_agent's attempts and timeouts

    def _play(self) -> None:
        for fault in self.faults:
            # A fault that ran long (a slow restart) delays the plan; the next one still waits
            # the least quiet gap, so faults never come back to back.
            wait = max(fault.at_s - self.now(), self.gap_s)
            if self.stop.wait(wait):
                return
            busy = self.restarting.pop(fault.target, None) if fault.target else None
            if busy is not None:
                busy.join()
            if self.stop.is_set():
                return
            if self.background_restarts and fault.kind in RESTARTS:
                start = self.now()
                self._down(fault)
                thread = threading.Thread(target=self._finish, args=(fault, start), daemon=True, name="chaos-restart")
                self.restarting[fault.target] = thread
                thread.start()
                continue
            self._finish(fault, self.now())

    def _finish(self, fault: PlannedFault, start: float) -> None:
        """Apply `fault` (a background restart fault: only its restart) and record it."""
        try:
            detail = self._apply(fault, restart_only=self.background_restarts and fault.kind in RESTARTS)
        except StreamHouseError as exc:
            detail = f"failed: {exc}"
            with self.lock:
                self.errors.append(f"{fault.kind} {fault.target}: {exc}")
        except Exception as exc:  # a fault that could not be applied is reported, not fatal
            detail = f"failed: {exc!r}"
            with self.lock:
                self.errors.append(f"{fault.kind} {fault.target}: {exc!r}")
        with self.lock:
            if detail == "unavailable":
                self.skipped[fault.kind] += 1
            else:
                self.done[fault.kind] += 1
        index = self.history.next_index()
        self.history.add(Fault(index, "nemesis", start, self.now(), fault.kind, fault.target, detail))

    def _down(self, fault: PlannedFault) -> None:
        """The first half of a restart fault: kill -9 (and for disk-loss, wipe the agent's disk
        while it is down), then the down time."""
        agent = self.cluster.agents[fault.target]
        self.cluster.kill(agent)
        if fault.kind == "disk-loss":
            self.cluster.wipe_disk(agent)
        time.sleep(fault.hold_s)

    def _apply(self, fault: PlannedFault, *, restart_only: bool = False) -> str:
        c = self.cluster
        proxy = c.proxy
        assert proxy is not None
        if fault.kind in RESTARTS:
            agent = c.agents[fault.target]
            if not restart_only:
                self._down(fault)
            began = time.monotonic()
            attempts = c.start_agent(agent)
            wiped = ", disk wiped" if fault.kind == "disk-loss" else ""
            took = time.monotonic() - began
            return f"down {fault.hold_s:.1f}s{wiped}, ready after {attempts} start(s) in {took:.1f}s"
        if fault.kind == "pause":
            agent = c.agents[fault.target]
            c.pause(agent)
            time.sleep(fault.hold_s)
            c.resume(agent)
            return f"stopped {fault.hold_s:.1f}s (lease {LEASE_TTL_MS} ms)"
        if fault.kind == "pg-restart":
            c.restart_postgres()
            return "immediate"
        if fault.kind in ("s3-drop", "s3-reset", "s3-delay"):
            mode = fault.kind.removeprefix("s3-")
            proxy.set(mode, fault.amount / 1000)  # type: ignore[arg-type]
            time.sleep(fault.hold_s)
            proxy.set("pass")
            return f"{fault.hold_s:.1f}s" + (f", {fault.amount} ms a chunk" if fault.amount else "")
        if fault.kind == "disk-full":
            if c.tmpfs is None:
                return "unavailable"
            ballast = c.fill_disk()
            time.sleep(fault.hold_s)
            c.free_disk(ballast)
            return f"WAL tmpfs of {fault.target} full {fault.hold_s:.1f}s"
        if fault.kind == "clock-step":
            agent = c.agents[fault.target]
            c.step_clock(agent, fault.amount)
            time.sleep(fault.hold_s)
            c.step_clock(agent, 0)
            return f"{fault.amount:+d} ms for {fault.hold_s:.1f}s"
        raise StreamHouseError(f"unknown fault kind {fault.kind!r}")
