"""Topic settings as every surface checks them against the registry (topic_settings.py):
CREATE TOPIC … WITH, create_topic(config=) on both SDK transports and gRPC, ALTER TOPIC SET/RESET
in SQL, SDK and CLI. A key is either understood and enforced or refused: a misspelled key gets
the closest name as a suggestion, and a known Kafka key nothing enforces yet is refused as "not
supported yet".
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from streamhouse.storage.errors import (
    PartitionCountError,
    TopicSettingError,
    UnknownTopicSettingError,
    UnsupportedTopicSettingError,
)
from streamhouse.storage.topic_settings import SETTINGS, UNSUPPORTED, Setting, user_keys


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
