"""The idempotent producer over the Kafka listener.

End to end: a TCP proxy between a real idempotent client (librdkafka, enable.idempotence)
and a `streamhouse serve --kafka-port` subprocess drops Produce responses and cuts the
connection, so the client retries batches the agent already wrote; the log must hold every
record exactly once, in order, with dense offsets. Then the sequence rules themselves
(engine/kafka/idempotence.py): retries answered with their original offsets, gaps and
fenced epochs refused, and a duplicate that arrives while its original is still being
written waits for it instead of being acknowledged first.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

import streamhouse
from streamhouse.kafka.idempotence import (
    INVALID_PRODUCER_EPOCH,
    OUT_OF_ORDER_SEQUENCE_NUMBER,
    UNKNOWN_OFFSET,
    UNKNOWN_PRODUCER_ID,
    ProducerStates,
    SequenceError,
)
from streamhouse.storage.metadata.producer_state import SEQUENCE_SPAN, ProducerBatch, ProducerState, fold
from tests.agent_process import AgentLauncher, read_log

TOPIC = "exactly-once-writes"


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


class DroppingProxy:
    """Forwards Kafka frames both ways; the first `drops` Produce responses are swallowed
    and the connection cut, as a network failure after the write would."""

    def __init__(self, target_port: int, drops: int) -> None:
        self.target_port = target_port
        self.drops = drops
        self.dropped = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.target_port))
                apis: dict[int, int] = {}
                threading.Thread(target=self._up, args=(client, server, apis), daemon=True).start()
                threading.Thread(target=self._down, args=(server, client, apis), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, apis: dict[int, int]) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                size = _recv_exact(client, 4)
                frame = _recv_exact(client, struct.unpack(">i", size)[0])
                api_key, _, correlation_id = struct.unpack(">hhi", frame[:8])
                apis[correlation_id] = api_key
                server.sendall(size + frame)

    def _down(self, server: socket.socket, client: socket.socket, apis: dict[int, int]) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                size = _recv_exact(server, 4)
                frame = _recv_exact(server, struct.unpack(">i", size)[0])
                (correlation_id,) = struct.unpack(">i", frame[:4])
                with self.lock:
                    drop = apis.get(correlation_id) == 0 and self.dropped < self.drops
                    self.dropped += drop
                if drop:
                    for sock in (client, server):  # shutdown wakes the other pump's blocked recv
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                        sock.close()
                    return
                client.sendall(size + frame)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[AgentLauncher]:
    with AgentLauncher(tmp_path) as agents:
        yield agents


def test_retried_batches_are_written_once(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], launcher: AgentLauncher
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        kafka_port = s.getsockname()[1]
    proxy = DroppingProxy(kafka_port, drops=3)
    url, endpoint = s3_url
    agent = launcher.start(
        *("--data-dir", str(tmp_path / "a"), "--metadata", pg_url, "--object-store", url, "--s3-endpoint", endpoint),
        *("--kafka-port", str(kafka_port), "--kafka-advertised", f"127.0.0.1:{proxy.port}"),
    )
    with streamhouse.connect(agent.address) as client:
        client.create_topic(TOPIC, 1)
    errors: list[object] = []
    producer = Producer(
        {"bootstrap.servers": f"127.0.0.1:{proxy.port}", "enable.idempotence": True, "acks": "all",
         "linger.ms": 2, "batch.num.messages": 7, "retry.backoff.ms": 50, "message.timeout.ms": 60000}
    )  # fmt: skip
    sent = [f"record-{i}".encode() for i in range(200)]
    try:
        for value in sent:
            producer.produce(TOPIC, value=value, partition=0, on_delivery=lambda err, _m: err and errors.append(err))
            producer.poll(0)
        assert producer.flush(60) == 0
    finally:
        proxy.close()
    assert errors == []
    assert proxy.dropped == 3  # the client really did have to retry written batches
    with streamhouse.connect(agent.address) as client:
        assert read_log(client, TOPIC)[0] == sent  # each once, in order, offsets dense (read_log checks)


# ---------------------------------------------------------------- the sequence rules


class Log:
    """Stands in for the partition's writer: offsets handed out in order, each producer's
    state folded per batch with the writer's own value code (storage/metadata/producer_state.py),
    a retry of a kept batch answered with the original's offsets, and a gate to hold a write."""

    def __init__(self) -> None:
        self.end = 0
        self.writes = 0
        self.written = 0  # records
        self.gate = asyncio.Event()
        self.gate.set()
        self.states: dict[int, dict[int, ProducerState]] = {}

    async def write(
        self,
        states: ProducerStates,
        partition: int,
        pid: int,
        epoch: int,
        first: int,
        count: int,
        tail_only: bool = False,
    ) -> int:
        async def lookup() -> ProducerState | None:
            return self.states.get(partition, {}).get(pid)

        async def append(skip: int) -> int:
            await self.gate.wait()
            known = self.states.setdefault(partition, {})
            start, n = (first + skip) % SEQUENCE_SPAN, count - skip  # the batch's first `skip` records left out
            last = (start + n - 1) % SEQUENCE_SPAN
            done = known[pid].find(epoch, start, last) if pid in known else None
            if done is not None:
                return done.base_offset
            base, self.end = self.end, self.end + n
            self.writes += 1
            self.written += n
            known.update(fold(known, [ProducerBatch(pid, epoch, start, last, base, n)]))
            return base

        return await states.write("t", partition, pid, epoch, first, count, lookup, append, tail_only=tail_only)


