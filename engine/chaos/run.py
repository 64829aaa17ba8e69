"""One chaos run: start the cluster, create the topics, run the workloads under the seeded
fault plan for `duration_s`, heal, read every partition back whole, and check the history.

    streamhouse chaos --duration 3m --seed 7

The seed and the plan are printed first; the same seed, duration and kinds replay the same
fault plan (the interleaving with the workloads differs from run to run, as on any machine).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamhouse.chaos.checker import Verdict, check, on_lost_disk, render
from streamhouse.chaos.cluster import Cluster
from streamhouse.chaos.faults import KINDS, FaultRunner, plan
from streamhouse.chaos.history import FinalLog, History, JobOutput, Produce, Txn
from streamhouse.chaos.rest_workload import RestProducer
from streamhouse.chaos.txn_workload import TXN_TOPIC, TxnProducer, TxnReader
from streamhouse.chaos.workloads import (
    JOB_SOURCE,
    JOB_VIEW,
    KAFKA_DEBUG_ENV,
    PARTITIONS,
    TOPICS,
    GrpcProducer,
    KafkaConsumer,
    KafkaProducer,
    Reader,
    Worker,
)
from streamhouse.client.client import connect
from streamhouse.storage.errors import InvalidInputError, StreamHouseError

SETTLE_S = 8.0  # after healing: leases change hands, held WAL records reach the log
FINAL_READ_ATTEMPTS = 10
JOB_CATCH_UP_S = 180.0
FIRST_ROUND_GRACE_S = 180.0
NEMESIS_STOP_S = 120.0  # a fault in progress (an agent restart) finishes
WORKER_STOP_S = 60.0
HANDOVER_WAIT_S = 90.0  # acknowledged values missing from the read-back: read again this long (read_back)


@dataclass(frozen=True)
class ChaosOptions:
    duration_s: float = 180.0
    seed: int = 1
    kinds: tuple[str, ...] = KINDS
    max_ops: int = 1_000_000  # per workload thread
    consumers: int = 2
    workdir: Path | None = None
    keep: bool = False
    history_path: Path | None = None
    gap_s: float = 1.0  # least quiet time between faults (faults.gaps)
    background_restarts: bool = False  # kill9's restart beside the next faults (FaultRunner)
    # The whole run, cluster start to verdict, in seconds: every phase after the faults gets at
    # most what is left, and one that runs out is an error naming it (a caller with its own
    # timeout, CI, gets the harness's message instead of being killed). None: each phase's own bound.
    budget_s: float | None = None


class Budget:
    """What is left of a run's time budget."""

    def __init__(self, total_s: float | None) -> None:
        self.total_s = total_s
        self.deadline = time.monotonic() + total_s if total_s is not None else float("inf")

    def left(self, cap: float) -> float:
        return max(0.0, min(cap, self.deadline - time.monotonic()))

    def spent(self) -> bool:
        return time.monotonic() >= self.deadline

    def overrun(self, phase: str) -> str:
        return f"the run's budget of {self.total_s:g} s ran out in {phase}"


@dataclass
class ChaosResult:
    verdict: Verdict
    history: History
    faults: dict[str, int]
    unavailable: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # workload crashes, faults that failed

    @property
    def ok(self) -> bool:
        return self.verdict.ok and not self.errors

    def summary(self) -> str:
        lines = [
            f"operations: {len(self.history.ops)} {self.verdict.counts}",
            f"fault cycles: {self.faults}",
        ]
        lines += [f"fault kind {k} unavailable: {why}" for k, why in self.unavailable.items()]
        lines += [f"error: {e}" for e in self.errors]
        lines.append(render(self.verdict, self.history))
        return "\n".join(lines)


