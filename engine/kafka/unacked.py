"""Idempotent batches an agent wrote but never acknowledged, voided once their producer starts
a new epoch (issue 19, the last finding of the fault runs; docs/DESIGN.md §10).

When the object store stays unreachable past an idempotent client's `message.timeout.ms`, the
acks=all batches a leader appended before the stall showed (ack_stalls.py) cannot be
acknowledged. librdkafka then bumps its producer epoch by itself (KIP-360) and sends every
message still waiting for a retry again, from sequence 0 of the new epoch. The sequence check
cannot tie those to the copies already written, so when the store came back both were
committed: 3,053 values twice in a 42-minute fault run. A Kafka broker writes them twice too.

The leader knows more than a broker uses: which of the producer's batches it never answered
with success. A client that never had an answer for a batch cannot count on it being written
(librdkafka reports it "possibly persisted" if it gives up on it, and sends it again if it
does not). So when the first batch of a newer epoch comes, the older batches this agent wrote
and has not acknowledged are voided before the new batch is written: stored as aborted ranges
(storage/metadata/transactions.py), which every read_committed reader (Kafka read_committed
fetches, SQL, jobs, the SDK's reads) skips like an aborted transaction's records. Their offsets
stay, so nothing moves. From then on none of them is answered with success: a late
acknowledgement and a retry under the old epoch both get INVALID_PRODUCER_EPOCH.

A success answer counts when it is written, not when its handler ends (answers.py: they go
out in request order), and not when written after the client closed its side of the
connection: librdkafka closes it when a request times out and then re-sends those messages
(handlers_produce.py `_answer`).

Batches written by another leader (the partition moved meanwhile) are known through the
metadata store (issue 19, finding 6: 496 values twice when the leader that had committed
them without answering was killed before the client came back): a batch whose success answer
could not be made (the client had closed) is kept there (`Kept`, storage/partition/
unanswered.py), the new epoch's void takes the producer's kept rows of older epochs with
this agent's own, and a success answer first deletes the kept rows it acknowledges (itself,
and by the implicit ack the epoch's earlier ones), so no acknowledged batch is ever voided.

What this does not cover, written down in README "Durability under faults": read_uncommitted
readers still see both copies (as they see aborted transactions); a batch committed before
its void was readable until then; a batch whose leader lost its lease, or died, between the
commit and keeping its row is not known elsewhere and stays; a success answer that reaches
the client after it gave up on the request but before its close reached this agent
(connection.py asks the socket, so that is microseconds) counts as acknowledged. So does one
written after the client timed the request out without closing the connection (librdkafka does
when a message's timeout runs out in flight) but before this agent read the new epoch's
request: a newer epoch counts from its arrival (`arrived`, finding 8), and no sooner (an answer
ready only past the request's timeout_ms is not made: handlers_produce.py `_answer`). A request
cancelled before its batch is placed (its connection closed) still tracks it: idempotence.py
notes the batch under the producer's lock. Only acks=all batches are tracked: acks=1 is
answered as soon as it is written.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from streamhouse.storage.errors import StorageUnavailableError, StreamHouseError
from streamhouse.storage.metadata.producer_state import ProducerBatch
from streamhouse.storage.tasks import retrieve

log = logging.getLogger(__name__)
K = TypeVar("K")
V = TypeVar("V")

Key = tuple[str, int, int]  # topic, partition, producer id
Void = Callable[[str, int, Sequence[ProducerBatch]], Awaitable[None]]
# Producers (x partition) with batches waiting for an answer, and voided batches remembered for
# their late answers; past these the oldest go (a forgotten batch is simply not voided).
MAX_PRODUCERS = 10_000
MAX_BATCHES = 1_000  # per producer and partition (a stall refuses new batches long before)
MAX_VOIDED = 10_000
# A success answer being made (answering() done, not yet written) holds back keeping rows of its
# producer and partition: at most this long (an answer never written leaves its mark behind,
# and the keep is then skipped, which only means the batch is never voided).
ANSWER_WAIT_S = 30.0
STALE_S = 300.0  # an answer in the making this long was never written: its mark goes
INSERT_WAIT_S = 10.0  # answering() waits this long for rows being kept, else refuses the answer


def _put_newest(table: dict[K, V], key: K, value: V, bound: int) -> None:
    """`table[key] = value`, moved last (a table's order is its entries' age); past `bound`
    entries the oldest goes."""
    table.pop(key, None)
    table[key] = value
    if len(table) > bound:
        del table[next(iter(table))]


class Kept(Protocol):
    """The batches the partition's leaders committed and could not answer, kept in the
    metadata store (the front end's unanswered, keep_unanswered and drop_unanswered)."""

    async def unanswered(self, topic: str, partition: int, producer_id: int) -> tuple[ProducerBatch, ...]: ...

    async def keep_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None: ...

    async def drop_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None: ...


class Unacknowledged:
    """Per (topic, partition, producer id): its written batches not yet answered with success."""

    def __init__(self, void: Void, kept: Kept | None = None) -> None:
        self._void = void
        self._kept = kept
        self._keeping: set[asyncio.Task[None]] = set()
        # Per key: success answers in the making (token -> start), keeps inserting rows now, and
        # per epoch the highest base offset this agent acknowledged (with the implicit ack,
        # every batch of that epoch up to it is acknowledged).
        self._answers: dict[Key, dict[int, float]] = {}
        self._inserting: dict[Key, set[asyncio.Task[None]]] = {}
        self._acked: dict[Key, dict[int, int]] = {}
        self._tokens = 0
        self._pending: dict[Key, dict[tuple[int, int], ProducerBatch]] = {}  # oldest producer first
        self._voided: dict[tuple[Key, int, int], None] = {}  # (key, epoch, first sequence), oldest first
        self._newest: dict[Key, int] = {}  # the newest epoch a batch arrived with, per key (oldest first)

    def written(self, key: Key, batch: ProducerBatch) -> None:
        """`batch` has its offsets and waits for its acknowledgement."""
        if (key, batch.producer_epoch, batch.first_sequence) in self._voided:
            return  # a retry of a voided batch answered with the original's offsets: stays voided
        batches = self._pending.get(key) or {}
        batches[(batch.producer_epoch, batch.first_sequence)] = batch
        if len(batches) > MAX_BATCHES:
            del batches[next(iter(batches))]
        _put_newest(self._pending, key, batches, MAX_PRODUCERS)

    def arrived(self, key: Key, epoch: int) -> None:
        """A batch of `epoch` was read (decoded, before anything is awaited for it). A client
        starts a new epoch on a partition only once it waits for no answer of an older one
        there: librdkafka drains its requests first, timing out the ones in flight. It keeps
        the connection open then (librdkafka 2.16, when a message's timeout runs out in
        flight), so a success answer written after this point would be discarded by the
        client, which sends those messages again under the new epoch: 892 values twice in
        the twenty-third fault run (finding 8). From now on the older epochs' batches are not
        answered with success; they stay unanswered, and the new epoch's void takes them."""
        _put_newest(self._newest, key, max(self._newest.get(key, -1), epoch), MAX_PRODUCERS)

    def is_answerable(self, key: Key, epoch: int, first_sequence: int) -> bool:
        """Whether the batch may still be answered with success (False: it was voided, or a
        newer epoch of its producer has arrived, so it is about to be)."""
        return (key, epoch, first_sequence) not in self._voided and epoch >= self._newest.get(key, epoch)

    def acknowledge(self, key: Key, epoch: int, first_sequence: int, base_offset: int = -1) -> None:
        """The batch is being answered with success: it is never voided after this. Called as
        the answer is made, after `is_answerable`, with nothing awaited in between.

        So are its producer's earlier batches of the epoch still waiting here: librdkafka takes
        a success answer as delivering every earlier message of the partition it still waits
        to retry (its "implicit ack"), so voiding one of them would hide records the client
        was told are written. That includes the head of a batch only whose tail was written
        (idempotence.py), which lies in an earlier batch."""
        if base_offset >= 0:
            acked = self._acked.get(key) or {}
            acked[epoch] = max(acked.get(epoch, -1), base_offset)
            _put_newest(self._acked, key, acked, MAX_PRODUCERS)
        batches = self._pending.get(key)
        if batches is None:
            return
        done = batches.pop((epoch, first_sequence), None)
        if done is not None and batches:
            earlier = [n for n, b in batches.items() if b.producer_epoch == epoch and b.base_offset < done.base_offset]
            for name in earlier:
                del batches[name]
        if not batches:
            del self._pending[key]

    async def new_epoch(self, key: Key, epoch: int) -> None:
        """Before the first batch of `epoch` is written: the producer's older batches still
        unanswered are stored as voided (StorageUnavailableError and the like refuse the new
        batch, retriably, and nothing changes), then never answered with success."""
        batches = self._pending.get(key) or {}
        older = [b for b in batches.values() if b.producer_epoch < epoch]
        # Kept rows of older epochs: this agent's (already among `older`) and other leaders'.
        kept = [] if self._kept is None else [
            b for b in await self._kept.unanswered(key[0], key[1], key[2]) if b.producer_epoch < epoch
        ]  # fmt: skip
        mine = {(b.producer_epoch, b.first_sequence) for b in older}
        older += [b for b in kept if (b.producer_epoch, b.first_sequence) not in mine]
        if not older:
            return
        # Voided here before the store has them: an acknowledgement due while the rows are
        # written must not say written about a batch they are about to hide.
        for b in older:
            batches.pop((b.producer_epoch, b.first_sequence), None)
            self._voided[(key, b.producer_epoch, b.first_sequence)] = None
        try:
            await self._void(key[0], key[1], older)
        except BaseException:
            for b in older:  # not stored: still unanswered (a refusal meanwhile is only an error)
                self._voided.pop((key, b.producer_epoch, b.first_sequence), None)
                batches[(b.producer_epoch, b.first_sequence)] = b
            self._pending[key] = batches
            raise
        if not batches and self._pending.get(key) is batches:
            del self._pending[key]
        while len(self._voided) > MAX_VOIDED:
            del self._voided[next(iter(self._voided))]
        if kept and self._kept is not None:
            try:  # voided now: a row left behind (the store just went away) is voided again, harmlessly
                await self._kept.drop_unanswered(key[0], key[1], kept)
            except StreamHouseError as exc:
                log.info("kafka %s/%s: kept rows of voided batches not deleted: %s", key[0], key[1], exc)

    async def answering(self, key: Key, batch: ProducerBatch) -> tuple[int, list[ProducerBatch]]:
        """Before `batch` is answered with success: the kept rows that answer acknowledges (the
        batch's own and its epoch's earlier ones, the implicit ack) are deleted from the store,
        so no leader voids them later. Returns a token for `settled` (call it once the answer
        is written or given up) and the rows deleted, to be kept again if the answer is not
        made after all (`not_answered`). StorageUnavailableError and the like: nothing may be
        answered with success (`settled` is called here then).

        Rows being kept meanwhile are waited for, and a keep waits for answers in the making:
        the 48-min run of seed 2043 voided three acknowledged values when a
        retry's success answer (on a new connection) found no row while the original request's
        row, its answer refused to a closed connection, was still being written."""
        self._tokens += 1
        token = self._tokens
        self._answers.setdefault(key, {})[token] = time.monotonic()
        if self._kept is None:
            return token, []
        try:
            inserting = self._inserting.get(key)
            if inserting:
                _, late = await asyncio.wait(set(inserting), timeout=INSERT_WAIT_S)
                if late:
                    where = f"kafka {key[0]}/{key[1]}"
                    raise StorageUnavailableError(f"{where}: rows of producer {key[2]} still being kept")
            kept = await self._kept.unanswered(key[0], key[1], key[2])
            acked = [b for b in kept if b.producer_epoch == batch.producer_epoch and b.base_offset <= batch.base_offset]
            if acked:
                await self._kept.drop_unanswered(key[0], key[1], acked)
        except BaseException:
            self.settled(key, token)
            raise
        return token, acked

    def settled(self, key: Key, token: int) -> None:
        """The answer `answering` gave `token` for is written, or will not be."""
        answers = self._answers.get(key)
        if answers is not None:
            answers.pop(token, None)
            if not answers:
                del self._answers[key]

    def _in_the_making(self, key: Key) -> bool:
        """Whether a success answer of the producer on the partition is being made; marks of
        answers older than STALE_S are dropped (their answers were never written)."""
        answers = self._answers.get(key)
        if not answers:
            return False
        old = time.monotonic() - STALE_S
        for token in [t for t, started in answers.items() if started < old]:
            del answers[token]
        if not answers:
            del self._answers[key]
        return bool(answers)

    def not_answered(self, key: Key, batches: Sequence[ProducerBatch]) -> None:
        """`batches` are committed and their success answer could not be made (the client had
        closed): kept in the store, in the background, for whichever agent leads the partition
        when the producer starts a new epoch."""
        if self._kept is None or not batches:
            return
        task = asyncio.ensure_future(self._keep(key, list(batches)))
        self._keeping.add(task)
        task.add_done_callback(self._keeping.discard)
        task.add_done_callback(retrieve)

    async def _keep(self, key: Key, batches: list[ProducerBatch]) -> None:
        """Once no success answer of the producer is in the making (one may be about to
        acknowledge these very batches: a retry answered on another connection), the batches
        this agent has not acknowledged since are kept. An answer that stays in the making past
        ANSWER_WAIT_S (never written) skips the keep: no row is safe, a row wrongly kept is not."""
        assert self._kept is not None
        deadline = time.monotonic() + ANSWER_WAIT_S
        while self._in_the_making(key):
            if time.monotonic() > deadline:
                log.info("kafka %s/%s: %d unanswered batches of producer %d not kept: an answer is still being made",
                         key[0], key[1], len(batches), key[2])  # fmt: skip
                return
            await asyncio.sleep(0.05)
        acked = self._acked.get(key, {})
        left = [b for b in batches if b.base_offset > acked.get(b.producer_epoch, -1)]
        if not left:
            return
        task = asyncio.current_task()
        assert task is not None
        inserting = self._inserting.setdefault(key, set())
        inserting.add(task)  # from here on, answering() waits for this insert (same step as the check)
        try:
            await self._kept.keep_unanswered(key[0], key[1], left)
        except StreamHouseError as exc:  # lost the lease, or the store is away: known here only
            log.warning("kafka %s/%s: %d unanswered batches of producer %d known to this agent only: %s",
                        key[0], key[1], len(left), key[2], exc)  # fmt: skip
        finally:
            inserting.discard(task)
            if not inserting and self._inserting.get(key) is inserting:
                del self._inserting[key]

    def pending(self, key: Key) -> list[ProducerBatch]:
        """The producer's batches waiting for an answer, oldest epoch and offset first (tests, metrics)."""
        return sorted((self._pending.get(key) or {}).values(), key=lambda b: (b.producer_epoch, b.base_offset))
