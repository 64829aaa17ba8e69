"""The REST face's request and response bodies as pydantic models: they validate what comes
in (a malformed body is a 422 in the error model before any route runs) and give the OpenAPI
document at /openapi.json a schema for every route. Field names follow Confluent REST Proxy v3
(`topic_name`, `partitions_count`, `partition_id`, `configs` as name/value pairs, key and
value types JSON / BINARY / STRING); produce takes columns rather than one object per record,
so a batch becomes Arrow arrays without a Python step per record (records.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Bounds a request can ask for; the agent's own limits (record size, buffers) apply beneath.
MAX_PRODUCE_RECORDS = 50_000  # the CLI's batch ceiling too (cli/produce_batches.py)
MAX_FETCH_RECORDS = 10_000
MAX_FETCH_BYTES = 8 << 20
MAX_WAIT_MS = 30_000
MAX_PAGE_SIZE = 1_000
MAX_STATEMENT_CHARS = 1 << 20
NAME = Field(min_length=1, max_length=249)  # Kafka's topic-name ceiling; the agent checks the characters

DataType = Literal["JSON", "BINARY", "STRING"]
# Produce also takes AVRO, PROTOBUF and JSONSCHEMA: JSON data serialised with a registered
# schema of that type (avro_produce.py).
ProduceType = Literal["JSON", "BINARY", "STRING", "AVRO", "PROTOBUF", "JSONSCHEMA"]
SubjectNameStrategy = Literal["TOPIC_NAME", "RECORD_NAME", "TOPIC_RECORD_NAME"]
SchemaIdField = Annotated[int, Field(ge=0, le=2**31 - 1)]
Timestamp = Annotated[int, Field(ge=0, le=2**63 - 1)]
Acks = Literal["leader", "durable", "none"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")  # a misspelt field is a 422, not silently ignored


# -- topics ---------------------------------------------------------------------------------------
class ConfigEntry(Strict):
    name: str = Field(min_length=1)
    value: str


class TopicCreate(Strict):
    topic_name: str = NAME
    partitions_count: int = Field(1, ge=1, le=10_000)
    configs: list[ConfigEntry] = Field(default_factory=list, max_length=100)
    value_schema: str | None = Field(None, description="declared value columns (JSON text, as CREATE TOPIC)")


class Topic(BaseModel):
    topic_name: str
    topic_id: int
    partitions_count: int
    configs: list[ConfigEntry]
    value_schema: str | None


class Partition(BaseModel):
    partition_id: int
    end_offset: int
    durable_end_offset: int
    leader: str = Field(description='gRPC host:port of the lease holder, "" when none is live')
    leader_epoch: int
    segments: int
    log_start_offset: int = Field(0, description="first offset still kept (retention moves it)")
    size_bytes: int = Field(0, description="bytes of the committed segments")
    last_compacted_ms: int | None = Field(None, description="when compaction last finished a pass; null: never")


class TopicDetail(Topic):
    partitions: list[Partition]


class TopicList(BaseModel):
    data: list[Topic]
    next_page_token: str | None = Field(description="pass as page_token for the next page; null on the last")


class ConfigList(BaseModel):
    data: list[ConfigEntry]


class ConfigChange(Strict):
    name: str = Field(min_length=1)
    value: str | None = None
    operation: Literal["SET", "DELETE"] = "SET"


class ConfigAlter(Strict):
    data: list[ConfigChange] = Field(min_length=1, max_length=100)


class TopicPatch(Strict):
    partitions_count: int = Field(ge=1, le=10_000, description="the new total; partitions can only be added")


# -- records --------------------------------------------------------------------------------------
class Header(Strict):
    name: str
    value: str | None = Field(None, description="base64")


class SchemaSelector(Strict):
    """Which registered schema serialises AVRO, PROTOBUF or JSONSCHEMA keys or values (Confluent
    REST Proxy v3's names)."""

    subject: str | None = Field(None, min_length=1, max_length=1_000, description="default: by the strategy")
    subject_name_strategy: SubjectNameStrategy | None = Field(
        None, description="TOPIC_NAME (default): <topic>-value / <topic>-key; the record ones need schema_id"
    )
    schema_id: SchemaIdField | None = Field(None, description="a schema registered under the subject")
    schema_version: SchemaIdField | None = Field(None, description="a version of the subject; omit both: the latest")


class ProduceRequest(Strict):
    partition_id: int | None = Field(None, ge=0, description="omit: by key hash, round robin without keys")
    key_type: ProduceType = "JSON"
    value_type: ProduceType = "JSON"
    key_schema: SchemaSelector | None = Field(None, description="with key_type AVRO, PROTOBUF or JSONSCHEMA")
    value_schema: SchemaSelector | None = Field(None, description="with value_type AVRO, PROTOBUF or JSONSCHEMA")
    values: list[Any] = Field(
        min_length=1,
        max_length=MAX_PRODUCE_RECORDS,
        description="JSON values, strings, base64 for BINARY, or JSON data for AVRO, PROTOBUF, JSONSCHEMA",
    )
    keys: list[Any] | None = Field(None, description="one per value (null: no key)")
    timestamps: list[Timestamp] | None = Field(None, description="epoch ms, one per value; 0 or absent: append time")
    headers: list[list[Header] | None] | None = Field(None, description="one list per value")


class PartitionOffsets(BaseModel):
    partition_id: int
    base_offset: int = Field(description="-1 with acks=none")
    record_count: int


class SchemaUsed(BaseModel):
    subject: str
    schema_id: int
    schema_version: int


class ProduceResponse(BaseModel):
    topic_name: str
    record_count: int
    partitions: list[PartitionOffsets]
    key_schema: SchemaUsed | None = Field(None, description="the schema AVRO keys were serialised with")
    value_schema: SchemaUsed | None = Field(None, description="the schema AVRO values were serialised with")


class RecordHeader(BaseModel):
    name: str
    value: str | None = Field(description="base64")


class Record(BaseModel):
    partition_id: int
    offset: int
    timestamp: int
    key: Any = Field(description="as key_type asked: JSON value, string, or base64")
    value: Any = Field(description="as value_type asked: JSON value, string, or base64")
    headers: list[RecordHeader] | None


class PartitionRecords(BaseModel):
    topic_name: str
    partition_id: int
    records: list[Record]
    next_offset: int
    end_offset: int


class NextOffset(BaseModel):
    partition_id: int
    offset: int


class GroupRecords(BaseModel):
    group_id: str
    topic_name: str
    records: list[Record]
    next_offsets: list[NextOffset] = Field(description="commit these once the records are processed")
    committed: bool


# -- consumer groups ------------------------------------------------------------------------------
class GroupSummary(BaseModel):
    group_id: str


class GroupList(BaseModel):
    data: list[GroupSummary]
    next_page_token: str | None


class Lag(BaseModel):
    topic_name: str
    partition_id: int
    committed_offset: int = Field(description="next offset to read; -1: never committed")
    end_offset: int
    lag: int


class GroupDetail(BaseModel):
    group_id: str
    total_lag: int
    offsets: list[Lag]


class OffsetEntry(Strict):
    partition_id: int = Field(ge=0)
    offset: int = Field(ge=0)


class OffsetCommit(Strict):
    topic_name: str = NAME
    partitions: list[OffsetEntry] = Field(min_length=1, max_length=10_000)


class OffsetReset(Strict):
    topic_name: str = NAME
    to: Literal["earliest", "latest", "offset", "timestamp"]
    offset: int | None = Field(None, ge=0, description="with to=offset (clamped to the end)")
    timestamp_ms: int | None = Field(None, ge=0, description="with to=timestamp: the first record at or after")
    partition_ids: list[int] | None = Field(None, description="default: every partition")


# -- SQL and jobs ---------------------------------------------------------------------------------
class SqlRequest(Strict):
    statement: str = Field(min_length=1, max_length=MAX_STATEMENT_CHARS)
    settings: dict[str, str] = Field(default_factory=dict, description="SET values for this statement")


class Column(BaseModel):
    name: str
    type: str


class SqlResult(BaseModel):
    columns: list[Column]
    rows: list[dict[str, Any]]
    row_count: int


class JobCreate(Strict):
    name: str = NAME
    select: str = Field(min_length=1, max_length=MAX_STATEMENT_CHARS)
    into: str | None = Field(None, description="an existing topic: INSERT INTO it instead of a new view topic")
    options: dict[str, str] = Field(default_factory=dict)


class Job(BaseModel):
    name: str
    output_topic: str
    state: str
    source_lag: int
    watermark: str | None
    rows_in: int
    rows_out: int
    late_rows: int
    retention_skipped: int = Field(0, description="source offsets retention removed before the job read them")
    checkpoints: int
    last_checkpoint: str | None
    sql: str
    options: dict[str, str]


class JobList(BaseModel):
    data: list[Job]
    next_page_token: str | None
