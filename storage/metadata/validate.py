"""Input validation for both metadata backends (docs/DESIGN.md §5): names, counts, offsets,
configs, segments and checkpoints are checked before any IO, so a bad request never opens a
transaction and both backends reject exactly the same inputs with the same messages. Also the
JSON encodings of topic config and checkpoint stats, which validation produces."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from streamhouse.storage.errors import InvalidInputError, PartitionCountError
from streamhouse.storage.metadata.producer_state import KEPT_BATCHES, SEQUENCE_SPAN, ProducerState
from streamhouse.storage.model import Checkpoint, SegmentInfo
from streamhouse.storage.namespace import split_stored

MAX_PARTITIONS = 10_000
MAX_TOPIC_NAME = 249  # Kafka's limit, so topic names round-trip to Kafka tooling
MAX_NAME = 1_000  # groups, holders and lease resources: generous, but bounded
MAX_SQL = 1_000_000  # a job's query text; far beyond any real query, small enough to be a row
# Checkpoint rows kept per job. A restart only needs the latest; the others are for operators
# looking at recent progress. Without a bound a job checkpointing every few seconds would add
# millions of rows a year.
CHECKPOINT_HISTORY = 100
_TOPIC_NAME_RE = re.compile(r"[A-Za-z0-9._-]+")
_INT64_MAX = 2**63 - 1


# -- validation --------------------------------------------------------------------------------
def _int(what: str, value: object, lo: int, hi: int = _INT64_MAX) -> int:
    # bool is an int subclass; True as a partition count is a bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be an integer, got {value!r}")
    if not lo <= value <= hi:
        raise InvalidInputError(f"{what} must be in {lo}..{hi}, got {value}")
    return value


def _name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise InvalidInputError(f"{what} must be a non-empty string of at most {MAX_NAME} characters")
    return value


def validate_topic_name(name: object, kind: str = "topic") -> str:
    # An org's stored names are `<org>~<name>` (storage/namespace.py): the name part is checked.
    rest = split_stored(name)[1] if isinstance(name, str) else name
    if (
        not isinstance(rest, str)
        or not 1 <= len(rest) <= MAX_TOPIC_NAME
        or _TOPIC_NAME_RE.fullmatch(rest) is None
        or rest in (".", "..")
    ):
        raise InvalidInputError(
            f"invalid {kind} name {name!r}: use 1..{MAX_TOPIC_NAME} characters of [A-Za-z0-9._-], not '.' or '..'"
        )
    assert isinstance(name, str)  # rest is a str only when name is
    return name


def validate_partition_count(partitions: object) -> int:
    return _int("partitions", partitions, 1, MAX_PARTITIONS)


def encode_config(config: Mapping[str, str] | None, what: str = "topic config") -> str:
    """Topic config (or job options) as canonical JSON text (sorted keys, so equal configs store
    equal text)."""
    if config is None:
        return "{}"
    if not isinstance(config, Mapping):
        raise InvalidInputError(f"{what} must be a mapping of str to str, got {type(config).__name__}")
    for key, value in config.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise InvalidInputError(f"{what} must map str to str, got {key!r}: {value!r}")
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"))


def decode_config(text: str) -> dict[str, str]:
    decoded = json.loads(text)
    if not isinstance(decoded, dict):
        raise ValueError(f"stored topic config is not a JSON object: {text!r}")
    return {str(k): str(v) for k, v in decoded.items()}


def validate_value_schema(value_schema: object) -> str | None:
    # Opaque to storage: the SQL layer owns its meaning. Only the type is checked here.
    if value_schema is not None and not isinstance(value_schema, str):
        raise InvalidInputError(f"value_schema must be JSON text or None, got {type(value_schema).__name__}")
    return value_schema


def validate_new_topic(name: object, partitions: object, config: Mapping[str, str] | None, value_schema: object) -> str:
    """Every check of create_topic before any SQL runs; returns the config as JSON text."""
    validate_topic_name(name)
    validate_partition_count(partitions)
    config_json = encode_config(config)
    validate_value_schema(value_schema)
    return config_json


@dataclass(frozen=True)
class TopicAlteration:
    """A validated alter_topic request: config keys to set and to remove, partitions to add."""

    set_config: dict[str, str]
    reset: tuple[str, ...]
    add_partitions: int

    def config_json(self, stored: str) -> str:
        """The topic's new config JSON from the stored one."""
        config = decode_config(stored)
        for key in self.reset:
            config.pop(key, None)
        config.update(self.set_config)
        return encode_config(config)


def validate_alter(
    name: object, set_config: Mapping[str, str] | None, reset: Sequence[str], add_partitions: object
) -> TopicAlteration:
    """Every check of alter_topic that needs no database, before any SQL runs."""
    validate_topic_name(name)
    encode_config(set_config, "config to set")
    if isinstance(reset, str) or not isinstance(reset, Sequence):
        raise InvalidInputError(f"reset must be a sequence of config keys, got {reset!r}")
    for key in reset:
        if not isinstance(key, str):
            raise InvalidInputError(f"reset must hold config keys (str), got {key!r}")
    both = sorted(set(reset) & set(set_config or {}))
    if both:
        raise InvalidInputError(f"config keys both set and reset: {', '.join(both)}")
    added = _int("add_partitions", add_partitions, 0)  # the limit on the total: check_growth
    return TopicAlteration(dict(set_config or {}), tuple(reset), added)


