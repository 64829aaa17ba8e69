"""The transactional Kafka clients of a chaos run (issues 18, 19): a confluent-kafka
transactional producer writing each transaction across 2 or 3 partitions of one topic (one
in four aborted on purpose), and a read_committed consumer reading every partition from the
start. Every transaction and every poll is recorded in the history; txn_checks.py judges them.

Each transaction is finished before the next begins: commit_transaction (retried while its
error is retriable), abort_transaction when the error requires it, a new producer (same
transactional.id: it fences the old one and aborts what it left open) after a fatal error.
Every call has a timeout and the loops stop with the run's stop event.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from streamhouse.chaos.history import Poll, Txn, TxnIntent, TxnOutcome
from streamhouse.chaos.workloads import PARTITIONS, Worker, _short

TXN_TOPIC = "chaos_txn"
TRANSACTIONAL_ID = "chaos-txn"
CALL_TIMEOUT_S = 10.0
COMMIT_ATTEMPTS = 3
ABORT_EVERY = 4  # every 4th transaction is aborted on purpose


def txn_values(n: int) -> tuple[tuple[int, ...], tuple[str, ...]]:
    """Transaction `n`'s partitions and values: 2 or 3 partitions, one or two values each,
    unique values `txn-<n>-<i>` (the checker finds a value's transaction by its value)."""
    width = 2 + n % 2
    partitions = tuple((n + i) % PARTITIONS for i in range(width) for _ in range(1 + (i + n) % 2))
    return partitions, tuple(f"txn-{n}-{i}" for i in range(len(partitions)))


class TxnProducer(Worker):
    def __init__(self, bootstrap: str, *args: Any, pause_s: float = 0.05) -> None:
        super().__init__("kafka-txn", *args)
        self.bootstrap, self.pause_s = bootstrap, pause_s

    def _producer(self) -> Any:
        """A transactional producer, its init_transactions retried until it answers (an agent
        may be down) or the run stops; None when it stops first."""
        from confluent_kafka import KafkaException, Producer

        while not self.stop_event.is_set():
            producer = Producer(
                {
                    "bootstrap.servers": self.bootstrap,
                    "transactional.id": TRANSACTIONAL_ID,
                    "transaction.timeout.ms": 20_000,
                    "message.timeout.ms": 15_000,
                    "socket.timeout.ms": 10_000,
                    "log_level": 0,
                }
            )
            try:
                producer.init_transactions(CALL_TIMEOUT_S)
                return producer
            except KafkaException:
                self.stop_event.wait(1.0)
        return None

    def work(self) -> None:
        from confluent_kafka import KafkaException

        producer = self._producer()
        n = 0
        while producer is not None and self.going():
            partitions, values = txn_values(n)
            intent: TxnIntent = "abort" if n % ABORT_EVERY == ABORT_EVERY - 1 else "commit"
            start, index = self.now(), self.history.next_index()
            outcome: TxnOutcome = "unknown"
            error, fatal = "", False
            try:
                producer.begin_transaction()
                for partition, value in zip(partitions, values, strict=True):
                    producer.produce(TXN_TOPIC, value.encode(), partition=partition)
                outcome, error = self._finish(producer, intent)
            except KafkaException as exc:
                # begin/produce failing: the commit was never asked, so the transaction can only abort.
                intent, error, fatal = "abort", _short(exc), exc.args[0].fatal()
                if not fatal:
                    outcome = self._abort(producer)
            except BufferError as exc:
                intent, error = "abort", _short(exc)
                outcome = self._abort(producer)
            self.history.add(
                Txn(index, self.process, start, self.now(), TXN_TOPIC, n, partitions, values, intent, outcome, error)
            )
            n += 1
            self.ops += 1
            if fatal or outcome == "unknown":
                producer = self._producer()  # fences the old one; its open transaction is aborted
            self.stop_event.wait(self.pause_s)

    def _finish(self, producer: Any, intent: TxnIntent) -> tuple[TxnOutcome, str]:
        from confluent_kafka import KafkaException

        if intent == "abort":
            return self._abort(producer), ""
        error = ""
        for _ in range(COMMIT_ATTEMPTS):
            try:
                producer.commit_transaction(CALL_TIMEOUT_S)
                return "committed", error
            except KafkaException as exc:
                error = _short(exc)
                err = exc.args[0]
                if err.txn_requires_abort():
                    return self._abort(producer), error
                if not err.retriable():
                    return "unknown", error
        return "unknown", error

    def _abort(self, producer: Any) -> TxnOutcome:
        from confluent_kafka import KafkaException

        try:
            producer.abort_transaction(CALL_TIMEOUT_S)
            return "aborted"
        except KafkaException:
            return "unknown"  # never asked to commit, yet not known to be aborted


class TxnReader(Worker):
    """A read_committed consumer of every partition of TXN_TOPIC from offset 0 (no group
    commits: its polls are the reads the checks judge)."""

    def __init__(self, bootstrap: str, *args: Any) -> None:
        super().__init__("txn-reader", *args)
        self.bootstrap = bootstrap

    def work(self) -> None:
        from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": "chaos-txn-reader",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "socket.timeout.ms": 10_000,
                "log_level": 0,
            }
        )
        consumer.assign([TopicPartition(TXN_TOPIC, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
        try:
            while self.going():
                start = self.now()
                messages = consumer.consume(num_messages=500, timeout=0.5)
                end = self.now()
                got: dict[int, tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
                for m in messages:
                    if m.error() is not None:
                        continue
                    offsets, values = got[int(m.partition() or 0)]
                    offsets.append(int(m.offset() or 0))
                    values.append((m.value() or b"").decode(errors="replace"))
                for partition, (offsets, values) in got.items():
                    index = self.history.next_index()
                    poll = Poll(index, self.process, start, end, 1, TXN_TOPIC, partition, tuple(offsets), tuple(values))
                    self.history.add(poll)
                self.ops += 1
        finally:
            consumer.close()