def run_chaos(options: ChaosOptions, say: Callable[[str], None] = print) -> ChaosResult:
    if options.budget_s is not None and options.budget_s <= options.duration_s:
        raise InvalidInputError(
            f"the budget ({options.budget_s:g} s) must exceed the duration ({options.duration_s:g} s)"
        )
    budget = Budget(options.budget_s)
    faults = plan(options.seed, options.duration_s, options.kinds, options.gap_s)
    say(f"chaos: seed {options.seed}, {options.duration_s:g} s, {len(faults)} faults planned (replay with --seed)")
    for f in faults[:10]:
        say(f"  at {f.at_s:7.2f}s {f.kind:<10} {f.target or '-':<2} hold {f.hold_s:.2f}s {f.amount or ''}")
    if len(faults) > 10:
        say(f"  … {len(faults) - 10} more")
    work = options.workdir or Path(tempfile.mkdtemp(prefix="sh-chaos-"))
    work.mkdir(parents=True, exist_ok=True)
    cluster = Cluster(work)
    history = History()
    unavailable: dict[str, str] = {}
    errors: list[str] = []
    try:
        cluster.start()
        if cluster.tmpfs is None and "disk-full" in options.kinds:
            unavailable["disk-full"] = f"could not mount a tmpfs for the WAL ({cluster.tmpfs_refused})"
            say(f"chaos: disk-full unavailable: {unavailable['disk-full']}")
        say(f"chaos: cluster up in {work} (agents {', '.join(cluster.addresses())}; kafka {cluster.kafka_bootstrap()})")
        addresses = cluster.addresses()
        with connect(addresses) as admin:
            for topic in (*TOPICS.values(), TXN_TOPIC):
                admin.create_topic(topic, PARTITIONS, exist_ok=True)
            admin.sql(f"CREATE TOPIC IF NOT EXISTS {JOB_SOURCE} (v BIGINT) WITH (partitions = {PARTITIONS})")
            admin.create_job(JOB_VIEW, f"SELECT v FROM {JOB_SOURCE}", start="earliest", checkpoint_interval="500ms")
        stop = threading.Event()
        t0 = time.monotonic()
        common = (history, stop, t0, options.max_ops)
        names = {a.address: a.name for a in cluster.agents.values()}  # which agent acknowledged (Produce.agent)
        workers: list[Worker] = [
            GrpcProducer("leader", addresses, *common, names=names),
            GrpcProducer("durable", addresses, *common, names=names),
            GrpcProducer("durable", addresses, *common, topic=JOB_SOURCE, json_values=True, pause_s=0.1, names=names),
            KafkaProducer(cluster.kafka_bootstrap(), *common, debug=os.environ.get(KAFKA_DEBUG_ENV, ""), log_dir=work),
            *(KafkaConsumer(f"consumer-{i}", cluster.kafka_bootstrap(), *common) for i in range(options.consumers)),
            TxnProducer(cluster.kafka_bootstrap(), *common),
            TxnReader(cluster.kafka_bootstrap(), *common),
            Reader(addresses, *common),
            RestProducer(cluster.http_urls(), *common),
        ]
        for w in workers:
            w.start()
        nemesis = FaultRunner(cluster, history, faults, t0, options.gap_s, options.background_restarts)
        nemesis.start()
        end = t0 + options.duration_s
        while time.monotonic() < end and any(w.is_alive() for w in workers):
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            say(f"chaos: {time.monotonic() - t0:6.0f}s, {len(history.ops)} operations, faults {dict(nemesis.done)}")
        # Every kind at least once, even when slow restarts pushed the first round past the end.
        planned = {f.kind for f in faults}
        grace_end = time.monotonic() + budget.left(FIRST_ROUND_GRACE_S)
        while time.monotonic() < max(end, grace_end) and nemesis.is_alive():
            if planned <= set(nemesis.done) | set(nemesis.skipped):
                break
            time.sleep(1.0)
        nemesis.stop.set()
        nemesis.join(budget.left(NEMESIS_STOP_S))
        if nemesis.is_alive():
            errors.append(f"the fault runner did not stop within {NEMESIS_STOP_S:g} s")
        cluster.heal()
        time.sleep(budget.left(SETTLE_S))  # consumers keep reading through the settle time
        stop.set()
        for w in workers:
            w.join(budget.left(WORKER_STOP_S))
            if w.crash:
                errors.append(f"{w.process} crashed: {w.crash}")
            elif w.is_alive():
                errors.append(f"{w.process} did not stop within {WORKER_STOP_S:g} s")
        errors.extend(nemesis.errors)
        if budget.spent():  # no read-back left: the history cannot be judged
            raise StreamHouseError(f"{budget.overrun('the faults and stopping the workloads')}; errors: {errors}")
        # Values that may be gone with a lost disk (acks=leader) are not waited for.
        excused = on_lost_disk(history.ops)
        acknowledged = [
            v
            for op in history.ops
            if isinstance(op, Produce) and op.outcome == "ok" and op.index not in excused
            for v in op.values
        ]
        acknowledged += [
            v for op in history.ops if isinstance(op, Txn) and op.outcome == "committed" for v in op.values
        ]
        history.final, took = read_back(addresses, [*TOPICS.values(), TXN_TOPIC, JOB_SOURCE], budget, acknowledged)
        say(f"chaos: log read back in {took:.0f} s")
        history.job = read_job(addresses, errors, budget)
        for kind in nemesis.skipped:
            unavailable.setdefault(kind, "skipped")
        if options.history_path is not None:  # saved first: a checker that fails must not lose it
            history.save(options.history_path)
        verdict = check(history)
        return ChaosResult(verdict, history, dict(nemesis.done), unavailable, errors)
    finally:
        cluster.close()
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"chaos: kept {work} (agent logs, WALs)")