def check_growth(topic: str, partitions: int, add: int) -> int:
    """The partition count after adding `add` (read in the transaction); refused past the limit."""
    total = partitions + add
    if total > MAX_PARTITIONS:
        raise PartitionCountError(
            f"topic {topic!r} has {partitions} partitions; adding {add} would make {total}, "
            f"over the limit of {MAX_PARTITIONS}"
        )
    return total


def validate_partition_arg(partition: object) -> int:
    # Only the type: the range depends on the topic, so check_partition judges it in the
    # transaction (PartitionNotFoundError), before the number is ever bound to a query.
    return _int("partition", partition, -_INT64_MAX - 1)


def validate_segment(segment: SegmentInfo, holder: str, epoch: int) -> None:
    validate_topic_name(segment.topic)
    validate_partition_arg(segment.partition)
    validate_holder(holder)
    _int("epoch", epoch, 1)
    _int("base_offset", segment.base_offset, 0)
    _int("end_offset", segment.end_offset, segment.base_offset + 1)
    _int("min_timestamp", segment.min_timestamp, -_INT64_MAX)
    _int("max_timestamp", segment.max_timestamp, segment.min_timestamp)
    _int("size_bytes", segment.size_bytes, 0)
    _int("footer_length", segment.footer_length, 0)
    _int("footer_crc", segment.footer_crc, 0, 2**32 - 1)
    _name("object_key", segment.object_key)
    # The object key and the footer carry the segment's epoch; a commit under another epoch
    # would record a segment whose name lies about who wrote it.
    if segment.epoch != epoch:
        raise InvalidInputError(f"segment epoch {segment.epoch} differs from the committing epoch {epoch}")


def validate_range(start_offset: object, end_offset: object) -> None:
    _int("start_offset", start_offset, 0)
    if end_offset is not None:
        _int("end_offset", end_offset, 0)


def validate_resource(resource: object) -> str:
    return _name("lease resource", resource)


def validate_holder(holder: object) -> str:
    return _name("holder", holder)


def validate_ttl(ttl_ms: object) -> int:
    return _int("ttl_ms", ttl_ms, 1, 7 * 24 * 3600 * 1000)


def validate_epoch(epoch: object) -> int:
    return _int("epoch", epoch, 0)


def validate_group(group: object) -> str:
    return _name("consumer group", group)


def validate_offsets(offsets: Mapping[int, int]) -> list[tuple[int, int]]:
    """(partition, next offset) pairs, sorted so concurrent commits lock rows in one order."""
    if not isinstance(offsets, Mapping):
        raise InvalidInputError("offsets must map partition → next offset")
    return sorted((validate_partition_arg(p), _int(f"offset of partition {p}", o, 0)) for p, o in offsets.items())


# -- jobs ----------------------------------------------------------------------------------------
def validate_job_name(name: object) -> str:
    # Topic rules: a materialized view's job and its output topic share the name, and the name
    # is part of the lease resource and of object keys.
    return validate_topic_name(name, "job")


