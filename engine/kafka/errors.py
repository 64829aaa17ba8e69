"""Typed errors of the Kafka front end.

Each class carries the Kafka error code a broker answers with, so the server maps a
refusal to the wire without a table of its own; the message names the API, version,
field and byte position so a broken client (or an attacker) is easy to locate in a log.
"""

from __future__ import annotations

from streamhouse.storage.errors import StreamHouseError

# Kafka error codes (the subset a front end answers with). Names follow Kafka's own.
UNKNOWN_SERVER_ERROR = -1
NONE = 0
OFFSET_OUT_OF_RANGE = 1
CORRUPT_MESSAGE = 2
REQUEST_TIMED_OUT = 7
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
COORDINATOR_NOT_AVAILABLE = 15
NOT_COORDINATOR = 16
INVALID_TOPIC_EXCEPTION = 17
RECORD_LIST_TOO_LARGE = 18
ILLEGAL_GENERATION = 22
UNKNOWN_MEMBER_ID = 25
REBALANCE_IN_PROGRESS = 27
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REQUEST = 42
UNSUPPORTED_FOR_MESSAGE_FORMAT = 43
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
DUPLICATE_SEQUENCE_NUMBER = 46
INVALID_CONFIG = 40
KAFKA_STORAGE_ERROR = 56  # retriable: the broker cannot reach its log (here: a store is down)
NOT_LEADER_OR_FOLLOWER = 6
GROUP_ID_NOT_FOUND = 69
UNSUPPORTED_COMPRESSION_TYPE = 76
MEMBER_ID_REQUIRED = 79
INVALID_RECORD = 87


class KafkaProtocolError(StreamHouseError):
    """Bytes that are not a valid Kafka message of the named API and version.

    `api` and `version` name the message being decoded (empty / -1 before the header is
    known), `field` the field being read and `position` the byte offset in the frame.
    """

    error_code = INVALID_REQUEST

    def __init__(
        self, reason: str, *, api: str = "", version: int = -1, field: str = "", position: int | None = None
    ) -> None:
        where = []
        if api:
            where.append(f"{api} v{version}" if version >= 0 else api)
        if field:
            where.append(f"field {field}")
        if position is not None:
            where.append(f"byte {position}")
        super().__init__(f"{reason} ({', '.join(where)})" if where else reason)
        self.reason = reason
        self.api = api
        self.version = version
        self.field = field
        self.position = position


class UnsupportedVersionError(KafkaProtocolError):
    """An API key we do not implement, or a version outside the range we advertise."""

    error_code = UNSUPPORTED_VERSION


class FrameTooLargeError(KafkaProtocolError):
    """A size prefix beyond the configured maximum request size: the connection is closed
    before any of it is read, so no allocation follows an attacker-controlled length."""

    error_code = INVALID_REQUEST


class CorruptMessageError(KafkaProtocolError):
    """A RecordBatch failed its CRC32C or its record section does not parse; nothing of
    the produce request may be stored (Kafka answers CORRUPT_MESSAGE)."""

    error_code = CORRUPT_MESSAGE


class UnsupportedCompressionError(KafkaProtocolError):
    """A batch names a compression codec Kafka does not define (attribute bits 0-2 > 4)."""

    error_code = UNSUPPORTED_COMPRESSION_TYPE


class RecordTooLargeError(KafkaProtocolError):
    """A batch decompresses (or would encode) beyond the configured limit: a decompression
    bomb is refused before it is expanded past the limit."""

    error_code = MESSAGE_TOO_LARGE
