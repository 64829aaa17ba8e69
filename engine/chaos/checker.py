"""Judge a chaos run's complete history (history.py): no I/O, nothing but the recorded
operations and the log read back at the end.

Each check returns findings; a finding names its check, says what is wrong and lists the
operations involved (their indexes; `render` prints them). The checks:

- lost: an acknowledged value missing from the final log (by ack mode; every mode here is
  promised to survive the faults the harness injects: process crashes, pauses, PostgreSQL and
  S3 outages, a full WAL disk, a stepped clock; and every mode but acks=leader a lost disk).
  An acks=leader value acknowledged by an agent whose disk was wiped later (the disk-loss
  fault) may have had its only copy there (README "Durability under faults"): missing, it is
  counted apart (`lost_with_disk.leader`), not reported. Lost otherwise, it is a finding.
- duplicate: a value twice in the log. Expected where the client retried without idempotence
  (`Produce.retried`) and for acks=leader values (a superseded leadership's WAL records are
  appended again after a takeover: at least once, README "Durability under faults"): those are
  counted apart, not reported.
- phantom: a value in the log that nobody sent.
- gap / reuse: the final log's offsets (those read_committed readers skip included: a voided
  idempotent batch's, engine/kafka/unacked.py) are not dense from its first one, or one offset holds
  two values; a durable or Kafka ack whose offset holds another value in the log (acks=leader
  offsets may move: an old leader's tail is appended again at the end, README "Durability").
- read-changed, non-monotonic, skip, regression, zombie: what consumers in a group read and
  committed (group_checks.py).
- stale-sql: an ad-hoc count(*) lower than the values acknowledged durably before it started.
- exactly-once: the continuous job's view (a projection of its source) differs from the
  source read back: a row missing or written twice.
- aborted-read, torn-transaction, lost-committed: Kafka transactions (txn_checks.py). A
  transactional topic's offsets are not dense (control records, aborted records hidden from a
  read_committed read), so the gap check passes over it.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field

from streamhouse.chaos.group_checks import GROUP_CHECKS, check_group
from streamhouse.chaos.history import (
    CLIENT_EPOCH_BUMP,
    Commit,
    Fault,
    FinalLog,
    History,
    Operation,
    Poll,
    Produce,
    SqlRead,
    Txn,
    describe,
)
from streamhouse.chaos.txn_checks import TXN_CHECKS, check_transactions

DISK_LOSS = "disk-loss"  # the fault kind (faults.py) after which acks=leader writes may be gone
CHECKS = (
    "lost", "duplicate", "phantom", "gap", "reuse", *GROUP_CHECKS, "stale-sql", "exactly-once", *TXN_CHECKS,
)  # fmt: skip


@dataclass(frozen=True)
class Finding:
    check: str
    message: str
    ops: tuple[int, ...] = ()


@dataclass(frozen=True)
class Verdict:
    findings: tuple[Finding, ...]
    counts: dict[str, int] = field(default_factory=dict)  # figures: acked by mode, reads, …

    @property
    def ok(self) -> bool:
        return not self.findings

    def by_check(self) -> dict[str, int]:
        found = Counter(f.check for f in self.findings)
        return {check: found.get(check, 0) for check in CHECKS}


def check(history: History) -> Verdict:
    produces = [op for op in history.ops if isinstance(op, Produce)]
    txns = [op for op in history.ops if isinstance(op, Txn)]
    excused = on_lost_disk(history.ops)
    findings = [
        *check_writes(produces, history.final, txns, _client_bumps(history.ops), excused),
        *check_offsets(produces, history.final, {t.topic for t in txns}),
        *(Finding(*found) for found in check_group(history.ops, history.final)),
        *check_sql(history.ops),
        *check_job(history),
        *(Finding(check, message, ops) for check, message, ops in check_transactions(history)),
    ]
    return Verdict(tuple(findings), figures(history, excused))


def figures(history: History, excused: Collection[int]) -> dict[str, int]:
    """`excused`: on_lost_disk's produces, whose missing values are counted here."""
    counts: Counter[str] = Counter()
    for op in history.ops:
        if isinstance(op, Fault) and op.kind == CLIENT_EPOCH_BUMP:
            counts["kafka.client_epoch_bumps"] += 1  # the client's, not the nemesis's
            continue
        kind = type(op).__name__.lower()
        counts[f"ops.{kind}"] += 1
        if isinstance(op, Produce):
            counts[f"acked.{op.mode}" if op.outcome == "ok" else f"failed.{op.mode}"] += len(op.values)
        elif isinstance(op, Poll):
            counts["records_polled"] += len(op.offsets)
        elif isinstance(op, Commit):
            counts[f"commits.{op.outcome}"] += 1
        elif isinstance(op, SqlRead):
            counts[f"sql.{op.outcome}"] += 1
        elif isinstance(op, Txn):
            counts[f"txn.{op.outcome}"] += 1
            counts[f"txn_records.{op.outcome}"] += len(op.values)
    counts["final_records"] = sum(len(p.offsets) for p in history.final)
    counts["final_hidden_records"] = sum(len(p.hidden) for p in history.final)
    # Records polled before they were hidden (a voided batch committed before its void): those
    # consumers saw a copy the log no longer shows. Counted, not a finding: no check promises more.
    hidden = {(p.topic, p.partition, o) for p in history.final for o in p.hidden}
    if hidden:
        polls = [op for op in history.ops if isinstance(op, Poll)]
        counts["polled_then_hidden"] = sum((op.topic, op.partition, o) in hidden for op in polls for o in op.offsets)
    if history.job is not None:
        counts["job_output_rows"] = len(history.job.values)
    multiset = _log_values(history.final)
    retried = {v for op in history.ops if isinstance(op, Produce) and op.retried for v in op.values}
    counts["duplicates_after_retry"] = sum(n - 1 for v, n in multiset.items() if n > 1 and v in retried)
    leader = {v for op in history.ops if isinstance(op, Produce) and op.mode == "leader" for v in op.values}
    counts["duplicates_leader_reappended"] = sum(n - 1 for v, n in multiset.items() if n > 1 and v in leader)
    lost = (v for op in history.ops if isinstance(op, Produce) and op.index in excused for v in op.values)
    counts["lost_with_disk.leader"] = sum(v not in multiset for v in lost)
    return dict(sorted(counts.items()))


