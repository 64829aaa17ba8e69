"""The one exception tree. Every error a caller can act on has its own subclass.

It lives in storage/ (the bottom layer) so every layer can raise it; `streamhouse`
re-exports it as the package face.
"""

from __future__ import annotations


class StreamHouseError(Exception):
    """Root of every error StreamHouse raises on purpose."""


class CorruptDataError(StreamHouseError):
    """Bytes failed a checksum or could not be decoded.

    `source` names the file or object, `position` the byte offset (or entry/row group)
    where the damage was found, so an operator can locate it.
    """

    def __init__(self, message: str, *, source: str, position: int | None = None) -> None:
        where = source if position is None else f"{source} at byte {position}"
        super().__init__(f"{message} ({where})")
        self.source = source
        self.position = position


class InvalidInputError(StreamHouseError):
    """A request was rejected before anything was written (bad name, bad batch, too large…)."""


class TopicSettingError(InvalidInputError):
    """A topic setting (CREATE TOPIC … WITH, create_topic(config=), ALTER TOPIC SET/RESET) was
    refused; nothing changed. `key` names it (empty when the error crossed gRPC)."""

    key = ""


class UnknownTopicSettingError(TopicSettingError):
    """No topic setting has this name; the message suggests the closest one, if any."""

    suggestion: str | None = None


class UnsupportedTopicSettingError(TopicSettingError):
    """A known (Kafka) topic setting that nothing in StreamHouse enforces yet: refused rather
    than stored and silently ignored."""


class PartitionCountError(InvalidInputError):
    """ALTER TOPIC … ADD PARTITIONS refused: the count only grows, up to the limit, and not under
    a running continuous query that reads the topic. Nothing changed."""


class InvalidValueError(InvalidInputError):
    """A produced value does not fit the topic's declared columns; nothing of the batch was
    written. `index` is the record's position in the batch, `column` the declared column
    (None: the value as a whole, e.g. not JSON) and `reason` why."""

    def __init__(self, index: int, column: str | None, reason: str) -> None:
        where = f"column {column!r}" if column else "the value"
        super().__init__(f"record {index} of the batch, {where}: {reason}")
        self.index = index
        self.column = column
        self.reason = reason


class NotFoundError(StreamHouseError):
    """Something named does not exist."""


class TopicNotFoundError(NotFoundError):
    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} does not exist")
        self.topic = topic


class PartitionNotFoundError(NotFoundError):
    def __init__(self, topic: str, partition: int, partitions: int) -> None:
        super().__init__(f"partition {partition} out of range for topic {topic!r} (0..{partitions - 1})")
        self.topic = topic
        self.partition = partition


class JobNotFoundError(NotFoundError):
    def __init__(self, job: str) -> None:
        super().__init__(f"job {job!r} does not exist")
        self.job = job


class ObjectNotFoundError(NotFoundError):
    def __init__(self, key: str) -> None:
        super().__init__(f"object {key!r} does not exist")
        self.key = key


class AlreadyExistsError(StreamHouseError):
    """Creating something that already exists."""


class BatchAlreadyWrittenError(AlreadyExistsError):
    """An idempotent producer's batch the partition already holds, older than the batches kept
    to answer its retries with their offsets: it is not written again (a late copy handed over
    from another agent's WAL, storage/partition/writer.py)."""


class TopicExistsError(AlreadyExistsError):
    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic!r} already exists")
        self.topic = topic


class JobExistsError(AlreadyExistsError):
    def __init__(self, job: str) -> None:
        super().__init__(f"job {job!r} already exists")
        self.job = job


