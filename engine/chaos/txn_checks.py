"""Checks of Kafka transactions over a chaos history, in the style of the published Kafka
analyses (issue 18): the log read back at the end is a read_committed read (our SDK reads
committed), and so are the polls of the transactional topic's reader.

- aborted-read: a value of a transaction that never committed (aborted, or never asked to
  commit) in a read_committed poll or in the log read back.
- torn-transaction: some but not all of a transaction's values in the log read back; or a
  reader that saw part of a transaction and read past the offset of a value it did not see.
- lost-committed: a value of a transaction whose commit was acknowledged missing from the log.

A transaction whose commit got no answer (outcome unknown) may be wholly in or wholly out.
"""

from __future__ import annotations

from collections import defaultdict

from streamhouse.chaos.history import FinalLog, History, Poll, Txn

TXN_CHECKS = ("aborted-read", "torn-transaction", "lost-committed")


def check_transactions(history: History) -> list[tuple[str, str, tuple[int, ...]]]:
    """(check, message, operation indexes) of every finding over the transactions' topics."""
    txns = [op for op in history.ops if isinstance(op, Txn)]
    if not txns:
        return []
    topics = {t.topic for t in txns}
    owner = {(t.topic, v): t for t in txns for v in t.values}
    final = [p for p in history.final if p.topic in topics]
    at: dict[tuple[str, str], tuple[int, int]] = {}  # (topic, value) -> (partition, offset) in the log
    for part in final:
        for offset, value in zip(part.offsets, part.values, strict=True):
            at[(part.topic, value)] = (part.partition, offset)
    polls = [op for op in history.ops if isinstance(op, Poll) and op.topic in topics]
    return [
        *_aborted_reads(owner, final, polls),
        *_torn(txns, at, polls),
        *_lost(txns, at),
    ]


def _never_committed(t: Txn) -> bool:
    return t.outcome == "aborted" or t.intent == "abort"


def _aborted_reads(
    owner: dict[tuple[str, str], Txn], final: list[FinalLog], polls: list[Poll]
) -> list[tuple[str, str, tuple[int, ...]]]:
    findings: list[tuple[str, str, tuple[int, ...]]] = []
    for part in final:
        bad = {owner[(part.topic, v)] for v in part.values if (part.topic, v) in owner}
        for t in sorted((t for t in bad if _never_committed(t)), key=lambda t: t.txn)[:20]:
            message = (
                f"{part.topic}/{part.partition}: the log read back holds values of transaction {t.txn} "
                f"({t.outcome}, asked {t.intent})"
            )
            findings.append(("aborted-read", message, (t.index,)))
    for poll in polls:
        given = [owner[(poll.topic, v)] for v in poll.values if (poll.topic, v) in owner]
        never = [t for t in given if _never_committed(t)]
        if never:
            message = (
                f"{poll.process} read {poll.topic}/{poll.partition} (read_committed) and was given {len(never)} "
                f"values of transactions that never committed, e.g. transaction {never[0].txn} ({never[0].outcome})"
            )
            findings.append(("aborted-read", message, (poll.index, never[0].index)))
    return findings


def _torn(
    txns: list[Txn], at: dict[tuple[str, str], tuple[int, int]], polls: list[Poll]
) -> list[tuple[str, str, tuple[int, ...]]]:
    findings: list[tuple[str, str, tuple[int, ...]]] = []
    for t in txns:
        present = [v for v in t.values if (t.topic, v) in at]
        if present and len(present) < len(t.values):
            missing = [v for v in t.values if (t.topic, v) not in at]
            message = (
                f"transaction {t.txn} ({t.outcome}) is torn in the log read back: {len(present)} of "
                f"{len(t.values)} values, missing {missing[:5]}"
            )
            findings.append(("torn-transaction", message, (t.index,)))
    # A reader that saw part of a transaction must see the rest as it reads past it.
    owner = {(t.topic, v): t for t in txns for v in t.values}
    seen: dict[tuple[str, int], set[str]] = defaultdict(set)  # (reader, txn op) -> values it was given
    read_to: dict[tuple[str, str, int], int] = defaultdict(lambda: -1)  # (reader, topic, partition) -> top offset
    first_poll: dict[tuple[str, int], int] = {}
    by_index = {t.index: t for t in txns}
    for poll in polls:
        for value in poll.values:
            writer = owner.get((poll.topic, value))
            if writer is not None:
                seen[(poll.process, writer.index)].add(value)
                first_poll.setdefault((poll.process, writer.index), poll.index)
        if poll.offsets:
            key = (poll.process, poll.topic, poll.partition)
            read_to[key] = max(read_to[key], max(poll.offsets))
    for (reader, n), values in seen.items():
        t = by_index[n]
        skipped = [
            v
            for v in t.values
            if v not in values
            and (t.topic, v) in at
            and read_to[(reader, t.topic, at[(t.topic, v)][0])] > at[(t.topic, v)][1]
        ]
        if skipped:
            message = (
                f"{reader} read {len(values)} values of transaction {t.txn} and read past {skipped[:5]} "
                f"(in the log at {[at[(t.topic, v)] for v in skipped[:5]]}) without being given them"
            )
            findings.append(("torn-transaction", message, (first_poll[(reader, n)], t.index)))
    return findings


def _lost(txns: list[Txn], at: dict[tuple[str, str], tuple[int, int]]) -> list[tuple[str, str, tuple[int, ...]]]:
    findings: list[tuple[str, str, tuple[int, ...]]] = []
    for t in txns:
        if t.outcome != "committed":
            continue
        missing = [v for v in t.values if (t.topic, v) not in at]
        if missing:
            message = (
                f"transaction {t.txn} was committed but {len(missing)} of its values are not in the log: {missing[:5]}"
            )
            findings.append(("lost-committed", message, (t.index,)))
    return findings
