"""What a chaos run did and saw, as plain values: every operation a workload client issued
(with its outcome as the client saw it), every fault, and the log read back at the end. The
checker (`checker.py`) judges nothing but this, so a history can be saved, loaded and checked
again, and hand-made ones in tests hold each anomaly.

Times are seconds since the run started (time.monotonic), `start` when the client sent the
request and `end` when it heard back: two operations are ordered only if one ended before the
other started.
"""

from __future__ import annotations

import json
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Outcome = Literal["ok", "fail"]  # fail: an error or a timeout; the write may still have happened
Mode = Literal["leader", "durable", "kafka-idempotent", "rest"]
TxnIntent = Literal["commit", "abort"]
TxnOutcome = Literal["committed", "aborted", "unknown"]


@dataclass(frozen=True)
class Produce:
    """One produce request of unique values to one partition. `offsets` are what the ack said
    (empty unless ok). `retried`: the client may have sent it more than once without
    idempotence, so duplicates of these values are expected (and counted apart). `agent`: the
    agent that acknowledged it (gRPC producers; "" when unknown), whose WAL alone holds an
    acks=leader write until it reaches a segment."""

    index: int
    process: str
    start: float
    end: float
    mode: Mode
    topic: str
    partition: int
    values: tuple[str, ...]
    outcome: Outcome
    offsets: tuple[int, ...] = ()
    retried: bool = False
    error: str = ""
    agent: str = ""


@dataclass(frozen=True)
class Assign:
    """A group member was given (`revoked` False) or lost (True) partitions; `session`
    numbers the member's assignments, so reads and commits name the one they belong to."""

    index: int
    process: str
    start: float
    end: float
    session: int
    topic: str
    partitions: tuple[int, ...]
    revoked: bool = False


@dataclass(frozen=True)
class Poll:
    """Records one poll delivered for one partition, in delivery order."""

    index: int
    process: str
    start: float
    end: float
    session: int
    topic: str
    partition: int
    offsets: tuple[int, ...]
    values: tuple[str, ...]


@dataclass(frozen=True)
class Commit:
    """A group member committing `offset` (the next offset to read, as Kafka) for a partition."""

    index: int
    process: str
    start: float
    end: float
    session: int
    topic: str
    partition: int
    offset: int
    outcome: Outcome
    error: str = ""


@dataclass(frozen=True)
class CommittedRead:
    """The group's committed offsets as read from the agents (partition → offset)."""

    index: int
    process: str
    start: float
    end: float
    topic: str
    offsets: dict[int, int]


@dataclass(frozen=True)
class SqlRead:
    """An ad-hoc `SELECT count(*)` over a topic; `count` is -1 when it failed."""

    index: int
    process: str
    start: float
    end: float
    topic: str
    count: int
    outcome: Outcome
    error: str = ""


@dataclass(frozen=True)
class Txn:
    """One Kafka transaction of a transactional producer: `values[i]` went to `partitions[i]`
    (2+ partitions). `intent` is what the client asked for at the end (abort also when a produce
    failed before the commit was asked: that transaction can only abort); `outcome` is what it
    heard: committed, aborted (asked for, or forced by an error that requires an abort), or
    unknown (a commit whose answer never came: it may or may not have committed)."""

    index: int
    process: str
    start: float
    end: float
    topic: str
    txn: int
    partitions: tuple[int, ...]
    values: tuple[str, ...]
    intent: TxnIntent
    outcome: TxnOutcome
    error: str = ""


CLIENT_EPOCH_BUMP = "client-epoch-bump"  # a Fault op the idempotent Kafka client records, not the nemesis


@dataclass(frozen=True)
class Fault:
    index: int
    process: str
    start: float
    end: float
    kind: str
    target: str
    detail: str = ""


@dataclass(frozen=True)
class FinalLog:
    """One partition read back whole after the run (faults healed, every agent up)."""

    topic: str
    partition: int
    offsets: tuple[int, ...]
    values: tuple[str, ...]
    # Offsets whose records read_committed readers skip: aborted transactions' and voided
    # idempotent batches' (engine/kafka/unacked.py). They hold offsets, so the gap check counts them.
    hidden: tuple[int, ...] = ()


