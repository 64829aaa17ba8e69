"""The front-end contract: the agent operations every protocol adapter calls, and the error
model they all share (docs/DESIGN.md §1: one agent, several faces).

`FrontEnd` is what a front end may ask of the agent it runs in. The gRPC servicers
(engine/server/grpc/services.py), the embedded SDK transport (engine/client/embedded.py) and
the Kafka listener (engine/kafka/) depend on it alone, so REST and the schema registry can
be one more folder each on the same contract, and two faces cannot drift apart: they run the
same code for the same question. AgentService (engine/agent/service.py) implements it; mypy
proves that there (`_front_end`). tests/engine/server/test_front_end_contract.py fails when
an adapter reaches past it (an attribute of the agent that is not listed here).

Values are the frozen dataclasses of engine/api/types.py (plus the two below), TopicInfo
(storage/model.py) and Arrow: records are RECORD_SCHEMA batches and tables
(storage/records/schema.py), SQL answers are Arrow tables.

Errors: every operation raises StreamHouseError subclasses (storage/errors.py) and nothing
else a caller is meant to handle; a refused request changes nothing. ERRORS below is the
one table of what each adapter answers for each class: the gRPC status (engine/rpc/status.py
builds its table from it), the Kafka error code (engine/kafka/handlers.py `error_code`, and
`admin_error` for the topic admin APIs) and the HTTP status the coming REST face and
registry are to use. The first row whose class matches decides, so rows go from the most
specific class to StreamHouseError itself.

| error (storage/errors.py) | gRPC                | Kafka: records / admin APIs  | HTTP | raised by               |
|---------------------------|---------------------|------------------------------|------|-------------------------|
| PartitionNotFoundError    | INVALID_ARGUMENT    | 3 UNKNOWN_TOPIC_OR_PARTITION | 404  | a partition out of range|
| OffsetOutOfRangeError     | OUT_OF_RANGE        | 1 OFFSET_OUT_OF_RANGE        | 416  | fetch below log start   |
| NotFoundError (topic, job)| NOT_FOUND           | 3 UNKNOWN_TOPIC_OR_PARTITION | 404  | a name that is not there|
| TopicSettingError         | INVALID_ARGUMENT    | 87 / 40 INVALID_CONFIG       | 400  | create/alter_topic      |
| PartitionCountError       | INVALID_ARGUMENT    | 87 / 37 INVALID_PARTITIONS   | 400  | alter_topic             |
| InvalidInputError         | INVALID_ARGUMENT    | 87 INVALID_RECORD / 17       | 400  | any bad argument        |
| CorruptDataError          | INVALID_ARGUMENT    | -1                           | 422  | fetch, sql, a payload   |
| AlreadyExistsError        | ALREADY_EXISTS      | -1 / 36 TOPIC_ALREADY_EXISTS | 409  | create_topic/create_job |
| NotLeaderError (.leader)  | FAILED_PRECONDITION | 6 NOT_LEADER_OR_FOLLOWER     | 421  | produce                 |
| BackpressureError         | RESOURCE_EXHAUSTED  | 7 REQUEST_TIMED_OUT          | 429  | produce: retry later    |
| QueryMemoryExceededError  | RESOURCE_EXHAUSTED  | -1                           | 422  | sql                     |
| QueryTimeoutError         | DEADLINE_EXCEEDED   | -1                           | 504  | sql                     |
| QueryCancelledError       | CANCELLED           | -1                           | 499  | sql                     |
| FencedError               | ABORTED             | -1                           | 409  | produce (lease lost)    |
| LeaseHeldError            | FAILED_PRECONDITION | -1                           | 409  | produce                 |
| OffsetConflictError       | ABORTED             | -1                           | 409  | produce                 |
| StorageUnavailableError   | UNAVAILABLE         | -1                           | 503  | any (a store is down)   |
| AuthenticationError       | UNAUTHENTICATED     | 58 SASL_AUTHENTICATION_FAILED| 401  | every face (engine/auth)|
| AuthorizationError        | PERMISSION_DENIED   | 29 TOPIC_ / 30 GROUP_AUTH... | 403  | every face (auth/acl.py)|
| ResourceQuotaExceededError| RESOURCE_EXHAUSTED  | 44 POLICY_VIOLATION          | 507  | produce, create (quota) |
| any other StreamHouseError| INTERNAL            | -1 UNKNOWN_SERVER_ERROR      | 500  |                         |

Kafka decides a few codes by API, not by class, and keeps them in its own folder: Fetch
answers InvalidInputError (an offset outside the log) as 1 OFFSET_OUT_OF_RANGE; Kafka's own
refusals (KafkaProtocolError: bad frames, sequences, coordinators) carry their code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa

from streamhouse.api.types import (
    Acks,
    FetchResult,
    GroupDescription,
    GroupOffset,
    JobDescription,
    ProduceResult,
    TopicDescription,
)
from streamhouse.storage import errors as e
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState
from streamhouse.storage.model import TopicInfo


@dataclass(frozen=True)
class TimestampOffset:
    """An offset found by time (ListOffsets): the record's offset and its timestamp; both -1
    when no record matches."""

    offset: int
    timestamp: int


@dataclass(frozen=True)
class Leadership:
    """Who leads one partition now, by its lease: `agent_id` and `address` (its gRPC
    host:port) are "" when no agent holds a live lease (the next produce takes it);
    `epoch` is the lease's epoch (0 if it never had one)."""

    partition: int
    agent_id: str
    address: str
    epoch: int


