"""The one registry of topic settings: every key a topic may carry, how its value is checked and
normalised, its default, whether anything enforces it and whether ALTER TOPIC may change it.
Keys nothing enforces yet (compression.type, segment.ms, …) are listed too (UNSUPPORTED), so
they are refused as "not supported yet" instead of stored and silently ignored. The checks
every surface runs against this registry are in topic_config.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from streamhouse.storage.metadata.common import MAX_PARTITIONS

IGNORE_ERRORS = "json.ignore-errors"
JOB = "job"
TIMESTAMP_TYPE = "message.timestamp.type"
CREATE_TIME = "CreateTime"
LOG_APPEND_TIME = "LogAppendTime"
VALUE_SCHEMA_VALIDATION = "confluent.value.schema.validation"  # Confluent Server's names
VALUE_SUBJECT_STRATEGY = "confluent.value.subject.name.strategy"
KEY_SCHEMA_VALIDATION = "confluent.key.schema.validation"
KEY_SUBJECT_STRATEGY = "confluent.key.subject.name.strategy"
TOPIC_STRATEGY = "TopicNameStrategy"
RECORD_STRATEGY = "RecordNameStrategy"
TOPIC_RECORD_STRATEGY = "TopicRecordNameStrategy"


CLEANUP_POLICY = "cleanup.policy"
DELETE_RETENTION_MS = "delete.retention.ms"
MIN_CLEANABLE_DIRTY_RATIO = "min.cleanable.dirty.ratio"


def _cleanup_policy(value: str) -> str:
    # Kafka accepts the two words in either order, comma separated; one spelling is stored.
    words = sorted({w.strip() for w in value.strip().lower().split(",")})
    if not words or not set(words) <= {"compact", "delete"} or len(value.split(",")) != len(words):
        raise ValueError("must be 'delete', 'compact' or 'compact,delete'")
    return ",".join(words)


def _non_negative_ms(value: str) -> str:
    text = value.strip()
    if not text.isdigit() or int(text) > 2**62:
        raise ValueError("must be a whole number of milliseconds, 0 or more")
    return str(int(text))


def _ratio(value: str) -> str:
    try:
        ratio = float(value.strip())
    except ValueError:
        raise ValueError("must be a number from 0 to 1") from None
    if not 0 <= ratio <= 1:
        raise ValueError("must be a number from 0 to 1")
    return repr(ratio)


def compacted(config: Mapping[str, str]) -> bool:
    """Whether a topic with this config map is compacted ('compact' or 'compact,delete')."""
    return "compact" in config.get(CLEANUP_POLICY, "delete").split(",")


ICEBERG_ENABLED = "iceberg.enabled"
RETENTION_MS = "retention.ms"
RETENTION_BYTES = "retention.bytes"


def _limit(unit: str) -> Callable[[str], str]:
    """retention.ms / retention.bytes: -1 (no limit) or a whole number, 0 or more."""

    def parse(value: str) -> str:
        text = value.strip()
        number = text[1:] if text.startswith("-") else text
        if not number.isdigit() or (text.startswith("-") and int(number) != 1) or int(number) > 2**62:
            raise ValueError(f"must be -1 (no limit) or a whole number of {unit}, 0 or more")
        return str(int(text))

    return parse


def _positive_int(value: str) -> str:
    text = value.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_PARTITIONS:
        raise ValueError(f"must be a positive integer, at most {MAX_PARTITIONS}")
    return str(int(text))


def _boolean(value: str) -> str:
    text = value.strip().lower()
    if text not in ("true", "false"):
        raise ValueError("must be 'true' or 'false'")
    return text


def _one_of(*allowed: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        text = value.strip().lower()
        if text not in allowed:
            raise ValueError(f"must be one of {', '.join(repr(a) for a in allowed)}")
        return text

    return parse


def _subject_strategy(value: str) -> str:
    # Confluent's values are Java class names; the short name is enough and is what is stored.
    short = value.strip().rsplit(".", 1)[-1].lower()
    spelled = {s.lower(): s for s in (TOPIC_STRATEGY, RECORD_STRATEGY, TOPIC_RECORD_STRATEGY)}
    if short not in spelled:
        raise ValueError(f"must be {TOPIC_STRATEGY!r}, {RECORD_STRATEGY!r} or {TOPIC_RECORD_STRATEGY!r}")
    return spelled[short]


def _timestamp_type(value: str) -> str:
    # Kafka spells the values in camel case; any case is accepted, Kafka's spelling is stored.
    spelled = {CREATE_TIME.lower(): CREATE_TIME, LOG_APPEND_TIME.lower(): LOG_APPEND_TIME}
    text = value.strip().lower()
    if text not in spelled:
        raise ValueError(f"must be {CREATE_TIME!r} or {LOG_APPEND_TIME!r}")
    return spelled[text]


@dataclass(frozen=True)
class Setting:
    """One setting a topic may carry. Every setting here is enforced (`enforced_by` names
    where); keys nothing enforces yet are in UNSUPPORTED instead, and refused."""

    key: str
    doc: str
    parse: Callable[[str], str]  # the normalised value, or ValueError saying what is allowed
    default: str | None
    alterable: bool
    enforced_by: str
    # False: consumed when the topic is created (the partition count, the value format), not
    # kept in the topic's config map.
    stored: bool = True
    # Set by StreamHouse itself (a materialized view's own topic), never by a user.
    internal: bool = False
    # How to change it when ALTER TOPIC SET cannot.
    instead: str = ""


def _strategy_setting(key: str, side: str) -> Setting:
    """confluent.{value,key}.subject.name.strategy: alike but for the side they name."""
    return Setting(
        key,
        f"the subject a {side}'s schema id must be registered under when {side}s are validated: "
        f"'TopicNameStrategy' (<topic>-{side}), 'RecordNameStrategy' (<record name>) or "
        "'TopicRecordNameStrategy' (<topic>-<record name>)",
        _subject_strategy,
        TOPIC_STRATEGY,
        alterable=True,
        enforced_by="engine/registry/produce_check.py (produce, every path)",
    )


SETTINGS: Mapping[str, Setting] = MappingProxyType(
    {
        s.key: s
        for s in (
            Setting(
                "partitions",
                "number of partitions",
                _positive_int,
                "1",
                alterable=False,
                enforced_by="storage/metadata (one row per partition), api/partitioner.py (keys)",
                stored=False,
                instead="ALTER TOPIC … ADD PARTITIONS n (SDK add_partitions=n, CLI --add-partitions n) adds partitions",
            ),
            Setting(
                "format",
                "value format of declared columns: 'json' (with columns) or 'raw'",
                _one_of("json", "raw"),
                None,
                alterable=False,
                enforced_by="storage/values/schema.py (how values decode into columns)",
                stored=False,
                instead="it decides how every stored value is decoded; create a new topic instead",
            ),
            Setting(
                IGNORE_ERRORS,
                "values that do not match the declared columns are stored and read as nulls",
                _boolean,
                "false",
                alterable=True,
                enforced_by="storage/values/check.py (produce), sql/query/catalog.py (queries), read per statement",
            ),
            Setting(
                TIMESTAMP_TYPE,
                "'CreateTime' keeps the producer's record timestamps; 'LogAppendTime' stamps the time the "
                "agent appends them",
                _timestamp_type,
                CREATE_TIME,
                alterable=True,
                enforced_by="engine/agent/service.py (produce, every path), engine/kafka/timestamps.py (Kafka Fetch)",
            ),
            Setting(
                VALUE_SCHEMA_VALIDATION,
                "every value must be schema-registry framed (magic byte 0 + the id of a registered schema)",
                _boolean,
                "false",
                alterable=True,
                enforced_by="engine/registry/produce_check.py (produce, every path)",
            ),
            _strategy_setting(VALUE_SUBJECT_STRATEGY, "value"),
            Setting(
                KEY_SCHEMA_VALIDATION,
                "every non-null key must be schema-registry framed (magic byte 0 + the id of a registered schema)",
                _boolean,
                "false",
                alterable=True,
                enforced_by="engine/registry/produce_check.py (produce, every path)",
            ),
            _strategy_setting(KEY_SUBJECT_STRATEGY, "key"),
            Setting(
                CLEANUP_POLICY,
                "'delete' (old segments go by retention), 'compact' (per key the latest value survives), or "
                "'compact,delete' (both); compacted topics refuse records without a key",
                _cleanup_policy,
                "delete",
                alterable=True,
                enforced_by="engine/agent/compactor.py (compaction), engine/agent/service.py (keys required)",
            ),
            Setting(
                DELETE_RETENTION_MS,
                "how long a tombstone (null value) stays after compaction first cleaned it, in ms",
                _non_negative_ms,
                "86400000",
                alterable=True,
                enforced_by="engine/agent/compactor.py, storage/segment/compact.py",
            ),
            Setting(
                MIN_CLEANABLE_DIRTY_RATIO,
                "compaction starts when this share of the cleanable bytes was never compacted (0 to 1)",
                _ratio,
                "0.5",
                alterable=True,
                enforced_by="engine/agent/compactor.py (plan_compaction)",
            ),
            Setting(
                RETENTION_MS,
                "segments whose newest record is older than this many ms are removed (-1: kept forever; "
                "unset: the agent's --retention-ms); the newest segment of a partition is always kept",
                _limit("milliseconds"),
                None,
                alterable=True,
                enforced_by="engine/agent/retention.py (with cleanup.policy 'delete')",
            ),
            Setting(
                RETENTION_BYTES,
                "the oldest segments are removed while a partition holds more than this many bytes "
                "(-1: no limit; unset: the agent's --retention-bytes); the newest segment is always kept",
                _limit("bytes"),
                None,
                alterable=True,
                enforced_by="engine/agent/retention.py (with cleanup.policy 'delete')",
            ),
            Setting(
                ICEBERG_ENABLED,
                "publish the topic's segments as the Iceberg table streamhouse.<topic> in the metadata database's "
                "SQL catalog (no copy; agents started with --iceberg-interval-ms)",
                _boolean,
                "false",
                alterable=True,
                enforced_by="engine/iceberg/publisher.py",
            ),
            Setting(
                JOB,
                "the continuous query whose output this topic is",
                str.strip,
                None,
                alterable=False,
                enforced_by="engine/jobs/manager.py (DROP MATERIALIZED VIEW drops only its own topic)",
                internal=True,
                instead="it is set by CREATE MATERIALIZED VIEW",
            ),
        )
    }
)

# Kafka topic configs (and the Flink connector's JSON options) a user may reasonably try. Known,
# so the error can say "not supported yet" instead of "unknown"; refused, because storing a
# setting that nothing enforces would promise what the engine does not do.
UNSUPPORTED: frozenset[str] = frozenset(
    {
        "compression.type",
        "file.delete.delay.ms",
        "flush.messages",
        "flush.ms",
        "index.interval.bytes",
        "local.retention.bytes",
        "local.retention.ms",
        "max.compaction.lag.ms",
        "max.message.bytes",
        "message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms",
        "message.timestamp.difference.max.ms",
        "min.compaction.lag.ms",
        "min.insync.replicas",
        "preallocate",
        "remote.storage.enable",
        "replication.factor",
        "segment.bytes",
        "segment.index.bytes",
        "segment.jitter.ms",
        "segment.ms",
        "unclean.leader.election.enable",
        "json.fail-on-missing-field",
        "json.timestamp-format.standard",
        "json.map-null-key.mode",
    }
)


def user_keys() -> list[str]:
    """Settings a user may give, in registry order."""
    return [s.key for s in SETTINGS.values() if not s.internal]


def alterable_keys() -> list[str]:
    """Settings ALTER TOPIC SET/RESET may change, in registry order."""
    return [s.key for s in SETTINGS.values() if s.alterable and not s.internal]