@dataclass(frozen=True)
class JobOutput:
    """A continuous job's view read back whole after the job caught up: `values` are the `v`
    column of every output row; the source's rows are the FinalLog of `source` (JSON {"v": n})."""

    source: str
    view: str
    values: tuple[int, ...]


Operation = Produce | Assign | Poll | Commit | CommittedRead | SqlRead | Txn | Fault
_KINDS: dict[str, type[Operation]] = {
    cls.__name__: cls for cls in (Produce, Assign, Poll, Commit, CommittedRead, SqlRead, Txn, Fault)
}


@dataclass
class History:
    """Appended to by every workload thread; `next_index` hands out operation numbers."""

    ops: list[Operation] = field(default_factory=list)
    final: list[FinalLog] = field(default_factory=list)
    job: JobOutput | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _count: int = 0

    def next_index(self) -> int:
        with self.lock:
            self._count += 1
            return self._count

    def add(self, op: Operation) -> None:
        with self.lock:
            self.ops.append(op)

    def of(self, kind: type[Operation]) -> list[Operation]:
        return [op for op in self.ops if isinstance(op, kind)]

    def by_index(self) -> dict[int, Operation]:
        return {op.index: op for op in self.ops}

    def save(self, path: Path) -> None:
        """One JSON object a line: operations, then the final log and the job's output."""
        with open(path, "w", encoding="utf-8") as f:
            for op in sorted(self.ops, key=lambda o: o.index):
                f.write(json.dumps({"type": type(op).__name__, **asdict(op)}) + "\n")
            for part in self.final:
                f.write(json.dumps({"type": "FinalLog", **asdict(part)}) + "\n")
            if self.job is not None:
                f.write(json.dumps({"type": "JobOutput", **asdict(self.job)}) + "\n")

    @classmethod
    def load(cls, path: Path) -> History:
        history = cls()
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            kind = row.pop("type")
            for name, value in row.items():
                if isinstance(value, list):
                    row[name] = tuple(value)
            if kind == "FinalLog":
                history.final.append(FinalLog(**row))
                continue
            if kind == "JobOutput":
                history.job = JobOutput(**row)
                continue
            if kind == "CommittedRead":
                row["offsets"] = {int(k): v for k, v in row["offsets"].items()}
            op = _KINDS[kind](**row)
            history.ops.append(op)
            history._count = max(history._count, op.index)
        return history


def describe(op: Operation, *, max_values: int = 4) -> str:
    """One line naming an operation for a finding: what, who, when, outcome."""
    when = f"[{op.start:.3f}–{op.end:.3f}s]"
    head = f"#{op.index} {type(op).__name__} by {op.process} {when}"
    if isinstance(op, Produce):
        shown = ", ".join(op.values[:max_values]) + (" …" if len(op.values) > max_values else "")
        at = f" at offsets {op.offsets[0]}..{op.offsets[-1]}" if op.offsets else ""
        retried = " (retried)" if op.retried else ""
        by = f" from agent {op.agent}" if op.agent else ""
        outcome = f"{op.outcome}{retried}{by}{at}"
        return f"{head} {op.mode} {op.topic}/{op.partition} {outcome} values [{shown}] {op.error}"
    if isinstance(op, Poll):
        span = f"{op.offsets[0]}..{op.offsets[-1]}" if op.offsets else "nothing"
        return f"{head} session {op.session} {op.topic}/{op.partition} offsets {span} ({len(op.offsets)})"
    if isinstance(op, Commit):
        return f"{head} session {op.session} {op.topic}/{op.partition} offset {op.offset} {op.outcome} {op.error}"
    if isinstance(op, Assign):
        what = "revoked" if op.revoked else "assigned"
        return f"{head} session {op.session} {what} {op.topic} partitions {list(op.partitions)}"
    if isinstance(op, CommittedRead):
        return f"{head} {op.topic} committed {op.offsets}"
    if isinstance(op, SqlRead):
        return f"{head} count(*) of {op.topic} = {op.count} {op.outcome} {op.error}"
    if isinstance(op, Txn):
        spread = ", ".join(f"{v}@{p}" for v, p in zip(op.values[:max_values], op.partitions, strict=False))
        return f"{head} transaction {op.txn} on {op.topic} asked {op.intent}, {op.outcome} [{spread}] {op.error}"
    return f"{head} {op.kind} {op.target} {op.detail}"