def on_lost_disk(ops: Iterable[Operation]) -> set[int]:
    """The acks=leader produces (indexes) acknowledged by an agent whose disk was wiped after
    the write: sent before the disk-loss fault began (the agent dies right after that instant,
    so nothing sent later reached the old disk) and answered before the agent was back (an
    answer after the restart may come from the new disk)."""
    ops = list(ops)
    wipes: dict[str, list[Fault]] = defaultdict(list)
    for op in ops:
        if isinstance(op, Fault) and op.kind == DISK_LOSS:
            wipes[op.target].append(op)
    return {
        op.index
        for op in ops
        if isinstance(op, Produce)
        and op.mode == "leader"
        and op.outcome == "ok"
        and any(op.start < f.start and op.end <= f.end for f in wipes.get(op.agent, ()))
    }


def _log_values(final: Iterable[FinalLog]) -> Counter[str]:
    return Counter(v for part in final for v in part.values)


def _client_bumps(ops: Iterable[Operation]) -> list[Fault]:
    return [op for op in ops if isinstance(op, Fault) and op.kind == CLIENT_EPOCH_BUMP]


def check_writes(
    produces: list[Produce],
    final: list[FinalLog],
    txns: list[Txn] | None = None,
    bumps: Sequence[Fault] = (),
    lost_disk: Collection[int] = (),
) -> list[Finding]:
    """`lost_disk`: produces whose missing values are excused (on_lost_disk)."""
    in_log = _log_values(final)
    # value -> (writer, duplicates expected: retried without idempotence, or acks=leader)
    sent: dict[str, tuple[int, bool]] = {
        v: (op.index, op.retried or op.mode == "leader") for op in produces for v in op.values
    }
    sent.update({v: (t.index, False) for t in txns or () for v in t.values})
    by_index = {op.index: op for op in produces}
    findings: list[Finding] = []
    for op in produces:
        if op.outcome != "ok" or op.index in lost_disk:
            continue
        missing = [v for v in op.values if v not in in_log]
        if missing:
            shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
            findings.append(
                Finding(
                    "lost",
                    f"{len(missing)} values acknowledged with {op.mode} are not in the log: {shown}",
                    (op.index,),
                )
            )
    for value, n in in_log.items():
        writer = sent.get(value)
        if writer is None:
            findings.append(Finding("phantom", f"{value!r} is in the log ({n}x) but nobody sent it"))
        elif n > 1 and not writer[1]:
            # Still a finding; the client's epoch bumps while it was outstanding are named beside it.
            sender = by_index.get(writer[0])
            near = [b.index for b in bumps if sender is not None and b.start < sender.end and b.end > sender.start]
            said = f" (the client bumped its epoch meanwhile: #{', #'.join(map(str, near))})" if near else ""
            findings.append(Finding("duplicate", f"{value!r} is in the log {n} times, sent once{said}",
                                    (writer[0], *near)))  # fmt: skip
    return findings