async def test_retries_get_their_original_offsets_and_gaps_are_refused() -> None:
    states, log = ProducerStates(), Log()
    pid = 7
    assert await log.write(states, 0, pid, 0, 0, 3) == 0
    assert await log.write(states, 0, pid, 0, 3, 2) == 3
    assert await log.write(states, 0, pid, 0, 0, 3) == 0  # retry of the first
    assert await log.write(states, 0, pid, 0, 3, 2) == 3
    assert log.writes == 2
    with pytest.raises(SequenceError) as info:
        await log.write(states, 0, pid, 0, 9, 1)  # 5..8 never arrived
    assert info.value.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
    # Partitions are separate sequences; another producer starts at 0.
    assert await log.write(states, 1, pid, 0, 0, 1) == 5
    with pytest.raises(SequenceError) as info:
        await log.write(states, 0, pid + 1, 0, 4, 1)
    assert info.value.error_code == UNKNOWN_PRODUCER_ID
    assert log.writes == 3


async def test_a_batch_straddling_the_last_written_sequence_has_only_its_tail_written() -> None:
    """A batch whose head is in the log and tail is not (after a leader move the client re-sent
    messages the old leader had written in a batch of other boundaries, fourteenth fault run):
    its tail continues the sequence and is written once; it is answered with offset -1, its
    records not being at consecutive offsets. Without `tail_only` (transactions) it is still
    OUT_OF_ORDER_SEQUENCE_NUMBER, as on a Kafka broker."""
    states, log = ProducerStates(), Log()
    pid = 7
    assert await log.write(states, 0, pid, 0, 0, 10) == 0  # sequences 0..9 at offsets 0..9
    with pytest.raises(SequenceError) as info:
        await log.write(states, 0, pid, 0, 6, 8)
    assert info.value.error_code == OUT_OF_ORDER_SEQUENCE_NUMBER
    assert await log.write(states, 0, pid, 0, 6, 8, tail_only=True) == UNKNOWN_OFFSET  # 6..9 in, 10..13 new
    assert (log.writes, log.written, log.end) == (2, 14, 14)
    # Its retry (the answer lost) is answered the same way by the tail it left, not written again.
    assert await log.write(states, 0, pid, 0, 6, 8, tail_only=True) == UNKNOWN_OFFSET
    assert await log.write(states, 0, pid, 0, 14, 2, tail_only=True) == 14  # the sequence goes on from 14
    # Wholly written without being a kept batch's retry, or beyond a gap: refused as before.
    with pytest.raises(SequenceError):
        await log.write(states, 0, pid, 0, 3, 4, tail_only=True)
    with pytest.raises(SequenceError):
        await log.write(states, 0, pid, 0, 20, 2, tail_only=True)
    assert (log.writes, log.written) == (3, 16)


async def test_epochs_fence_and_restart_sequences() -> None:
    states, log = ProducerStates(), Log()
    pid = 7
    await log.write(states, 0, pid, 0, 0, 2)
    assert await log.write(states, 0, pid, 1, 0, 1) == 2  # bumped epoch starts at 0
    with pytest.raises(SequenceError) as info:
        await log.write(states, 0, pid, 0, 2, 1)
    assert info.value.error_code == INVALID_PRODUCER_EPOCH
    with pytest.raises(SequenceError):
        await log.write(states, 0, pid, 2, 5, 1)


async def test_a_duplicate_waits_for_its_original_to_be_written() -> None:
    states, log = ProducerStates(), Log()
    pid = 7
    log.gate.clear()  # the original's write is slow (a durable ack under way)
    original = asyncio.ensure_future(log.write(states, 0, pid, 0, 0, 4))
    await asyncio.sleep(0.01)
    duplicate = asyncio.ensure_future(log.write(states, 0, pid, 0, 0, 4))
    await asyncio.sleep(0.05)
    assert not original.done() and not duplicate.done()  # not acknowledged before the write
    log.gate.set()
    assert await original == 0
    assert await duplicate == 0
    assert log.writes == 1


async def test_only_the_last_five_batches_are_remembered() -> None:
    states, log = ProducerStates(), Log()
    pid = 7
    for seq in range(6):
        await log.write(states, 0, pid, 0, seq, 1)
    with pytest.raises(SequenceError):
        await log.write(states, 0, pid, 0, 0, 1)  # too old to recognise: refused, not rewritten
    assert await log.write(states, 0, pid, 0, 1, 1) == 1