def _text(what: str, value: object, max_len: int) -> str:
    """Free text stored as is. PostgreSQL's TEXT cannot hold NUL and neither driver can encode a
    lone surrogate; rejecting both here keeps the two backends accepting the same strings."""
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise InvalidInputError(f"{what} must be a non-empty string of at most {max_len} characters")
    if "\x00" in value:
        raise InvalidInputError(f"{what} must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(f"{what} is not valid Unicode: {exc}") from exc
    return value


def validate_new_job(name: object, sql: object, output_topic: object, options: Mapping[str, str] | None) -> str:
    """Every check of create_job before any SQL runs; returns the options as JSON text.

    The output topic's existence is not checked: jobs and topics are created and dropped
    separately, and a checkpoint into a missing topic fails on its own."""
    validate_job_name(name)
    _text("job sql", sql, MAX_SQL)
    validate_topic_name(output_topic)
    return encode_config(options, "job options")


def encode_stats(stats: Mapping[str, int | float | str]) -> str:
    """Checkpoint stats as canonical JSON text; only values that come back as they went in."""
    if not isinstance(stats, Mapping):
        raise InvalidInputError(f"checkpoint stats must be a mapping, got {type(stats).__name__}")
    for key, value in stats.items():
        if not isinstance(key, str):
            raise InvalidInputError(f"checkpoint stats keys must be strings, got {key!r}")
        # bool would come back as a bool, not the int the type promises; NaN and infinities
        # have no JSON spelling.
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise InvalidInputError(f"checkpoint stat {key!r} must be an int, float or str, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"checkpoint stat {key!r} must be finite, got {value!r}")
    return json.dumps(dict(stats), sort_keys=True, separators=(",", ":"))


def decode_stats(text: str) -> dict[str, int | float | str]:
    decoded = json.loads(text)
    if not isinstance(decoded, dict):
        raise ValueError(f"stored checkpoint stats are not a JSON object: {text!r}")
    return {str(k): v for k, v in decoded.items()}


@dataclass(frozen=True)
class CheckpointPlan:
    """A validated checkpoint, arranged the way both backends write it.

    Everything is sorted by (topic, partition): PostgreSQL locks topic and partition rows in
    that order, so two checkpoints touching the same partitions queue instead of deadlocking.
    """

    stats_json: str
    # (topic, partition) → that partition's output segments in log order, contiguous.
    outputs: dict[tuple[str, int], list[SegmentInfo]]
    # (topic, partition, next offset) per source partition.
    sources: list[tuple[str, int, int]]

    @property
    def topics(self) -> dict[str, list[int]]:
        """Every topic the checkpoint names (output or source) → its partitions named, sorted."""
        named: dict[str, set[int]] = {}
        for topic, partition in self.outputs:
            named.setdefault(topic, set()).add(partition)
        for topic, partition, _ in self.sources:
            named.setdefault(topic, set()).add(partition)
        return {topic: sorted(named[topic]) for topic in sorted(named)}


def validate_checkpoint(checkpoint: Checkpoint, holder: str, epoch: int) -> CheckpointPlan:
    """Every check of commit_checkpoint that needs no database, before any SQL runs."""
    validate_job_name(checkpoint.job)
    validate_holder(holder)
    _int("epoch", epoch, 1)
    _int("checkpoint seq", checkpoint.seq, 1)
    if checkpoint.state_key is not None:
        _text("state_key", checkpoint.state_key, MAX_NAME)
    stats_json = encode_stats(checkpoint.stats)

    if not isinstance(checkpoint.output_segments, tuple | list):
        raise InvalidInputError("output_segments must be a tuple of SegmentInfo")
    outputs: dict[tuple[str, int], list[SegmentInfo]] = {}
    for segment in checkpoint.output_segments:
        if not isinstance(segment, SegmentInfo):
            raise InvalidInputError(f"output_segments must hold SegmentInfo values, got {type(segment).__name__}")
        # The job's lease epoch is the writer's epoch: it is in the object key and the footer.
        validate_segment(segment, holder, epoch)
        run = outputs.setdefault((segment.topic, segment.partition), [])
        # A gap or an overlap inside one checkpoint is a bug in the caller, not a race, so it
        # is invalid input rather than a conflict.
        if run and segment.base_offset != run[-1].end_offset:
            raise InvalidInputError(
                f"output segments of {segment.topic!r}/{segment.partition} must be contiguous and ascending: "
                f"[{run[-1].base_offset}, {run[-1].end_offset}) is followed by "
                f"[{segment.base_offset}, {segment.end_offset})"
            )
        run.append(segment)

    if not isinstance(checkpoint.source_offsets, Mapping):
        raise InvalidInputError("source_offsets must map (topic, partition) → next offset")
    sources: list[tuple[str, int, int]] = []
    for key, offset in checkpoint.source_offsets.items():
        if not isinstance(key, tuple) or len(key) != 2:
            raise InvalidInputError(f"source_offsets keys must be (topic, partition) pairs, got {key!r}")
        topic, partition = key
        validate_topic_name(topic)
        validate_partition_arg(partition)
        sources.append((topic, partition, _int(f"source offset of {topic!r}/{partition}", offset, 0)))
    return CheckpointPlan(stats_json, dict(sorted(outputs.items())), sorted(sources))


def checkpoint_values(checkpoint: Checkpoint, plan: CheckpointPlan) -> tuple[str, int, str | None, str]:
    """Insert values in CHECKPOINT_COLUMNS order, without created_at_ms (the database's clock)."""
    return (checkpoint.job, checkpoint.seq, checkpoint.state_key, plan.stats_json)


def validate_producers(producers: Sequence[ProducerState]) -> None:
    """Producer states for commit_segment (docs/DESIGN.md §10): one per producer id, in range."""
    seen: set[int] = set()
    for state in producers:
        pid = _int("producer id", state.producer_id, 0)
        _int("producer epoch", state.producer_epoch, 0, (1 << 15) - 1)
        if pid in seen:
            raise InvalidInputError(f"producer {pid} is named twice in one segment commit")
        seen.add(pid)
        if len(state.batches) > KEPT_BATCHES:
            raise InvalidInputError(f"producer {pid}: {len(state.batches)} batches kept, at most {KEPT_BATCHES}")
        for b in state.batches:
            if b.producer_id != pid or b.producer_epoch != state.producer_epoch:
                raise InvalidInputError(f"producer {pid}: a kept batch belongs to {b.producer_id}/{b.producer_epoch}")
            _int("base offset", b.base_offset, 0)
            _int("record count", b.record_count, 1)
            _int("first sequence", b.first_sequence, 0, SEQUENCE_SPAN - 1)
            _int("last sequence", b.last_sequence, 0, SEQUENCE_SPAN - 1)