class ObjectExistsError(AlreadyExistsError):
    """A put-if-absent found the key taken: objects are never overwritten."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object {key!r} already exists")
        self.key = key


class FencedError(StreamHouseError):
    """A lease holder's epoch is no longer current: another holder took over.

    The caller must drop whatever it buffered for the resource and stop writing it.
    """


class TransactionError(StreamHouseError):
    """A Kafka transaction request that its transaction's stored state refuses (issue 18,
    storage/metadata/transactions.py). `kind` says why, and the Kafka face answers by it:
    "fenced" (an older producer epoch: PRODUCER_FENCED / INVALID_PRODUCER_EPOCH), "state" (not
    allowed in the transaction's state, or a partition not added to it: INVALID_TXN_STATE),
    "concurrent" (another write of the transaction won: CONCURRENT_TRANSACTIONS, retried) and
    "unknown" (no such transactional id or producer id: INVALID_PRODUCER_ID_MAPPING)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class OffsetConflictError(StreamHouseError):
    """A segment commit did not start at the partition's durable end offset, or a job
    checkpoint did not follow the job's previous one."""


class SegmentsChangedError(OffsetConflictError):
    """A segment swap (merging, compaction) found the partition's segments in its range no
    longer as it read them (another swap, a topic deletion): nothing was changed; re-plan."""


class SegmentMergeError(InvalidInputError):
    """Segments that cannot be merged into one: another partition, a gap, other columns."""


class OffsetOutOfRangeError(StreamHouseError):
    """A read asked for an offset below the partition's log start: retention removed those
    records (Kafka's OFFSET_OUT_OF_RANGE). `log_start` is where the log now begins; reset
    there (or to the end) and read again. Remote clients rebuild the class with -1 fields."""

    topic: str = ""
    partition: int = -1
    offset: int = -1
    log_start: int = -1

    def __init__(self, topic: str, partition: int, offset: int, log_start: int) -> None:
        super().__init__(
            f"{topic}/{partition}: offset {offset} is below the log start {log_start} "
            "(retention removed the records before it); read from the log start or later"
        )
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.log_start = log_start


class LeaseHeldError(StreamHouseError):
    """Another live holder has the lease."""

    def __init__(self, resource: str, holder: str) -> None:
        super().__init__(f"lease {resource!r} is held by {holder!r}")
        self.resource = resource
        self.holder = holder


class BackpressureError(StreamHouseError):
    """Buffers or WAL are over their bound; retry later. Nothing was written."""


class EarlierRollFailedError(StreamHouseError):
    """A roll uploaded its segment but the roll before it did not commit: committing would
    leave a gap, so the next flush retries both, in order (storage/partition/roll.py)."""


class StorageUnavailableError(StreamHouseError):
    """The object store or metadata store could not be reached."""


class DirectoryInUseError(StorageUnavailableError):
    """Another live agent process holds this data (WAL) directory; nothing was started."""


class AddressInUseError(InvalidInputError):
    """A port an agent was told to listen on is taken; nothing was started."""


class AuthenticationError(StreamHouseError):
    """A request's credential was missing, malformed, unknown, wrong, revoked or expired
    (issue 15; engine/auth/). The message never names which, nor echoes the credential: a
    caller probing keys learns nothing. `reason` (one of engine/auth REASONS) is for the
    agent's own metric and log only. Nothing was done."""

    reason = "missing"  # also on an instance the remote SDK rebuilt without __init__

    def __init__(self, message: str = "authentication required: a valid API key", reason: str = "missing") -> None:
        super().__init__(message)
        self.reason = reason


class AuthorizationError(StreamHouseError):
    """The authenticated principal has no ACL allowing this operation on this resource (issue
    15; engine/auth/acl.py). `resource_type` (topic, group, job, subject) picks Kafka's code
    (TOPIC_ / GROUP_AUTHORIZATION_FAILED). Nothing was done."""

    resource_type = "topic"  # also on an instance the remote SDK rebuilt without __init__

    def __init__(self, message: str = "not authorized", resource_type: str = "topic") -> None:
        super().__init__(message)
        self.resource_type = resource_type


class ResourceQuotaExceededError(StreamHouseError):
    """An organisation is at its storage (committed segment bytes) or partition quota (issue
    15): the produce or the topic/partition creation was refused and nothing was written. Not
    a rate: waiting alone does not help; retention, deleting topics or a larger quota does."""


class OrganisationNotFoundError(NotFoundError):
    """No organisation has this name (auth create-key, list)."""


class ApiKeyNotFoundError(NotFoundError):
    """No API key has this id (auth revoke)."""


class OrganisationExistsError(AlreadyExistsError):
    """An organisation of this name already exists."""


class AgentUnreachableError(StorageUnavailableError):
    """No agent at the given addresses answered (nothing listening, wrong host or port); the
    message names the addresses. Raised after a short connect budget, not the retry budget."""


class NotLeaderError(StreamHouseError):
    """Another live agent leads the partition; `leader` is its address ("" if unknown)."""

    def __init__(self, resource: str, leader: str) -> None:
        super().__init__(f"not the leader of {resource}; the leader is {leader or 'unknown'}")
        self.resource = resource
        self.leader = leader


class JobLagTimeoutError(StreamHouseError, TimeoutError):
    """A job did not catch up with its source within the time a caller would wait."""

    def __init__(self, job: str, timeout_s: float, lag: int, state: str) -> None:
        super().__init__(f"job {job!r} still {lag:,} source records behind after {timeout_s:g} s (state: {state})")
        self.job, self.lag, self.state = job, lag, state


class QueryLimitError(StreamHouseError):
    """A statement was stopped by query governance (memory cap, time limit, cancellation);
    nothing it would have written was written, and the agent serves the next request."""


class QueryMemoryExceededError(QueryLimitError):
    """A statement needed more memory than its cap (the agent's --query-memory, or the
    session's SET query_memory); the message names the cap and what asked for more."""


class QueryTimeoutError(QueryLimitError, TimeoutError):
    """A statement ran longer than its time limit (--query-timeout / SET statement_timeout)."""


class QueryCancelledError(QueryLimitError):
    """A statement was cancelled before it finished (the agent shut down, or its caller left)."""
