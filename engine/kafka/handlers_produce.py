"""The Kafka Produce and InitProducerId handlers over the front-end contract (engine/api/contract.py).

A produce request is decoded whole (every batch's CRC, codec and records) before anything is
written, so a corrupt batch stores nothing. Its partitions are appended in request order, each
once the one before has its offsets, then acknowledged together; `Context.applied` tells the
server (server.py) when the records have their place, so the next request is read meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamhouse.api.contract import FrontEnd
from streamhouse.api.types import Acks
from streamhouse.kafka import errors as codes
from streamhouse.kafka.ack_stalls import AckStalls, stall_limit_s
from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.kafka.handlers import Body, Context, Handler, error_code, produce_error_code
from streamhouse.kafka.idempotence import INVALID_PRODUCER_EPOCH, ProducerStates
from streamhouse.kafka.record.batch import DEFAULT_MAX_UNCOMPRESSED, KafkaBatch, merged_records, produced_batches
from streamhouse.kafka.timestamps import log_append_time
from streamhouse.kafka.txn_produce import produce_transactional
from streamhouse.kafka.txn_v2 import IMPLICIT_PRODUCE_VERSION
from streamhouse.kafka.unacked import Key as ProducerKey
from streamhouse.kafka.unacked import Unacknowledged
from streamhouse.storage.clock import now_ms
from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.metadata.producer_state import SEQUENCE_SPAN, ProducerBatch, tag
from streamhouse.storage.metadata.txn_reads import CommittedReads

log = logging.getLogger(__name__)
# acks=all is our durable. acks=0 is appended as acks=1 and not answered (server.py): as on a
# Kafka broker its records are in place before the connection's next request is read; our
# acks=none would append them in the background, racing a Fetch sent right behind them.
_ACKS: Mapping[int, Acks] = {0: "leader", 1: "leader", -1: "durable"}
# acks=all is answered REQUEST_TIMED_OUT at this share of the request's timeout_ms, so the
# answer is there before a client that uses the same value as its own request timeout gives up.
_ACK_TIMEOUT_SHARE = 0.8
# An acks=all partition's idempotent batches (as the leader holds them), answered with success
# only if none was voided meanwhile (unacked.py).
Tracked = list[tuple[ProducerKey, ProducerBatch]]
# A success answer's kept rows deleted for it (unacked.py `answering`), with its token.
Released = tuple[ProducerKey, int, list[ProducerBatch]]


def _resolve(future: asyncio.Future[None], *_: object) -> None:
    if not future.done():
        future.set_result(None)


def _noop() -> None:
    pass


class ProduceHandlers:
    def __init__(
        self, front: FrontEnd, *, max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED, txn: CommittedReads | None = None
    ) -> None:
        self.front = front
        self._late: set[asyncio.Task[Body]] = set()  # acks=all answered REQUEST_TIMED_OUT, still running
        self.txn = txn  # transactional batches (txn_produce.py); None: refused
        self.max_uncompressed = max_uncompressed
        self.producers = ProducerStates()
        self.stalls = AckStalls()  # acks=all waits per partition: new batches refused while stalled
        # acks=all idempotent batches written and not yet answered with success, voided when their
        # producer starts a new epoch (unacked.py); it needs the store's aborted ranges.
        self.unacked = Unacknowledged(self._void, front) if txn is not None else None
        self.by_key: dict[int, Handler] = {0: self.produce, 22: self.init_producer_id}

    async def produce(self, body: Body, version: int, ctx: Context) -> Body:
        """The partitions are appended one after the other, in request order, each once the
        one before has its offsets; their acknowledgements (acks=all: a segment commit) are
        then awaited together, so one commit round answers the whole request."""
        acks = _ACKS.get(body["acks"])
        txn_id = body["transactional_id"]
        implicit = version >= IMPLICIT_PRODUCE_VERSION  # transaction version 2 adds partitions (txn_v2.py)
        topics = body["topic_data"]
        # acks=all waits for a segment commit, which an object-store outage can hold: past the
        # request's timeout_ms it is answered REQUEST_TIMED_OUT (the records commit later), as a
        # Kafka broker does; an idempotent producer's retry gets the original offsets.
        limit_s = (
            body["timeout_ms"] * _ACK_TIMEOUT_SHARE / 1000 if acks == "durable" and body["timeout_ms"] > 0 else None
        )
        # While a partition's oldest acks=all append has waited this long, its new acks=all batches
        # are placed unwritten, refused NOT_ENOUGH_REPLICAS when the stall ends (ack_stalls.py).
        stall = None
        if acks == "durable":
            stall = (stall_limit_s(body["timeout_ms"]), self.stalls.now() + (limit_s or 0.0))
        started = asyncio.get_running_loop().time()
        # Every partition decoded before any is written; a newer producer epoch counts from here.
        decoded = [[self._decoded(part["records"]) for part in topic["partition_data"]] for topic in topics]
        if acks == "durable":
            for topic, parts in zip(topics, decoded, strict=True):
                for part, batches in zip(topic["partition_data"], parts, strict=True):
                    self._arrived(topic["name"], part["index"], batches)
        if limit_s is None and len(topics) == 1 and len(topics[0]["partition_data"]) == 1:
            # One partition (a producer with one partition's batch ready): no task to order it
            # behind others; the server reads the next request once it is placed (or answered).
            name, part = topics[0]["name"], topics[0]["partition_data"][0]
            tracked: Tracked = []
            result = await self._produce_partition(
                name, part["index"], decoded[0][0], acks, ctx.applied, txn_id, stall, implicit, tracked
            )
            await self._settle_at_send([(result, tracked)], ctx)
            return {"responses": [{"name": name, "partition_responses": [result]}], "throttle_time_ms": 0}
        loop = asyncio.get_running_loop()
        tasks: list[tuple[str, int, asyncio.Task[Body]]] = []
        tracks: list[Tracked] = []
        try:
            for topic, parts in zip(topics, decoded, strict=True):
                for part, batches in zip(topic["partition_data"], parts, strict=True):
                    placed: asyncio.Future[None] = loop.create_future()
                    tracks.append([])
                    work = self._produce_partition(
                        topic["name"], part["index"], batches, acks, functools.partial(_resolve, placed),
                        txn_id, stall, implicit, tracks[-1],
                    )  # fmt: skip
                    task = asyncio.create_task(work)
                    task.add_done_callback(functools.partial(_resolve, placed))  # refused before appending
                    tasks.append((topic["name"], part["index"], task))
                    await placed
            if ctx.applied is not None:
                ctx.applied()  # (on a failure the server sees this handler end instead)
            if limit_s is None:
                results = await asyncio.gather(*(task for _, _, task in tasks))
            else:
                left = limit_s - (loop.time() - started)
                if tasks:  # a request naming no partition is answered with none
                    await asyncio.wait([task for _, _, task in tasks], timeout=max(left, 0.001))
                results = [self._result_or_timeout(task, index) for _, index, task in tasks]
            # Written past the whole timeout_ms (behind an earlier answer, a lagging loop), a success
            # answer comes after a client using that timeout gave up (`_answer`).
            answer_by = started + body["timeout_ms"] / 1000 if limit_s is not None else None
            await self._settle_at_send(list(zip(results, tracks, strict=True)), ctx, answer_by)
        except BaseException:  # cancelled (connection closed) or a bug: no partition task is left pending
            for _, _, task in tasks:
                task.cancel()
            await asyncio.gather(*(task for _, _, task in tasks), return_exceptions=True)
            raise
        responses: dict[str, list[Body]] = {}
        for (name, _, _), result in zip(tasks, results, strict=True):
            responses.setdefault(name, []).append(result)
        return {
            "responses": [{"name": n, "partition_responses": r} for n, r in responses.items()],
            "throttle_time_ms": 0,
        }

    async def _settle_at_send(
        self, answers: list[tuple[Body, Tracked]], ctx: Context, answer_by: float | None = None
    ) -> None:
        """Answers with tracked idempotent batches settle as they are written (Context.at_send),
        not now: one may wait behind an earlier answer while the client goes away (839 values
        twice when an answer counted once its handler ended). A success answer first deletes the
        kept rows it acknowledges (unacked.py `answering`); if that fails it is not made."""
        if self.unacked is None:
            return
        unacked = self.unacked
        settled: list[tuple[Body, Tracked, list[Released]]] = []
        for result, batches in answers:
            if not batches:
                continue
            released: list[Released] = []
            if result["error_code"] == 0:
                try:
                    for key, batch in batches:
                        if not unacked.is_answerable(key, batch.producer_epoch, batch.first_sequence):
                            continue  # refused as it is written (`_answer`): no kept row goes for it
                        token, dropped = await unacked.answering(key, batch)
                        released.append((key, token, dropped))
                except BaseException as exc:  # not answered with success: the deleted rows come back
                    for key, token, dropped in released:
                        unacked.settled(key, token)
                        unacked.not_answered(key, dropped)
                    if not isinstance(exc, StreamHouseError):
                        raise  # cancelled: the connection closed
                    released = []
                    result.update(error_code=produce_error_code(exc), base_offset=-1, error_message=str(exc))
            settled.append((result, batches, released))
        if settled:

            def settle() -> None:
                for result, batches, released in settled:
                    self._answer(result, batches, ctx, released, answer_by)

            ctx.at_send.append(settle)

    def _answer(
        self, result: Body, tracked: Tracked, ctx: Context, released: list[Released], answer_by: float | None = None
    ) -> None:
        """A partition's answer as it is written (changed in place). Success only if none of
        its idempotent batches was voided by a newer epoch meanwhile (then they are acknowledged,
        never voided after); errors leave them unanswered, as does a success answer to a client
        that closed the connection or one past `answer_by`: librdkafka then re-sends them under a
        new epoch (4,519 values twice when such answers counted). Committed, they are kept in the
        store as unanswered, with the rows deleted for this answer, so any later leader voids them."""
        if result["error_code"] != 0 or self.unacked is None:
            return
        unacked = self.unacked
        gone = (not unacked.is_answerable(key, b.producer_epoch, b.first_sequence) for key, b in tracked)
        voided = next(((key, b.producer_epoch) for (key, b), no in zip(tracked, gone, strict=True) if no), None)
        closed = voided is None and ctx.client_closed is not None and ctx.client_closed()
        # Past the request's timeout_ms the client may have timed it out, keeping the connection
        # (librdkafka does): REQUEST_TIMED_OUT, so its retry gets the original offsets, its new epoch voids.
        late = voided is None and not closed and answer_by is not None and asyncio.get_running_loop().time() > answer_by
        if late:
            message = "acks=all: the answer was ready only after the request's timeout_ms; not acknowledged"
            result.update(error_code=codes.REQUEST_TIMED_OUT, base_offset=-1, error_message=message)
        closed = closed or late
        if voided is None and not closed:
            for key, batch in tracked:
                unacked.acknowledge(key, batch.producer_epoch, batch.first_sequence, batch.base_offset)
        for key, token, _ in released:  # after the acknowledgement: a keep waiting on it sees it
            unacked.settled(key, token)
        if voided is not None:
            (_, _, pid), epoch = voided
            message = (f"producer {pid} started a newer epoch than {epoch} before this batch was acknowledged: "
                       "it is voided (never readable by read_committed readers)")  # fmt: skip
            result.update(error_code=INVALID_PRODUCER_EPOCH, base_offset=-1, error_message=message)
            for key, _, dropped in released:  # rows deleted for an answer not made: kept again
                unacked.not_answered(key, dropped)
        elif closed:
            # Never read: the batches stay unanswered.
            by_key: dict[ProducerKey, list[ProducerBatch]] = {}
            for key, _, dropped in released:
                by_key.setdefault(key, []).extend(dropped)
            for key, batch in tracked:
                by_key.setdefault(key, []).append(batch)
            for key, batches in by_key.items():
                unacked.not_answered(key, batches)

    async def _void(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        """Stores `batches` as voided (aborted ranges) and drops the cached read_committed views."""
        assert self.txn is not None
        await self.txn.metadata.txn_void_batches(topic, partition, batches)
        self.txn.changed([(topic, partition)])
        log.warning("kafka %s/%s: %d batches of producer %d written under an epoch it left unacknowledged "
                    "were voided", topic, partition, len(batches), batches[0].producer_id)  # fmt: skip

    def _result_or_timeout(self, task: asyncio.Task[Body], index: int) -> Body:
        """A partition's answer, or REQUEST_TIMED_OUT while its acknowledgement is pending; the
        task then runs on (its records are placed) and is kept until it ends."""
        if task.done():
            return task.result()
        self._late.add(task)
        task.add_done_callback(self._late.discard)
        message = "acks=all: the segment commit did not complete within the request's timeout_ms"
        return {"index": index, "error_code": codes.REQUEST_TIMED_OUT, "base_offset": -1, "log_append_time_ms": -1,
                "error_message": message}  # fmt: skip

    def _decoded(self, records: Any) -> list[KafkaBatch] | StreamHouseError:
        """A partition's batches, each decoded whole (CRC, codec, records), or why they are refused."""
        try:
            return produced_batches(records, max_uncompressed=self.max_uncompressed)
        except StreamHouseError as exc:
            return exc

    def _arrived(self, topic: str, partition: int, batches: list[KafkaBatch] | StreamHouseError) -> None:
        """An acks=all request's idempotent batches have arrived (unacked.py `arrived`)."""
        if self.unacked is None or isinstance(batches, StreamHouseError):
            return
        for b in batches:
            if b.producer_id >= 0 and not b.is_transactional:
                self.unacked.arrived((topic, partition, b.producer_id), b.producer_epoch)

    async def _produce_partition(
        self, topic: str, partition: int, batches: list[KafkaBatch] | StreamHouseError, acks: Acks | None,
        placed: Callable[[], None] | None = None,
        txn_id: str | None = None, stall: tuple[float, float] | None = None, implicit: bool = False,
        tracked: Tracked | None = None,
    ) -> Body:  # fmt: skip
        out: Body = {"index": partition, "error_code": 0, "base_offset": -1, "log_append_time_ms": -1}
        try:
            if acks is None:
                raise KafkaProtocolError("acks must be 0, 1 or -1", api="Produce", field="acks")
            if isinstance(batches, StreamHouseError):
                raise batches
            transactional = any(b.is_transactional for b in batches)
            if any(b.is_control for b in batches) or (transactional and self.txn is None):
                what = "control batches are written by the broker" if self.txn else "transactions are not supported"
                raise KafkaProtocolError(what, api="Produce", field="attributes")
            stamp = None  # LogAppendTime: the service stamps this time, and the answer carries it
            if log_append_time((await self.front.topic(topic, partition)).config):
                stamp = out["log_append_time_ms"] = now_ms()
            if transactional and self.txn is not None:

                async def one(batch: KafkaBatch, last: bool) -> int:
                    # Not refused when stalled: a transactional producer does not bump its own
                    # epoch and re-send (its coordinator aborts), and a refusal here would come
                    # after the batch was registered in its transaction.
                    done = placed if last else None
                    return await self._produce_idempotent(topic, partition, [batch], acks, stamp, done)

                end = functools.partial(self.front.end_offset, topic, partition)
                out["base_offset"] = await produce_transactional(self.txn, txn_id, topic, partition, batches, end, one,
                                                           implicit)  # fmt: skip
            elif any(b.producer_id >= 0 for b in batches):
                out["base_offset"] = await self._produce_idempotent(
                    topic, partition, batches, acks, stamp, placed, stall, tracked
                )
            else:
                merged = merged_records(batches)
                if stall is not None:
                    await self.stalls.refuse_if_stalled(topic, partition, *stall, placed or _noop)
                with self._waiting(topic, partition, acks):
                    results = await self.front.produce(
                        topic, partition, merged, acks, appended=placed, append_time_ms=stamp
                    )
                out["base_offset"] = results[0].base_offset
        except StreamHouseError as exc:
            out["error_code"] = produce_error_code(exc)
            out["error_message"] = str(exc)
            log.debug("kafka produce %s/%s refused: %s", topic, partition, exc)
        return out

    async def _produce_idempotent(
        self,
        topic: str,
        partition: int,
        batches: list[KafkaBatch],
        acks: Acks,
        stamp: int | None,
        placed: Callable[[], None] | None = None,
        stall: tuple[float, float] | None = None,
        tracked: Tracked | None = None,
    ) -> int:
        """Each batch through its producer's sequence check (idempotence.py), tagged with its
        producer id, epoch and first sequence so the leader's writer records it (or answers a
        retry with the original's offsets, docs/DESIGN.md §10); the first batch's base offset
        answers the request. The partition is placed once its last batch is (a refusal ends
        the request, which places it too). With `tracked` (acks=all, not transactional) each
        batch is tracked until its answer (unacked.py) and listed there for `_answer`."""
        bases = []
        unacked = self.unacked if tracked is not None and acks == "durable" else None
        loop = asyncio.get_running_loop()
        for i, batch in enumerate(batches):
            # The producer's lock is held only until the batch has its offsets, so its next
            # request is checked and appended while this one waits for its acknowledgement.
            fixed: asyncio.Future[None] = loop.create_future()
            if placed is not None and i == len(batches) - 1:
                fixed.add_done_callback(lambda _: placed())

            async def append(skip: int, batch: KafkaBatch = batch, fixed: asyncio.Future[None] = fixed) -> int:
                # `skip`: the batch's first records are in the log already (idempotence.py).
                first = (batch.base_sequence + skip) % SEQUENCE_SPAN
                records = tag(batch.records.slice(skip) if skip else batch.records, batch.producer_id,
                              batch.producer_epoch, first)  # fmt: skip
                with self._waiting(topic, partition, acks):
                    results = await self.front.produce(
                        topic, partition, records, acks, appended=functools.partial(_resolve, fixed),
                        append_time_ms=stamp,
                    )  # fmt: skip
                return results[0].base_offset

            admit = None  # checked only while stalled: no extra state lookup per batch otherwise
            if stall is not None and self.stalls.stalled(topic, partition, stall[0]):
                admit = functools.partial(
                    self.stalls.refuse_if_stalled, topic, partition, *stall, functools.partial(_resolve, fixed)
                )
            new_epoch = written = None
            if unacked is not None and tracked is not None and batch.producer_id >= 0:
                key = (topic, partition, batch.producer_id)
                new_epoch = functools.partial(unacked.new_epoch, key, batch.producer_epoch)
                written = functools.partial(_track, unacked, key, tracked)
            base = await self.producers.write(
                topic, partition, batch.producer_id, batch.producer_epoch, batch.base_sequence, batch.records.num_rows,
                functools.partial(self.front.producer_state, topic, partition, batch.producer_id), append, fixed,
                admit, new_epoch, written, tail_only=tracked is not None,
            )  # fmt: skip
            bases.append(base)
        return bases[0]

    def _waiting(self, topic: str, partition: int, acks: Acks) -> contextlib.AbstractContextManager[None]:
        """An acks=all append counted as waiting for its commit (ack_stalls.py) until it ends."""
        return self.stalls.waiting(topic, partition) if acks == "durable" else contextlib.nullcontext()

    async def init_producer_id(self, body: Body, version: int, ctx: Context) -> Body:
        """A producer id; a known one (v3+) gets its next epoch (sequences restart at 0, as Kafka's)."""
        out: Body = {"throttle_time_ms": 0, "error_code": 0, "producer_id": -1, "producer_epoch": -1}
        if body["transactional_id"] is not None:
            out["error_code"] = codes.INVALID_REQUEST  # transactions are not implemented
        elif body["producer_id"] >= 0 and 0 <= body["producer_epoch"] < 32767:
            out["producer_id"], out["producer_epoch"] = body["producer_id"], body["producer_epoch"] + 1
        else:
            try:  # from the metadata store: unique across the agents sharing it and across restarts
                out["producer_id"], out["producer_epoch"] = await self.front.new_producer_id(), 0
            except StreamHouseError as exc:
                out["error_code"] = error_code(exc)
        return out


def _track(unacked: Unacknowledged, key: ProducerKey, tracked: Tracked, batch: ProducerBatch) -> None:
    """`batch` (as the leader holds it: the original a retry repeats, or the tail a straddling
    batch left to write) waits for its answer, and this request's answer settles it."""
    unacked.written(key, batch)
    tracked.append((key, batch))