def check_offsets(produces: list[Produce], final: list[FinalLog], sparse: set[str] | None = None) -> list[Finding]:
    findings: list[Finding] = []
    at: dict[tuple[str, int, int], str] = {}
    for part in final:
        counts = Counter(part.offsets)
        reused = sorted(o for o, n in counts.items() if n > 1)
        if reused:
            findings.append(Finding("reuse", f"{part.topic}/{part.partition}: offsets read back twice: {reused[:10]}"))
        if part.offsets and part.topic not in (sparse or set()):
            kept = set(counts) | set(part.hidden)
            first, last = min(kept), max(kept)
            missing = sorted(set(range(first, last + 1)) - kept)
            if missing:
                findings.append(
                    Finding("gap", f"{part.topic}/{part.partition}: {len(missing)} offsets missing: {missing[:10]}")
                )
        for offset, value in zip(part.offsets, part.values, strict=True):
            at[(part.topic, part.partition, offset)] = value
    claimed: dict[tuple[str, int, int], Produce] = {}
    for op in produces:
        if op.outcome != "ok" or not op.offsets or op.mode == "leader":
            continue
        for offset, value in zip(op.offsets, op.values, strict=True):
            if offset is None or offset < 0:
                # Acknowledged without an offset (librdkafka reports None): a Kafka batch only whose
                # tail was new, answered with offset -1 (kafka/idempotence.py).
                continue
            key = (op.topic, op.partition, offset)
            other = claimed.get(key)
            if other is not None:
                ops = (other.index, op.index)
                findings.append(Finding("reuse", f"{op.topic}/{op.partition} offset {offset} acknowledged twice", ops))
            claimed[key] = op
            held = at.get(key)
            if held is not None and held != value:
                message = f"{op.topic}/{op.partition} offset {offset} was acknowledged for {value!r}, holds {held!r}"
                findings.append(Finding("reuse", message, (op.index,)))
    return findings


def check_sql(ops: list[Operation]) -> list[Finding]:
    ends: dict[str, list[float]] = defaultdict(list)
    totals: dict[str, list[int]] = defaultdict(list)
    last: dict[str, list[int]] = defaultdict(list)
    acked = sorted(
        (o for o in ops if isinstance(o, Produce) and o.outcome == "ok" and o.mode == "durable"), key=lambda o: o.end
    )
    for p in acked:
        ends[p.topic].append(p.end)
        totals[p.topic].append((totals[p.topic][-1] if totals[p.topic] else 0) + len(p.values))
        last[p.topic].append(p.index)
    findings: list[Finding] = []
    for op in ops:
        if not isinstance(op, SqlRead) or op.outcome != "ok":
            continue
        n = bisect.bisect_left(ends[op.topic], op.start)
        floor = totals[op.topic][n - 1] if n else 0
        if op.count < floor:
            message = f"count(*) of {op.topic} was {op.count}, but {floor} records were acknowledged durably before"
            findings.append(Finding("stale-sql", message, (op.index, last[op.topic][n - 1])))
    return findings


def check_job(history: History) -> list[Finding]:
    """The view is `SELECT v FROM source`: its rows are the source's, each exactly once."""
    job = history.job
    if job is None:
        return []
    rows = [v for part in history.final if part.topic == job.source for v in part.values]
    expected = Counter(_job_value(v) for v in rows)
    got = Counter(job.values)
    findings: list[Finding] = []
    writers = {v: op.index for op in history.ops if isinstance(op, Produce) for v in op.values}
    by_v = {_job_value(v): v for v in rows}
    missing = sorted((expected - got).elements())
    if missing:
        ops = tuple(writers[by_v[v]] for v in missing[:3] if by_v.get(v) in writers)
        message = f"{job.view}: {len(missing)} source rows missing from the view, e.g. v={missing[:5]}"
        findings.append(Finding("exactly-once", message, ops))
    extra = sorted((got - expected).elements())
    if extra:
        ops = tuple(writers[by_v[v]] for v in extra[:3] if by_v.get(v) in writers)
        message = f"{job.view}: {len(extra)} rows more than once or not from the source, e.g. v={extra[:5]}"
        findings.append(Finding("exactly-once", message, ops))
    return findings


def _job_value(text: str) -> int:
    try:
        return int(json.loads(text)["v"])
    except (ValueError, KeyError, TypeError):
        return -1


def render(verdict: Verdict, history: History, *, per_check: int = 5) -> str:
    """The findings of each check (the first `per_check` of each, with the operations they
    involve, one per line): one kind found thousands of times does not hide another."""
    by_index = history.by_index()
    lines = [f"findings: {len(verdict.findings)} {verdict.by_check()}"]
    for name, count in verdict.by_check().items():
        if not count:
            continue
        found = [f for f in verdict.findings if f.check == name]
        for finding in found[:per_check]:
            lines.append(f"- {finding.check}: {finding.message}")
            lines.extend(f"    {describe(by_index[i])}" for i in finding.ops if i in by_index)
        if count > per_check:
            lines.append(f"  … and {count - per_check} more {name} findings")
    return "\n".join(lines)
