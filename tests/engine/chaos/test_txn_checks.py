"""The Kafka transaction checks (engine/chaos/txn_checks.py) on hand-made histories: a clean
one passes, and each anomaly, planted alone, is found by its check and by no other; a
transactional topic's sparse offsets (control records) and its values are not taken for gaps
or phantoms."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from streamhouse.chaos.checker import check
from streamhouse.chaos.history import FinalLog, History, Poll, Txn
from streamhouse.chaos.txn_workload import txn_values

T = "chaos_txn"


def clean() -> History:
    """Transaction 0 committed across partitions 0 and 1, transaction 1 aborted, transaction 2
    committed; the log has commit markers between them (offsets 2 and 5 of partition 0 are
    control records and the aborted batch, which a read_committed read does not return)."""
    h = History()
    h.add(Txn(1, "kafka-txn", 0.0, 1.0, T, 0, (0, 1), ("txn-0-0", "txn-0-1"), "commit", "committed"))
    h.add(Txn(2, "kafka-txn", 1.0, 2.0, T, 1, (0, 1), ("txn-1-0", "txn-1-1"), "abort", "aborted"))
    h.add(Txn(3, "kafka-txn", 2.0, 3.0, T, 2, (0, 1), ("txn-2-0", "txn-2-1"), "commit", "unknown", "timed out"))
    h.add(Poll(4, "txn-reader", 3.0, 3.1, 1, T, 0, (0, 6), ("txn-0-0", "txn-2-0")))
    h.add(Poll(5, "txn-reader", 3.0, 3.1, 1, T, 1, (0, 6), ("txn-0-1", "txn-2-1")))
    h.final.append(FinalLog(T, 0, (0, 6), ("txn-0-0", "txn-2-0")))
    h.final.append(FinalLog(T, 1, (0, 6), ("txn-0-1", "txn-2-1")))
    return h


def aborted_in_the_log(h: History) -> None:
    h.final[0] = FinalLog(T, 0, (0, 3, 6), ("txn-0-0", "txn-1-0", "txn-2-0"))
    h.final[1] = FinalLog(T, 1, (0, 3, 6), ("txn-0-1", "txn-1-1", "txn-2-1"))
    h.ops = [op for op in h.ops if not isinstance(op, Poll)]


def aborted_polled(h: History) -> None:
    h.add(Poll(6, "txn-reader-2", 4.0, 4.1, 1, T, 0, (3,), ("txn-1-0",)))


def torn_in_the_log(h: History) -> None:
    h.final[1] = FinalLog(T, 1, (0,), ("txn-0-1",))  # txn-2-1 (outcome unknown) missing, txn-2-0 there
    h.ops = [op for op in h.ops if not isinstance(op, Poll)]


def torn_read(h: History) -> None:
    # The reader got txn-0-0 and read partition 1 past offset 0 (to 6) without txn-0-1.
    h.ops = [op for op in h.ops if not (isinstance(op, Poll) and op.partition == 1)]
    h.add(Poll(6, "txn-reader", 3.0, 3.1, 1, T, 1, (6,), ("txn-2-1",)))


def lost_committed(h: History) -> None:
    h.final[0] = FinalLog(T, 0, (6,), ("txn-2-0",))
    h.final[1] = FinalLog(T, 1, (6,), ("txn-2-1",))
    h.ops = [op for op in h.ops if not isinstance(op, Poll)]


def test_a_clean_transactional_history_passes() -> None:
    verdict = check(clean())
    assert verdict.findings == ()
    assert verdict.counts["txn.committed"] == 1 and verdict.counts["txn.aborted"] == 1
    assert verdict.counts["txn_records.unknown"] == 2


@pytest.mark.parametrize(
    ("plant", "expected"),
    [
        (aborted_in_the_log, "aborted-read"),
        (aborted_polled, "aborted-read"),
        (torn_in_the_log, "torn-transaction"),
        (torn_read, "torn-transaction"),
        (lost_committed, "lost-committed"),
    ],
)
def test_each_transaction_anomaly_is_found_by_its_check_alone(plant: Callable[[History], None], expected: str) -> None:
    h = clean()
    plant(h)
    found = {check_name: n for check_name, n in check(h).by_check().items() if n}
    assert set(found) == {expected}, found


def test_a_transaction_never_asked_to_commit_must_not_be_read_even_with_an_unknown_abort() -> None:
    h = clean()
    h.ops[1] = Txn(2, "kafka-txn", 1.0, 2.0, T, 1, (0, 1), ("txn-1-0", "txn-1-1"), "abort", "unknown")
    aborted_polled(h)
    assert [f.check for f in check(h).findings] == ["aborted-read"]


def test_transactions_span_two_or_more_partitions_with_unique_values() -> None:
    seen: set[str] = set()
    for n in range(40):
        partitions, values = txn_values(n)
        assert len(set(partitions)) >= 2 and len(partitions) == len(values)
        assert not seen & set(values)
        seen |= set(values)
