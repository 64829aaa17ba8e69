"""Checks of what a consumer group's members read and committed over a chaos history
(checker.py runs them beside the write checks):

- read-changed: a consumer was given a value at an offset the final log holds another value at.
- non-monotonic: within one assignment session a member was given offsets of a partition out
  of order or twice.
- skip: a member's first offset of a partition after an assignment is past every commit made
  before it (records nobody committed were jumped over).
- regression: a commit (or a read of the committed offsets) below a commit that had already
  succeeded before it started.
- zombie: a commit that succeeded after another member was already assigned the partition in
  a later rebalance.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable

from streamhouse.chaos.history import Assign, Commit, CommittedRead, FinalLog, Operation, Poll

GROUP_CHECKS = ("read-changed", "non-monotonic", "skip", "regression", "zombie")
Found = tuple[str, str, tuple[int, ...]]  # (check, message, operation indexes), as txn_checks'


def check_group(ops: list[Operation], final: list[FinalLog]) -> list[Found]:
    return [*check_reads(ops, final), *check_commits(ops)]


def check_reads(ops: list[Operation], final: list[FinalLog]) -> list[Found]:
    at = {(p.topic, p.partition, o): v for p in final for o, v in zip(p.offsets, p.values, strict=True)}
    findings: list[Found] = []
    last: dict[tuple[str, int, str, int], tuple[int, int]] = {}  # (topic, part, member, session) -> (offset, op)
    for op in sorted((o for o in ops if isinstance(o, Poll)), key=lambda o: o.index):
        changed = [o for o, v in zip(op.offsets, op.values, strict=True) if at.get((op.topic, op.partition, o), v) != v]
        if changed:
            message = f"{op.topic}/{op.partition}: offsets {changed[:10]} were read with values the log no longer holds"
            findings.append(("read-changed", message, (op.index,)))
        key = (op.topic, op.partition, op.process, op.session)
        previous = last.get(key)
        for offset in op.offsets:
            if previous is not None and offset <= previous[0]:
                where = f"{op.process} session {op.session} read {op.topic}/{op.partition}"
                message = f"{where} offset {offset} after {previous[0]}"
                findings.append(("non-monotonic", message, (previous[1], op.index)))
            previous = (offset, op.index)
        if previous is not None:
            last[key] = previous
    findings.extend(_skips(ops, {(p.topic, p.partition, o) for p in final for o in p.hidden}))
    return findings


def _skips(ops: list[Operation], hidden: set[tuple[str, int, int]] | None = None) -> list[Found]:
    """A member's first read of a partition in a session must start at or below the highest
    offset committed (any outcome: a failed commit may have landed) before the session began,
    or only past `hidden` offsets there (records read_committed skips: FinalLog.hidden)."""
    sessions = {(o.process, o.session): o for o in ops if isinstance(o, Assign) and not o.revoked}
    commits = [o for o in ops if isinstance(o, Commit)]
    firsts: dict[tuple[str, int, str, int], Poll] = {}
    for op in sorted((o for o in ops if isinstance(o, Poll) and o.offsets), key=lambda o: o.start):
        firsts.setdefault((op.process, op.session, op.topic, op.partition), op)
    findings: list[Found] = []
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
            findings.append(("skip", message, involved))
    return findings


def check_commits(ops: list[Operation]) -> list[Found]:
    findings: list[Found] = []
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
            findings.append(("regression", message, (top.index, index)))
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
            findings.append(("zombie", message, (by.index, commit.index)))
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
