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
- read-changed: a consumer was given a value at an offset the final log holds another value at.
- non-monotonic: within one assignment session a member was given offsets of a partition out
  of order or twice.
- skip: a member's first offset of a partition after an assignment is past every commit made
  before it (records nobody committed were jumped over).
- regression: a commit (or a read of the committed offsets) below a commit that had already
  succeeded before it started.
- zombie: a commit that succeeded after another member was already assigned the partition in
  a later rebalance.
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

from streamhouse.chaos.history import (
    CLIENT_EPOCH_BUMP,
    Assign,
    Commit,
    CommittedRead,
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
    "lost", "duplicate", "phantom", "gap", "reuse", "read-changed",
    "non-monotonic", "skip", "regression", "zombie", "stale-sql", "exactly-once", *TXN_CHECKS,
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
    findings = [
        *check_writes(produces, history.final, txns, _client_bumps(history.ops), on_lost_disk(history.ops)),
        *check_offsets(produces, history.final, {t.topic for t in txns}),
        *check_reads(history.ops, history.final),
        *check_commits(history.ops),
        *check_sql(history.ops),
        *check_job(history),
        *(Finding(check, message, ops) for check, message, ops in check_transactions(history)),
    ]
    return Verdict(tuple(findings), figures(history))


def figures(history: History) -> dict[str, int]:
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
    excused = on_lost_disk(history.ops)
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


def check_reads(ops: list[Operation], final: list[FinalLog]) -> list[Finding]:
    at = {(p.topic, p.partition, o): v for p in final for o, v in zip(p.offsets, p.values, strict=True)}
    findings: list[Finding] = []
    last: dict[tuple[str, int, str, int], tuple[int, int]] = {}  # (topic, part, member, session) -> (offset, op)
    for op in sorted((o for o in ops if isinstance(o, Poll)), key=lambda o: o.index):
        changed = [o for o, v in zip(op.offsets, op.values, strict=True) if at.get((op.topic, op.partition, o), v) != v]
        if changed:
            message = f"{op.topic}/{op.partition}: offsets {changed[:10]} were read with values the log no longer holds"
            findings.append(Finding("read-changed", message, (op.index,)))
        key = (op.topic, op.partition, op.process, op.session)
        previous = last.get(key)
        for offset in op.offsets:
            if previous is not None and offset <= previous[0]:
                where = f"{op.process} session {op.session} read {op.topic}/{op.partition}"
                message = f"{where} offset {offset} after {previous[0]}"
                findings.append(Finding("non-monotonic", message, (previous[1], op.index)))
            previous = (offset, op.index)
        if previous is not None:
            last[key] = previous
    findings.extend(_skips(ops, {(p.topic, p.partition, o) for p in final for o in p.hidden}))
    return findings


def _skips(ops: list[Operation], hidden: set[tuple[str, int, int]] | None = None) -> list[Finding]:
    """A member's first read of a partition in a session must start at or below the highest
    offset committed (any outcome: a failed commit may have landed) before the session began,
    or only past `hidden` offsets there (records read_committed skips: FinalLog.hidden)."""
    sessions = {(o.process, o.session): o for o in ops if isinstance(o, Assign) and not o.revoked}
    commits = [o for o in ops if isinstance(o, Commit)]
    firsts: dict[tuple[str, int, str, int], Poll] = {}
    for op in sorted((o for o in ops if isinstance(o, Poll) and o.offsets), key=lambda o: o.start):
        firsts.setdefault((op.process, op.session, op.topic, op.partition), op)
    findings: list[Finding] = []
    for (process, session, topic, partition), poll in firsts.items():
        assign = sessions.get((process, session))
        if assign is None:
            continue
        before = [c for c in commits if c.topic == topic and c.partition == partition and c.start < assign.end]
        allowed = max((c.offset for c in before), default=0)
        first = poll.offsets[0]
        if first > allowed and any((topic, partition, o) not in (hidden or ()) for o in range(allowed, first)):
            involved = (assign.index, *(c.index for c in before[-3:]), poll.index)
            message = (
                f"{process} session {session} began {topic}/{partition} at offset {poll.offsets[0]}, "
                f"past the highest commit {allowed}: offsets {allowed}..{poll.offsets[0] - 1} skipped"
            )
            findings.append(Finding("skip", message, involved))
    return findings


def check_commits(ops: list[Operation]) -> list[Finding]:
    findings: list[Finding] = []
    commits = sorted((o for o in ops if isinstance(o, Commit)), key=lambda o: o.start)
    done = sorted((c for c in commits if c.outcome == "ok"), key=lambda c: c.end)
    # Per partition: commit end times and the highest commit up to each, for a bisect per view.
    ends: dict[tuple[str, int], list[float]] = defaultdict(list)
    tops: dict[tuple[str, int], list[Commit]] = defaultdict(list)
    for c in done:
        key = (c.topic, c.partition)
        best = tops[key][-1] if tops[key] and tops[key][-1].offset >= c.offset else c
        ends[key].append(c.end)
        tops[key].append(best)
    for topic, partition, reader, offset, start, index in _committed_observations(ops, commits):
        key = (topic, partition)
        n = bisect.bisect_left(ends[key], start)
        if n and offset < tops[key][n - 1].offset:
            top = tops[key][n - 1]
            message = f"{topic}/{partition}: {reader} saw committed offset {offset} after {top.offset} was committed"
            findings.append(Finding("regression", message, (top.index, index)))
    assigns = [o for o in ops if isinstance(o, Assign) and not o.revoked]
    for commit in done:
        mine = [
            a
            for a in assigns
            if a.process == commit.process and a.session == commit.session and a.topic == commit.topic
        ]
        since = mine[0].start if mine else float("-inf")
        taken = [
            a
            for a in assigns
            if a.topic == commit.topic
            and commit.partition in a.partitions
            and (a.process, a.session) != (commit.process, commit.session)
            and since < a.start
            and a.end < commit.start
        ]
        if taken:
            by = taken[0]
            message = (
                f"{commit.process} session {commit.session} committed {commit.topic}/{commit.partition} at "
                f"{commit.offset} after {by.process} session {by.session} was assigned it"
            )
            findings.append(Finding("zombie", message, (by.index, commit.index)))
    return findings


def _committed_observations(
    ops: list[Operation], commits: list[Commit]
) -> Iterable[tuple[str, int, str, int, float, int]]:
    """(topic, partition, who, offset, start, op index) of every view of the committed offset:
    later successful commits and reads of the committed offsets."""
    for c in commits:
        if c.outcome == "ok":
            yield c.topic, c.partition, f"commit #{c.index}", c.offset, c.start, c.index
    for op in ops:
        if isinstance(op, CommittedRead):
            for partition, offset in op.offsets.items():
                yield op.topic, partition, f"read #{op.index}", offset, op.start, op.index


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
