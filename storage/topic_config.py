"""The one registry of topic settings: every key a topic may carry, how its value is checked and
normalised, its default, whether anything enforces it and whether ALTER TOPIC may change it.

Every surface checks through here (CREATE TOPIC … WITH, create_topic(config=) on both SDK
transports and gRPC, ALTER TOPIC SET/RESET in SQL, SDK and CLI), so a key is either understood
and enforced or refused: a misspelled key gets the closest name as a suggestion, and a Kafka
key nothing enforces yet (compression.type, segment.ms, …) is refused as "not supported yet"
instead of being stored and silently ignored.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from streamhouse.storage.errors import (
    PartitionCountError,
    TopicSettingError,
    UnknownTopicSettingError,
    UnsupportedTopicSettingError,
)
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
            Setting(
                VALUE_SUBJECT_STRATEGY,
                "the subject a value's schema id must be registered under when values are validated: "
                "'TopicNameStrategy' (<topic>-value), 'RecordNameStrategy' (<record name>) or "
                "'TopicRecordNameStrategy' (<topic>-<record name>)",
                _subject_strategy,
                TOPIC_STRATEGY,
                alterable=True,
                enforced_by="engine/registry/produce_check.py (produce, every path)",
            ),
            Setting(
                KEY_SCHEMA_VALIDATION,
                "every non-null key must be schema-registry framed (magic byte 0 + the id of a registered schema)",
                _boolean,
                "false",
                alterable=True,
                enforced_by="engine/registry/produce_check.py (produce, every path)",
            ),
            Setting(
                KEY_SUBJECT_STRATEGY,
                "the subject a key's schema id must be registered under when keys are validated: "
                "'TopicNameStrategy' (<topic>-key), 'RecordNameStrategy' (<record name>) or "
                "'TopicRecordNameStrategy' (<topic>-<record name>)",
                _subject_strategy,
                TOPIC_STRATEGY,
                alterable=True,
                enforced_by="engine/registry/produce_check.py (produce, every path)",
            ),
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


@dataclass(frozen=True)
class TopicChange:
    """A validated ALTER TOPIC: keys to set (normalised values), keys to remove, and partitions
    to add (0: none). Every key is known, user-settable and alterable."""

    topic: str
    set_config: Mapping[str, str] = field(default_factory=dict)
    reset: tuple[str, ...] = ()
    add_partitions: int = 0


def canonical_key(key: object, where: str) -> str:
    if not isinstance(key, str) or not key.strip():
        raise TopicSettingError(f"{where}: a topic setting name must be a non-empty string, got {key!r}")
    # Kafka's keys are lower case; `WITH (Partitions = 3)` means the same thing in SQL.
    return key.strip().lower()


def _known(key: str, where: str) -> Setting:
    """The setting `key` names; refused when unknown (with a suggestion) or unsupported."""
    setting = SETTINGS.get(key)
    if setting is not None:
        return setting
    if key in UNSUPPORTED:
        error: TopicSettingError = UnsupportedTopicSettingError(
            f"{where}: topic setting {key!r} is not supported yet (nothing in StreamHouse enforces it); "
            f"supported: {', '.join(user_keys())}"
        )
    else:
        names = [*user_keys(), *sorted(UNSUPPORTED)]
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known settings: {', '.join(user_keys())}"
        error = UnknownTopicSettingError(f"{where}: unknown topic setting {key!r}; {hint}")
        error.suggestion = close[0] if close else None
    error.key = key
    raise error


def _value(setting: Setting, value: object, where: str) -> str:
    if not isinstance(value, str):
        raise _refused(setting.key, f"{where}: topic setting {setting.key!r} needs a string value, got {value!r}")
    try:
        return setting.parse(value)
    except ValueError as exc:
        raise _refused(setting.key, f"{where}: topic setting {setting.key!r} = {value!r}: {exc}") from None


def _refused(key: str, message: str) -> TopicSettingError:
    error = TopicSettingError(message)
    error.key = key
    return error


def user_keys() -> list[str]:
    """Settings a user may give, in registry order."""
    return [s.key for s in SETTINGS.values() if not s.internal]


def alterable_keys() -> list[str]:
    """Settings ALTER TOPIC SET/RESET may change, in registry order."""
    return [s.key for s in SETTINGS.values() if s.alterable and not s.internal]


def parse_options(options: Mapping[str, str], where: str) -> dict[str, str]:
    """`CREATE TOPIC … WITH (…)` options: every key known and supported, values normalised,
    `partitions` and `format` included (the caller takes them out)."""
    parsed: dict[str, str] = {}
    for raw_key, value in options.items():
        key = canonical_key(raw_key, where)
        setting = _known(key, where)
        if setting.internal:
            raise _refused(key, f"{where}: topic setting {key!r} cannot be set: {setting.instead}")
        parsed[key] = _value(setting, value, where)
    return parsed


def create_config(config: Mapping[str, str] | None, where: str) -> dict[str, str]:
    """A new topic's config map (SDK create_topic(config=), gRPC CreateTopic): only stored,
    user-settable keys; the partition count and the format have arguments of their own."""
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise TopicSettingError(f"{where}: config must map setting names to strings, got {type(config).__name__}")
    parsed = parse_options(config, where)
    for key in parsed:
        if not SETTINGS[key].stored:
            hint = "pass partitions=N (CLI --partitions N)" if key == "partitions" else "it is part of value_schema"
            raise _refused(key, f"{where}: {key!r} is not a config setting: {hint}")
    return parsed


def alter_shape(
    topic: str, set_config: Mapping[str, str] | None, reset: Iterable[str] | None, add_partitions: int | None
) -> TopicChange:
    """The types of an ALTER TOPIC (string keys and values, a whole partition count of at least
    1, something to change), keys not judged yet: what a remote client checks before sending."""
    where = f"ALTER TOPIC {topic}"
    if set_config is not None and not isinstance(set_config, Mapping):
        raise TopicSettingError(f"{where}: set must map setting names to strings, got {type(set_config).__name__}")
    if isinstance(reset, str) or (reset is not None and not isinstance(reset, Iterable)):
        raise TopicSettingError(f"{where}: reset must be a list of setting names, got {reset!r}")
    values: dict[str, str] = {}
    for raw_key, value in (set_config or {}).items():
        key = canonical_key(raw_key, where)
        if not isinstance(value, str):
            raise _refused(key, f"{where}: topic setting {key!r} needs a string value, got {value!r}")
        values[key] = value
    removed: list[str] = []
    for raw_key in reset or ():
        key = canonical_key(raw_key, where)
        if key in values:
            raise _refused(key, f"{where}: {key!r} is both SET and RESET")
        if key not in removed:
            removed.append(key)
    added = 0
    if add_partitions is not None:
        if isinstance(add_partitions, bool) or not isinstance(add_partitions, int):
            raise PartitionCountError(f"{where}: ADD PARTITIONS needs a whole number, got {add_partitions!r}")
        if add_partitions < 1:
            raise PartitionCountError(
                f"{where}: ADD PARTITIONS {add_partitions}: the partition count only grows (as in Kafka); "
                "add at least 1 partition"
            )
        added = add_partitions
    if not values and not removed and not added:
        raise TopicSettingError(f"{where}: nothing to change (give SET, RESET or ADD PARTITIONS)")
    return TopicChange(topic, MappingProxyType(values), tuple(removed), added)


def alter_change(
    topic: str,
    set_config: Mapping[str, str] | None,
    reset: Iterable[str] | None,
    add_partitions: int | None,
    current: Mapping[str, str] | None = None,
) -> TopicChange:
    """Check an ALTER TOPIC before anything changes: every key known, supported and alterable,
    values normalised. `current` is the topic's stored config: an unregistered key it holds
    may be RESET, so a setting stored before it was refused can still be removed."""
    shape = alter_shape(topic, set_config, reset, add_partitions)
    where = f"ALTER TOPIC {topic}"
    stored = {canonical_key(k, where) for k in (current or {})}
    values = {
        key: _value(_alterable(_known(key, where), where), value, where) for key, value in shape.set_config.items()
    }
    for key in shape.reset:
        setting = SETTINGS.get(key)
        if setting is not None:
            _alterable(setting, where)
        elif key not in stored:
            _known(key, where)  # refused: unknown (with a suggestion) or not supported
    return TopicChange(topic, MappingProxyType(values), shape.reset, shape.add_partitions)


def _alterable(setting: Setting, where: str) -> Setting:
    if setting.internal or not setting.alterable:
        raise _refused(setting.key, f"{where}: {setting.key!r} cannot be altered: {setting.instead}")
    return setting