def read_back(
    addresses: list[str], topics: list[str], budget: Budget | None = None, acknowledged: Collection[str] = ()
) -> tuple[list[FinalLog], float]:
    """Every partition of every topic, whole, once the faults are healed, and the seconds it
    took. While `acknowledged` values are missing it reads again, for up to HANDOVER_WAIT_S: a
    restarted agent hands its WAL records of partitions that moved to their new leader in the
    background (an acks=durable produce a batch: seconds), so they reach the log some seconds
    after it is back. A value still missing after that is lost."""
    budget = budget or Budget(None)
    began = time.monotonic()
    wait_end = began + budget.left(HANDOVER_WAIT_S)
    expected = set(acknowledged)
    while True:
        out = _read_all(addresses, topics, budget)
        if expected <= {v for part in out for v in part.values} or time.monotonic() >= wait_end:
            return out, time.monotonic() - began
        time.sleep(3)


def _read_all(addresses: list[str], topics: list[str], budget: Budget) -> list[FinalLog]:
    """One read of every partition (retried while leases settle: a read may meet an agent
    still taking over)."""
    last: Exception | None = None
    for _ in range(FINAL_READ_ATTEMPTS):
        if budget.spent():
            raise StreamHouseError(f"{budget.overrun('reading the log back')}: {last}")
        try:
            out: list[FinalLog] = []
            with connect(addresses, timeout_s=max(1.0, budget.left(30.0))) as client:
                for topic in topics:
                    table = client.read(topic)
                    # read_uncommitted too, for the offsets read_committed skips (FinalLog.hidden).
                    whole = client.read(topic, isolation="read_uncommitted").select(["partition", "offset"])
                    parts = table.column("partition").to_numpy()
                    all_parts = whole.column("partition").to_numpy()
                    for p in range(PARTITIONS):
                        rows = table.filter(parts == p)
                        offsets = tuple(int(o) for o in rows.column("offset").to_numpy())
                        values = tuple((v or b"").decode(errors="replace") for v in rows.column("value").to_pylist())
                        held = whole.filter(all_parts == p).column("offset").to_numpy()
                        hidden = tuple(int(o) for o in np.setdiff1d(held, np.asarray(offsets, dtype=np.int64)))
                        out.append(FinalLog(topic, p, offsets, values, hidden))
            return out
        except Exception as exc:
            last = exc
            time.sleep(3)
    raise StreamHouseError(f"could not read the log back after the run: {last}")


def read_job(addresses: list[str], errors: list[str], budget: Budget | None = None) -> JobOutput | None:
    """The view once the job has read and checkpointed its whole source (None, and an error,
    if it does not catch up within JOB_CATCH_UP_S or what is left of the budget)."""
    budget = budget or Budget(None)
    last: Exception | None = None
    allowed = budget.left(JOB_CATCH_UP_S)
    deadline = time.monotonic() + allowed
    while time.monotonic() < deadline:
        try:
            with connect(addresses, timeout_s=max(1.0, min(30.0, deadline - time.monotonic()))) as client:
                client.wait_for_job(JOB_VIEW, timeout=max(1.0, deadline - time.monotonic()), progress=False)
                column = client.sql(f"SELECT v FROM {JOB_VIEW}").column("v")
                # A null v (never written by the source) counts as -1, which matches no source row.
                values = tuple(-1 if v is None else int(v) for v in column.to_pylist())
                return JobOutput(JOB_SOURCE, JOB_VIEW, values)
        except Exception as exc:
            last = exc
            time.sleep(2)
    errors.append(f"job {JOB_VIEW} did not catch up within {allowed:.0f} s: {last}")
    return None


def main_exit(result: ChaosResult) -> int:
    print(result.summary(), file=sys.stdout)
    return 0 if result.ok else 1
