"""The clients of a chaos run, each a thread that records every operation in the history:
gRPC SDK producers (acks=leader, acks=durable; retries off so each value is sent once),
an idempotent Kafka producer (confluent-kafka, acks=all), Kafka consumers in one group
committing offsets, a reader of the group's committed offsets and ad-hoc SQL counts.

Every loop is bounded in count (`max_ops`) and time (the run's stop event, and a timeout on
every request), and all traffic goes to loopback addresses.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from streamhouse.chaos.history import (
    CLIENT_EPOCH_BUMP,
    Assign,
    Commit,
    CommittedRead,
    Fault,
    History,
    Poll,
    Produce,
    SqlRead,
)
from streamhouse.client.client import Client, connect
from streamhouse.client.remote import RemoteTransport

PARTITIONS = 3
TOPICS = {"leader": "chaos_leader", "durable": "chaos_durable", "kafka-idempotent": "chaos_kafka", "rest": "chaos_rest"}
GROUP = "chaos-group"
JOB_SOURCE, JOB_VIEW = "chaos_job_src", "chaos_job_view"  # the view is SELECT v FROM the source
REQUEST_TIMEOUT_S = 10.0


class Worker(threading.Thread):
    def __init__(self, name: str, history: History, stop: threading.Event, t0: float, max_ops: int) -> None:
        super().__init__(daemon=True, name=f"chaos-{name}")
        self.process, self.history, self.stop_event, self.t0, self.max_ops = name, history, stop, t0, max_ops
        self.ops = 0
        self.crash = ""

    def now(self) -> float:
        return time.monotonic() - self.t0

    def run(self) -> None:
        try:
            self.work()
        except Exception as exc:  # a workload bug must not pass silently as "no findings"
            self.crash = repr(exc)

    def going(self) -> bool:
        return not self.stop_event.is_set() and self.ops < self.max_ops

    def work(self) -> None:
        raise NotImplementedError


class GrpcProducer(Worker):
    """Batches of `batch` unique values, one partition a request, in turn."""

    def __init__(
        self,
        mode: Literal["leader", "durable"],
        addresses: list[str],
        *args: Any,
        batch: int = 10,
        pause_s: float = 0.01,
        topic: str | None = None,
        json_values: bool = False,
        names: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"grpc-{mode}" if topic is None else f"grpc-{topic}", *args)
        # Agent name by port (Produce.agent): a leader named in a NOT_LEADER answer is its
        # advertised host:port, not our spelling of it.
        self.by_port = {a.rsplit(":", 1)[-1]: name for a, name in (names or {}).items()}
        self.mode, self.addresses, self.batch, self.pause_s = mode, addresses, batch, pause_s
        self.topic = topic or TOPICS[self.mode]
        self.json_values = json_values  # {"v": n} for the job's typed source

    def value(self, n: int) -> str:
        return f'{{"v": {n}}}' if self.json_values else f"{self.mode}-{n}"

    def work(self) -> None:
        topic = self.topic
        n = 0
        with connect(self.addresses, retries=False, timeout_s=REQUEST_TIMEOUT_S) as client:
            while self.going():
                partition = self.ops % PARTITIONS
                values = tuple(self.value(n + i) for i in range(self.batch))
                n += self.batch
                start = self.now()
                index = self.history.next_index()
                try:
                    result = client.produce_batch(
                        topic,
                        [v.encode() for v in values],
                        partition=partition,
                        acks=self.mode,
                    )
                    base = result[0].base_offset
                    offsets = tuple(range(base, base + len(values)))
                    agent = self.agent_of(client, topic, partition)
                    end = self.now()
                    op = Produce(
                        index, self.process, start, end, self.mode, topic, partition, values, "ok", offsets, agent=agent
                    )
                except Exception as exc:
                    op = Produce(
                        index,
                        self.process,
                        start,
                        self.now(),
                        self.mode,
                        topic,
                        partition,
                        values,
                        "fail",
                        error=_short(exc),
                    )
                    self.stop_event.wait(0.2)
                self.history.add(op)
                self.ops += 1
                self.stop_event.wait(self.pause_s)

    def agent_of(self, client: Client, topic: str, partition: int) -> str:
        """The name of the agent that answered the last call for the partition ("" if none)."""
        transport = client.transport
        address = transport.answered.get((topic, partition), "") if isinstance(transport, RemoteTransport) else ""
        return self.by_port.get(address.rsplit(":", 1)[-1], address) if address else ""


KAFKA_DEBUG_ENV = "STREAMHOUSE_CHAOS_KAFKA_DEBUG"


class KafkaProducer(Worker):
    """An idempotent confluent-kafka producer (acks=all, our durable), one op per message."""

    def __init__(
        self, bootstrap: str, *args: Any, rate_per_s: float = 100.0, debug: str = "", log_dir: Path | None = None
    ) -> None:
        super().__init__("kafka-idempotent", *args)
        self.bootstrap, self.rate_per_s = bootstrap, rate_per_s
        # librdkafka's own debug contexts (KAFKA_DEBUG_ENV, e.g. "eos,msg"), written to
        # kafka-idempotent.log in the run's directory: why the client bumped its epoch, what it
        # re-sent. Off by default (megabytes per minute).
        self.debug, self.log_dir = debug, log_dir
        self._epoch: tuple[int, int] | None = None  # (producer id, epoch) last seen in the statistics
        self._stats_at = 0.0

    def _stats(self, text: str) -> None:
        """librdkafka's statistics (every second): a producer id or epoch other than the last
        one seen is recorded as a client event over the interval it changed in. (librdkafka's
        `epoch_cnt` counts producer ids assigned, not the epoch bumps it makes by itself.)"""
        now = self.now()
        try:
            eos = json.loads(text).get("eos") or {}
            current = (int(eos.get("producer_id", -1)), int(eos.get("producer_epoch", -1)))
        except (ValueError, TypeError, AttributeError):  # statistics of another shape: nothing to learn
            return
        if current[0] >= 0 and self._epoch is not None and current != self._epoch:
            detail = f"producer {self._epoch[0]} epoch {self._epoch[1]} -> producer {current[0]} epoch {current[1]}"
            index = self.history.next_index()
            self.history.add(Fault(index, self.process, self._stats_at, now, CLIENT_EPOCH_BUMP, "", detail))
        if current[0] >= 0:
            self._epoch = current
        self._stats_at = now

    def _debug_config(self) -> dict[str, Any]:
        if not self.debug or self.log_dir is None:
            return {}
        logger = logging.getLogger("streamhouse.chaos.librdkafka")
        logger.propagate = False
        handler = logging.FileHandler(self.log_dir / "kafka-idempotent.log")
        handler.setFormatter(logging.Formatter("%(created).3f %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.DEBUG)
        return {"debug": self.debug, "log_level": 7, "logger": logger}

    def work(self) -> None:
        from confluent_kafka import Producer

        topic = TOPICS["kafka-idempotent"]
        producer = Producer(
            {
                "bootstrap.servers": self.bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                # librdkafka's own timeouts (socket.timeout.ms 60 s, request.timeout.ms 30 s,
                # message.timeout.ms 300 s): a request is answered (at worst REQUEST_TIMED_OUT at
                # 80 % of its 30 s timeout_ms) before the client gives up on it. A client that
                # gives up first (socket.timeout.ms below request.timeout.ms, or a message whose
                # timeout runs out in flight) discards an answer it cannot tell from a lost one,
                # bumps its epoch and sends the messages again: duplicates on a Kafka broker and
                # here alike (finding 8 in docs/RELIABILITY.md, README "Durability under faults").
                "linger.ms": 5,
                "log_level": 0,  # connection refusals during faults are expected, not news
                # Its epoch bumps (librdkafka re-numbers messages awaiting a retry: KIP-360) go
                # into the history, so a duplicate's finding shows whether one overlapped it.
                "statistics.interval.ms": 1000,
                "stats_cb": self._stats,
                **self._debug_config(),
            }
        )
        n = 0
        while self.going():
            value = f"kafka-{n}"
            partition = n % PARTITIONS
            n += 1
            start, index = self.now(), self.history.next_index()

            def done(
                err: Any,
                msg: Any,
                value: str = value,
                start: float = start,
                index: int = index,
                partition: int = partition,
            ) -> None:
                end = self.now()
                if err is None:
                    op = Produce(
                        index,
                        self.process,
                        start,
                        end,
                        "kafka-idempotent",
                        topic,
                        msg.partition(),
                        (value,),
                        "ok",
                        (msg.offset(),),
                    )
                else:
                    op = Produce(
                        index,
                        self.process,
                        start,
                        end,
                        "kafka-idempotent",
                        topic,
                        partition,
                        (value,),
                        "fail",
                        error=str(err)[:200],
                    )
                self.history.add(op)

            try:
                producer.produce(topic, value.encode(), partition=partition, on_delivery=done)
            except BufferError:
                producer.poll(0.5)
                continue
            self.ops += 1
            producer.poll(0)
            self.stop_event.wait(1 / self.rate_per_s)
        # The run is bounded: what is not delivered by then is purged, and reported as failed
        # (ERR__PURGE_*: possibly written, so neither lost if absent nor a phantom if present).
        if producer.flush(40):
            producer.purge()
            producer.flush(5)


class KafkaConsumer(Worker):
    """A group member over the Kafka and durable topics: polls, records what it was given,
    and commits (synchronously) what it has read every few polls."""

    def __init__(self, name: str, bootstrap: str, *args: Any, commit_every: int = 5) -> None:
        super().__init__(name, *args)
        self.bootstrap, self.commit_every = bootstrap, commit_every
        self.session = 0

    def work(self) -> None:
        from confluent_kafka import Consumer, KafkaException, TopicPartition

        consumer = Consumer(
            {
                "bootstrap.servers": self.bootstrap,
                "group.id": GROUP,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 1000,
                "max.poll.interval.ms": 30000,
                "socket.timeout.ms": 10_000,
                "log_level": 0,
            }
        )
        positions: dict[tuple[str, int], int] = {}

        def assigned(c: Any, parts: list[Any]) -> None:
            self.session += 1
            self._assign(parts, revoked=False)

        def revoked(c: Any, parts: list[Any]) -> None:
            self._assign(parts, revoked=True)
            for p in parts:
                positions.pop((p.topic, p.partition), None)

        consumer.subscribe([TOPICS["kafka-idempotent"], TOPICS["durable"]], on_assign=assigned, on_revoke=revoked)
        polls = 0
        try:
            while self.going():
                start = self.now()
                messages = consumer.consume(num_messages=500, timeout=0.5)
                end = self.now()
                got: dict[tuple[str, int], tuple[list[int], list[str]]] = defaultdict(lambda: ([], []))
                for m in messages:
                    if m.error() is not None:
                        continue
                    offsets, values = got[(str(m.topic()), int(m.partition() or 0))]
                    offsets.append(int(m.offset() or 0))
                    values.append((m.value() or b"").decode(errors="replace"))
                for (topic, partition), (offsets, values) in got.items():
                    idx = self.history.next_index()
                    op = Poll(
                        idx, self.process, start, end, self.session, topic, partition, tuple(offsets), tuple(values)
                    )
                    self.history.add(op)
                    positions[(topic, partition)] = offsets[-1] + 1
                self.ops += 1
                polls += 1
                if polls % self.commit_every == 0 and positions:
                    for (topic, partition), offset in list(positions.items()):
                        start, idx = self.now(), self.history.next_index()
                        try:
                            consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)
                            commit = Commit(
                                idx, self.process, start, self.now(), self.session, topic, partition, offset, "ok"
                            )
                        except KafkaException as exc:
                            commit = Commit(
                                idx,
                                self.process,
                                start,
                                self.now(),
                                self.session,
                                topic,
                                partition,
                                offset,
                                "fail",
                                _short(exc),
                            )
                        self.history.add(commit)
        finally:
            consumer.close()

    def _assign(self, parts: list[Any], *, revoked: bool) -> None:
        by_topic: dict[str, list[int]] = defaultdict(list)
        for p in parts:
            by_topic[p.topic].append(p.partition)
        t = self.now()
        for topic, partitions in by_topic.items():
            idx = self.history.next_index()
            self.history.add(Assign(idx, self.process, t, t, self.session, topic, tuple(sorted(partitions)), revoked))


class Reader(Worker):
    """Every `every_s`: the group's committed offsets of each consumed topic, and one SQL count."""

    def __init__(self, addresses: list[str], *args: Any, every_s: float = 1.0) -> None:
        super().__init__("reader", *args)
        self.addresses, self.every_s = addresses, every_s

    def work(self) -> None:
        with connect(self.addresses, retries=False, timeout_s=REQUEST_TIMEOUT_S) as client:
            while self.going():
                for topic in (TOPICS["kafka-idempotent"], TOPICS["durable"]):
                    start = self.now()
                    try:
                        rows = client.committed(GROUP, topic)
                    except Exception:
                        continue
                    offsets = {r.partition: r.committed_offset for r in rows if r.committed_offset >= 0}
                    if offsets:
                        idx = self.history.next_index()
                        self.history.add(CommittedRead(idx, self.process, start, self.now(), topic, offsets))
                topic = TOPICS["durable"]
                start, idx = self.now(), self.history.next_index()
                try:
                    table = client.sql(f"SELECT count(*) AS n FROM {topic}")
                    count = int(table.column("n")[0].as_py())
                    self.history.add(SqlRead(idx, self.process, start, self.now(), topic, count, "ok"))
                except Exception as exc:
                    self.history.add(SqlRead(idx, self.process, start, self.now(), topic, -1, "fail", _short(exc)))
                self.ops += 1
                self.stop_event.wait(self.every_s)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