class FrontEnd(Protocol):
    """The agent operations a protocol adapter calls. Everything is async and runs on the
    agent's event loop; a front end adapts wire formats and error codes (ERRORS), nothing else."""

    # -- topics ---------------------------------------------------------------------------------
    async def topic(self, name: str, partition: int | None = None) -> TopicInfo:
        """The topic's settings and partition count, from a short-lived cache (looked up again
        when `partition` is past the cached count). TopicNotFoundError."""
        ...

    async def list_topics(self) -> list[TopicInfo]: ...

    async def describe_topic(self, name: str) -> TopicDescription:
        """Settings plus each partition's end offsets, leader address and segment count."""
        ...

    async def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, str] | None = None, value_schema: str | None = None
    ) -> TopicInfo:
        """`config` already checked by storage/topic_config.create_config (the adapter says
        which request it was). TopicExistsError, InvalidInputError."""
        ...

    async def alter_topic(
        self,
        name: str,
        set_config: Mapping[str, str] | None = None,
        reset: Iterable[str] | None = None,
        add_partitions: int | None = None,
    ) -> TopicInfo:
        """All of the change or none of it. TopicNotFoundError, TopicSettingError, PartitionCountError."""
        ...

    async def delete_topic(self, name: str) -> None: ...

    async def partition_leaders(self, topic: str) -> tuple[Leadership, ...]:
        """Each partition's lease holder, for Metadata answers and NOT_LEADER redirects."""
        ...

    # -- records --------------------------------------------------------------------------------
    async def produce(
        self,
        topic: str,
        partition: int,
        batch: pa.RecordBatch,
        acks: Acks = "leader",
        payload: bytes | None = None,
        appended: Callable[[], None] | None = None,
        append_time_ms: int | None = None,
    ) -> list[ProduceResult]:
        """Append a RECORD_SCHEMA batch to `partition` (-1: the agent routes by key, round
        robin without one); answered per `acks`. `payload`: the request's own encoding of the
        same records (stored as is when nothing was changed); `appended` is called once the
        records have their offsets, before the acknowledgement (a pipelining adapter reads its
        next request then); `append_time_ms` is the time a LogAppendTime topic stamps. Nothing
        is written unless every target partition accepts it."""
        ...

    async def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 50_000,
        max_bytes: int = 16 << 20,
        max_wait_ms: int = 0,
        min_bytes: int = 1,
    ) -> FetchResult:
        """Records from `offset` (at least one if there is one, even over max_bytes) up to the
        high watermark, waiting up to max_wait_ms for min_bytes. InvalidInputError for an
        offset past the acknowledged end (the answer's end_offset)."""
        ...

    # -- idempotent producers (docs/DESIGN.md §10) ----------------------------------------------
    async def producer_state(self, topic: str, partition: int, producer_id: int) -> ProducerState | None:
        """What the partition's leader has written for an idempotent producer (its epoch and
        last batches with their offsets), None if nothing; taking the lease if it is free, so
        the state (committed rows + WAL recovery) is loaded before any answer. NotLeaderError."""
        ...

    async def new_producer_id(self) -> int:
        """A producer id no agent sharing the metadata store has handed out."""
        ...

    async def unanswered(self, topic: str, partition: int, producer_id: int) -> tuple[ProducerBatch, ...]:
        """The producer's batches the partition's leaders committed and could not answer, as
        kept in the store (storage/partition/unanswered.py), by epoch and offset; no IO once
        the partition is led here. NotLeaderError."""
        ...

    async def keep_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        """Keep `batches` (committed here, their answer not made) as unanswered. FencedError
        if this agent lost the lease since; NotLeaderError."""
        ...

    async def drop_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        """Forget `batches` as unanswered (about to be answered, or voided); stored ones are
        deleted from the store before this returns. NotLeaderError."""
        ...

    # -- offsets --------------------------------------------------------------------------------
    async def earliest_offset(self, topic: str, partition: int) -> int:
        """The first offset still stored (the first retained segment's base; 0 when none)."""
        ...

    async def end_offset(self, topic: str, partition: int) -> int:
        """The high watermark (Kafka's latest): one past the last record in a committed segment,
        where what readers are served ends. Records acknowledged past it are served once their
        durable round commits (a fetch waiting there starts it)."""
        ...

    async def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> TimestampOffset:
        """The first record whose timestamp is >= timestamp_ms."""
        ...

    async def max_timestamp_offset(self, topic: str, partition: int) -> TimestampOffset:
        """The first record holding the partition's largest timestamp (Kafka's MAX_TIMESTAMP)."""
        ...

    # -- consumer groups ------------------------------------------------------------------------
    async def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Next offset to read per partition; one store whichever face wrote it."""
        ...

    async def fetch_offsets(self, group: str, topic: str) -> list[GroupOffset]:
        """Every partition of `topic` with the group's committed offset (-1: none) and lag."""
        ...

    async def committed_offsets(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        """The stored commits as they are, (topic, partition) → offset, without checking that
        the topics exist (Kafka's OffsetFetch answers unknown ones with -1)."""
        ...

    async def list_groups(self) -> list[str]: ...

    async def describe_group(self, group: str) -> GroupDescription:
        """NotFoundError when the group has no committed offsets."""
        ...

    async def delete_group(self, group: str) -> None:
        """Forget the group's committed offsets (none stored: nothing happens)."""
        ...

    # -- SQL and jobs ---------------------------------------------------------------------------
    async def sql(self, query: str, settings: Mapping[str, str] | None = None) -> pa.Table:
        """One statement under the session's `settings` (SET values): query, DDL, SHOW,
        EXPLAIN. Cancelling the awaiting task cancels the statement."""
        ...

    async def list_jobs(self) -> list[JobDescription]: ...

    async def describe_job(self, name: str) -> JobDescription:
        """JobNotFoundError."""
        ...

    async def create_job(
        self, name: str, select: str, *, into: str | None = None, options: Mapping[str, str] | None = None
    ) -> JobDescription:
        """CREATE MATERIALIZED VIEW `name` (a new topic) or, with `into`, INSERT INTO that
        existing topic (the job is then named after it)."""
        ...

    async def drop_job(self, name: str, *, drop_topic: bool = True) -> None:
        """Stop and remove a job; a materialized view's own topic goes too unless drop_topic=False."""
        ...

    # -- health ---------------------------------------------------------------------------------
    async def ready(self) -> tuple[bool, str]:
        """(ready, why not): both stores answer and no partition's flushes keep failing."""
        ...


@dataclass(frozen=True)
class ErrorMapping:
    """What each face answers for one error class (see the table above)."""

    error: type[e.StreamHouseError]
    grpc: str  # a grpc.StatusCode name (this layer does not import grpc)
    kafka: int  # Kafka error code on the record and group APIs
    kafka_admin: int  # on the topic admin APIs (CreateTopics, DeleteTopics, CreatePartitions, *Configs)
    http: int  # the status the REST face and the registry answer with


_UNKNOWN = -1  # Kafka's UNKNOWN_SERVER_ERROR
ERRORS: tuple[ErrorMapping, ...] = (
    ErrorMapping(e.PartitionNotFoundError, "INVALID_ARGUMENT", 3, 3, 404),
    ErrorMapping(e.OffsetOutOfRangeError, "OUT_OF_RANGE", 1, 1, 416),
    ErrorMapping(e.NotFoundError, "NOT_FOUND", 3, 3, 404),
    ErrorMapping(e.TopicSettingError, "INVALID_ARGUMENT", 87, 40, 400),
    ErrorMapping(e.PartitionCountError, "INVALID_ARGUMENT", 87, 37, 400),
    ErrorMapping(e.InvalidInputError, "INVALID_ARGUMENT", 87, 17, 400),
    ErrorMapping(e.CorruptDataError, "INVALID_ARGUMENT", _UNKNOWN, _UNKNOWN, 422),
    ErrorMapping(e.AlreadyExistsError, "ALREADY_EXISTS", _UNKNOWN, 36, 409),
    ErrorMapping(e.NotLeaderError, "FAILED_PRECONDITION", 6, 6, 421),
    # REQUEST_TIMED_OUT: retriable, which is what backpressure means.
    ErrorMapping(e.BackpressureError, "RESOURCE_EXHAUSTED", 7, 7, 429),
    ErrorMapping(e.QueryMemoryExceededError, "RESOURCE_EXHAUSTED", _UNKNOWN, _UNKNOWN, 422),
    ErrorMapping(e.QueryTimeoutError, "DEADLINE_EXCEEDED", _UNKNOWN, _UNKNOWN, 504),
    ErrorMapping(e.QueryCancelledError, "CANCELLED", _UNKNOWN, _UNKNOWN, 499),
    ErrorMapping(e.FencedError, "ABORTED", _UNKNOWN, _UNKNOWN, 409),
    ErrorMapping(e.LeaseHeldError, "FAILED_PRECONDITION", _UNKNOWN, _UNKNOWN, 409),
    ErrorMapping(e.OffsetConflictError, "ABORTED", _UNKNOWN, _UNKNOWN, 409),
    ErrorMapping(e.StorageUnavailableError, "UNAVAILABLE", _UNKNOWN, _UNKNOWN, 503),
    ErrorMapping(e.AuthenticationError, "UNAUTHENTICATED", 58, 58, 401),
    # 29 TOPIC_AUTHORIZATION_FAILED; Kafka answers 30 GROUP_AUTHORIZATION_FAILED for a group's
    # (engine/kafka/handlers.py error_code reads AuthorizationError.resource_type).
    ErrorMapping(e.AuthorizationError, "PERMISSION_DENIED", 29, 29, 403),
    # A storage or partition quota: not retriable (unlike BackpressureError), 507 Insufficient Storage.
    ErrorMapping(e.ResourceQuotaExceededError, "RESOURCE_EXHAUSTED", 44, 44, 507),
    ErrorMapping(e.StreamHouseError, "INTERNAL", _UNKNOWN, _UNKNOWN, 500),
)


def error_mapping(exc: BaseException) -> ErrorMapping:
    """The row that decides for `exc`: the first whose class it is; the last row (INTERNAL,
    UNKNOWN_SERVER_ERROR, 500) for anything else."""
    return next((row for row in ERRORS if isinstance(exc, row.error)), ERRORS[-1])
