"""The chaos checker on hand-made histories: a clean one passes, and each anomaly it looks
for, planted alone, is found by its check and by no other (so every check can fail)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from streamhouse.chaos.checker import CHECKS, check, render
from streamhouse.chaos.history import (
    CLIENT_EPOCH_BUMP,
    Assign,
    Commit,
    CommittedRead,
    Fault,
    FinalLog,
    History,
    JobOutput,
    Mode,
    Poll,
    Produce,
    SqlRead,
)
from streamhouse.chaos.txn_checks import TXN_CHECKS

T = "t"


def clean() -> History:
    """Two writes acknowledged (durable, leader), one failed write that landed, a member that
    reads them in order and commits, a second member taking over after a rebalance, a read of
    the committed offsets and a SQL count."""
    h = History()
    h.add(Produce(1, "p-durable", 0.0, 1.0, "durable", T, 0, ("d0", "d1"), "ok", (0, 1)))
    h.add(Produce(2, "p-leader", 1.0, 2.0, "leader", T, 0, ("l0",), "ok", (2,)))
    h.add(Produce(3, "p-leader", 2.0, 3.0, "leader", T, 0, ("l1",), "fail", error="timeout"))
    h.add(Assign(4, "c1", 0.0, 0.5, 1, T, (0,)))
    h.add(Poll(5, "c1", 3.0, 3.1, 1, T, 0, (0, 1), ("d0", "d1")))
    h.add(Commit(6, "c1", 3.2, 3.3, 1, T, 0, 2, "ok"))
    h.add(Poll(7, "c1", 3.4, 3.5, 1, T, 0, (2,), ("l0",)))
    h.add(Assign(8, "c1", 3.6, 3.7, 1, T, (0,), revoked=True))
    h.add(Assign(9, "c2", 3.8, 4.0, 1, T, (0,)))
    h.add(Poll(10, "c2", 4.1, 4.2, 1, T, 0, (2, 3), ("l0", "l1")))  # re-read after the rebalance: fine
    h.add(Commit(11, "c2", 4.3, 4.4, 1, T, 0, 4, "ok"))
    h.add(CommittedRead(12, "reader", 4.5, 4.6, T, {0: 4}))
    h.add(SqlRead(13, "sql", 4.7, 4.8, T, 4, "ok"))
    h.final.append(FinalLog(T, 0, (0, 1, 2, 3), ("d0", "d1", "l0", "l1")))
    # The job's source (JSON rows) and its view, a projection of it.
    h.add(Produce(14, "p-job", 0.0, 1.0, "durable", "src", 0, ('{"v": 1}', '{"v": 2}'), "ok", (0, 1)))
    h.final.append(FinalLog("src", 0, (0, 1), ('{"v": 1}', '{"v": 2}')))
    h.job = JobOutput("src", "view", (2, 1))
    return h


def _final(h: History, offsets: tuple[int, ...], values: tuple[str, ...]) -> None:
    h.final[0] = FinalLog(T, 0, offsets, values)


def lost(h: History) -> None:
    _final(h, (0, 1, 2), ("d0", "d1", "l1"))  # l0 (acked) gone, l1 moved up
    h.ops = [op for op in h.ops if not isinstance(op, (Poll, SqlRead))]


def duplicate(h: History) -> None:
    _final(h, (0, 1, 2, 3, 4), ("d0", "d1", "l0", "l1", "d1"))


def phantom(h: History) -> None:
    _final(h, (0, 1, 2, 3, 4), ("d0", "d1", "l0", "l1", "x"))


def gap(h: History) -> None:
    _final(h, (0, 1, 2, 4), ("d0", "d1", "l0", "l1"))
    h.ops = [op for op in h.ops if not isinstance(op, Poll) or op.index != 10]


def reuse(h: History) -> None:
    h.add(Produce(20, "p-durable", 5.0, 6.0, "durable", T, 0, ("d2",), "ok", (1,)))  # offset 1 again
    _final(h, (0, 1, 2, 3, 4), ("d0", "d1", "l0", "l1", "d2"))


def read_changed(h: History) -> None:
    h.add(Poll(20, "c2", 4.5, 4.6, 1, T, 0, (4,), ("zz",)))  # nothing at 4 in the end… a value it never held
    _final(h, (0, 1, 2, 3, 4), ("d0", "d1", "l0", "l1", "l0b"))
    h.add(Produce(21, "p-leader", 4.0, 4.1, "leader", T, 0, ("l0b", "zz"), "fail"))


def non_monotonic(h: History) -> None:
    h.add(Poll(20, "c2", 4.25, 4.28, 1, T, 0, (3,), ("l1",)))  # 3 again in the same session


def skip(h: History) -> None:
    h.ops = [op for op in h.ops if op.index != 10]
    h.add(Poll(10, "c2", 4.1, 4.2, 1, T, 0, (3,), ("l1",)))  # starts at 3, last commit said 2


def regression(h: History) -> None:
    h.ops = [op for op in h.ops if op.index != 12]
    h.add(CommittedRead(12, "reader", 4.5, 4.6, T, {0: 2}))


def zombie(h: History) -> None:
    h.add(Commit(20, "c1", 4.1, 4.2, 1, T, 0, 3, "ok"))  # c1 after c2 was assigned partition 0


def stale_sql(h: History) -> None:
    h.ops = [op for op in h.ops if op.index != 13]
    h.add(SqlRead(13, "sql", 4.7, 4.8, T, 1, "ok"))  # 2 durable records were acknowledged before


def exactly_once(h: History) -> None:
    h.job = JobOutput("src", "view", (1, 2, 2))  # a replayed checkpoint wrote v=2 twice


ANOMALIES: dict[str, Callable[[History], None]] = {
    "lost": lost,
    "duplicate": duplicate,
    "phantom": phantom,
    "gap": gap,
    "reuse": reuse,
    "read-changed": read_changed,
    "non-monotonic": non_monotonic,
    "skip": skip,
    "regression": regression,
    "zombie": zombie,
    "stale-sql": stale_sql,
    "exactly-once": exactly_once,
}


def test_a_clean_history_passes() -> None:
    verdict = check(clean())
    assert verdict.ok, render(verdict, clean())
    assert verdict.counts["acked.durable"] == 4 and verdict.counts["acked.leader"] == 1
    assert verdict.counts["records_polled"] == 5 and verdict.counts["job_output_rows"] == 2


def test_every_check_has_an_anomaly_here() -> None:
    """(The Kafka transaction checks have theirs in test_txn_checks.py.)"""
    assert sorted(ANOMALIES) == sorted(set(CHECKS) - set(TXN_CHECKS))


@pytest.mark.parametrize("name", sorted(ANOMALIES))
def test_each_anomaly_is_found_by_its_check_alone(name: str) -> None:
    h = clean()
    ANOMALIES[name](h)
    verdict = check(h)
    found = {f.check for f in verdict.findings}
    assert found == {name}, render(verdict, h)
    text = render(verdict, h)
    assert f"- {name}:" in text
    if name not in ("phantom", "gap"):  # these involve only the final log
        assert "    #" in text  # the operations involved are printed


def test_duplicates_of_a_retried_write_are_counted_not_reported() -> None:
    h = clean()
    h.ops[1] = Produce(2, "p-leader", 1.0, 2.0, "leader", T, 0, ("l0",), "ok", (2,), retried=True)
    _final(h, (0, 1, 2, 3, 4), ("d0", "d1", "l0", "l1", "l0"))
    verdict = check(h)
    assert verdict.ok, render(verdict, h)
    assert verdict.counts["duplicates_after_retry"] == 1


def test_a_duplicate_names_the_client_epoch_bumps_that_overlapped_its_write() -> None:
    """Still a finding (idempotence promises one copy); the bump is named so the cause shows."""
    h = clean()
    h.add(Fault(20, "p-durable", 0.5, 1.5, CLIENT_EPOCH_BUMP, "", "producer 7 now at epoch 1 (1 bumps)"))
    h.add(Fault(21, "p-durable", 5.0, 6.0, CLIENT_EPOCH_BUMP, "", "producer 7 now at epoch 2 (2 bumps)"))
    duplicate(h)  # d1, written by #1 over [0, 1]
    verdict = check(h)
    (finding,) = verdict.findings
    assert finding.check == "duplicate" and finding.ops == (1, 20)
    assert "the client bumped its epoch meanwhile: #20" in finding.message
    assert verdict.counts["kafka.client_epoch_bumps"] == 2 and "ops.fault" not in verdict.counts


def test_offsets_of_voided_batches_are_no_gap() -> None:
    """A voided idempotent batch (engine/kafka/unacked.py) holds offsets read_committed skips."""
    h = clean()
    h.add(Produce(20, "p-durable", 5.0, 6.0, "durable", T, 0, ("d2",), "fail"))  # never acknowledged
    h.final[0] = FinalLog(T, 0, (0, 1, 2, 3, 5), ("d0", "d1", "l0", "l1", "d2"), hidden=(4,))
    h.add(Poll(21, "c2", 6.1, 6.2, 1, T, 0, (4,), ("d2",)))  # read before the void: counted
    verdict = check(h)
    assert verdict.ok, render(verdict, h)
    assert verdict.counts["final_hidden_records"] == 1 and verdict.counts["polled_then_hidden"] == 1
    h.final[0] = FinalLog(T, 0, (0, 1, 2, 3, 5), ("d0", "d1", "l0", "l1", "d2"))
    assert {f.check for f in check(h).findings} == {"gap"}


def test_a_session_starting_past_hidden_offsets_only_is_no_skip() -> None:
    """A read_committed member committed at 2; offsets 2..3 were voided since: it begins at 4."""
    h = clean()
    h.add(Produce(20, "p-durable", 5.0, 6.0, "durable", T, 0, ("d2",), "ok", (4,)))
    h.ops = [op for op in h.ops if not (isinstance(op, Poll) and op.index == 10)]
    h.add(Poll(21, "c2", 6.1, 6.2, 1, T, 0, (4,), ("d2",)))
    h.final[0] = FinalLog(T, 0, (0, 1, 4), ("d0", "d1", "d2"), hidden=(2, 3))
    found = {f.check for f in check(h).findings}
    assert "skip" not in found, render(check(h), h)
    h.final[0] = FinalLog(T, 0, (0, 1, 3, 4), ("d0", "d1", "l1", "d2"), hidden=(2,))  # 3 was readable
    assert "skip" in {f.check for f in check(h).findings}


def test_an_acks_leader_value_appended_again_after_a_takeover_is_counted_not_reported() -> None:
    h = clean()
    _final(h, (0, 1, 2, 3, 4), ("d0", "d1", "l0", "l1", "l0"))  # sent once, retries off
    verdict = check(h)
    assert verdict.ok, render(verdict, h)
    assert verdict.counts["duplicates_leader_reappended"] == 1


def test_leader_acks_may_move_but_durable_ones_may_not() -> None:
    h = clean()
    # The old leader's acknowledged tail appended again at the end: l0 acked at 2, now at 4.
    _final(h, (0, 1, 2, 3, 4), ("d0", "d1", "l1", "x", "l0"))
    h.add(Produce(20, "p-leader", 2.0, 3.0, "leader", T, 0, ("x",), "fail"))
    h.ops = [op for op in h.ops if not isinstance(op, Poll)]
    assert check(h).ok, render(check(h), h)
    h.ops[0] = Produce(1, "p-durable", 0.0, 1.0, "durable", T, 0, ("d0", "d1"), "ok", (1, 2))
    assert {f.check for f in check(h).findings} == {"reuse"}


def test_writes_acknowledged_without_an_offset_claim_none() -> None:
    """Kafka answers a batch only whose tail was new with offset -1 (kafka/idempotence.py): its
    messages are acknowledged, each reported at -1 (librdkafka: None), and no two of them reuse
    an offset."""
    h = clean()
    h.add(Produce(20, "p-kafka", 5.0, 6.0, "kafka-idempotent", T, 0, ("k0",), "ok", (-1,)))
    h.add(Produce(21, "p-kafka", 5.0, 6.0, "kafka-idempotent", T, 0, ("k1",), "ok", (None,)))  # type: ignore[arg-type]
    _final(h, (0, 1, 2, 3, 4, 5), ("d0", "d1", "l0", "l1", "k0", "k1"))
    verdict = check(h)
    assert verdict.ok, render(verdict, h)
    _final(h, (0, 1, 2, 3, 4), ("d0", "d1", "l0", "l1", "k0"))  # k1 gone: still lost
    assert {f.check for f in check(h).findings} == {"lost"}


def _lost_on(agent: str, wipe: tuple[float, float], mode: Mode = "leader", answered: float = 2.0) -> History:
    """l0 acknowledged by agent "a" over [1.0, answered] and missing from the log; a disk-loss
    fault on `agent` over `wipe` (kill and wipe at its start, ready again at its end)."""
    h = clean()
    h.ops = [op for op in h.ops if not isinstance(op, (Poll, SqlRead)) and op.index != 2]
    h.add(Produce(2, "p-leader", 1.0, answered, mode, T, 0, ("l0",), "ok", (2,), agent="a"))
    h.add(Fault(30, "nemesis", *wipe, "disk-loss", agent, "down 0.5s, disk wiped"))
    _final(h, (0, 1, 2), ("d0", "d1", "l1"))
    return h


def test_an_acks_leader_value_whose_agent_lost_its_disk_later_is_counted_not_reported() -> None:
    h = _lost_on("a", (2.5, 6.0))
    verdict = check(h)
    assert verdict.ok, render(verdict, h)
    assert verdict.counts["lost_with_disk.leader"] == 1
    # Answered while the agent was being killed (before it was back): the old disk, still excused.
    assert check(_lost_on("a", (1.5, 6.0), answered=1.8)).ok


@pytest.mark.parametrize(
    ("why", "history"),
    [
        ("another agent's disk was lost", lambda: _lost_on("b", (2.5, 6.0))),
        ("the disk was lost before the write was sent", lambda: _lost_on("a", (0.2, 0.9))),
        ("answered after the agent was back, on its new disk", lambda: _lost_on("a", (0.5, 1.5), answered=2.0)),
        ("acks=durable survives a lost disk", lambda: _lost_on("a", (2.5, 6.0), mode="durable")),
    ],
)
def test_a_lost_disk_excuses_no_other_loss(why: str, history: Callable[[], History]) -> None:
    h = history()
    verdict = check(h)
    # (acks=durable: its offset now holding another value is a reuse finding besides)
    assert "lost" in {f.check for f in verdict.findings}, f"{why}: {render(verdict, h)}"
    assert verdict.counts["lost_with_disk.leader"] == 0, why


def test_history_round_trips_through_its_file(tmp_path: Path) -> None:
    h = clean()
    skip(h)
    h.save(tmp_path / "history.jsonl")
    again = History.load(tmp_path / "history.jsonl")
    assert sorted(map(repr, again.ops)) == sorted(map(repr, h.ops)) and again.final == h.final
    assert again.job == h.job
    assert check(again).findings == check(h).findings
