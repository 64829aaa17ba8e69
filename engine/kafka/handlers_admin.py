"""Kafka admin APIs over the front-end contract's topics: CreateTopics, DeleteTopics,
CreatePartitions, DescribeConfigs and AlterConfigs (only the topic settings StreamHouse
enforces, storage/topic_settings.py; the rest are refused as INVALID_CONFIG, not stored)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streamhouse.api.contract import FrontEnd, error_mapping
from streamhouse.kafka import errors as codes
from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.kafka.handlers import Body, Context
from streamhouse.storage import topic_config, topic_settings
from streamhouse.storage.errors import NotFoundError, PartitionCountError, StreamHouseError, TopicSettingError

TOPIC_RESOURCE = 2
CONFIG_SOURCE_TOPIC = 1  # DYNAMIC_TOPIC_CONFIG
CONFIG_SOURCE_DEFAULT = 5  # DEFAULT_CONFIG


def topic_configs(config: Mapping[str, str], keys: list[str] | None) -> list[Body]:
    """DescribeConfigs entries of one topic: its stored settings, then the defaults of every
    other setting StreamHouse enforces (so admin tools show e.g. message.timestamp.type =
    CreateTime on a topic that never set it). `keys` None: all of them."""
    shown = dict(config)
    defaults = {
        s.key: s.default for s in topic_settings.SETTINGS.values()
        if s.stored and not s.internal and s.default is not None and s.key not in shown
    }  # fmt: skip
    entries = [(k, v, False) for k, v in shown.items()] + [(k, v, True) for k, v in defaults.items()]
    return [
        {"name": k, "value": v, "read_only": False, "is_default": default,
         "config_source": CONFIG_SOURCE_DEFAULT if default else CONFIG_SOURCE_TOPIC, "is_sensitive": False,
         "synonyms": []}
        for k, v, default in sorted(entries)
        if keys is None or k in keys
    ]  # fmt: skip


def admin_error(exc: StreamHouseError) -> int:
    """The code a topic admin API answers (the contract's table, its Kafka admin column)."""
    if isinstance(exc, KafkaProtocolError):
        return exc.error_code
    return error_mapping(exc).kafka_admin


class AdminHandlers:
    def __init__(self, front: FrontEnd) -> None:
        self.front = front
        self.by_key: dict[int, Any] = {
            19: self.create_topics, 20: self.delete_topics, 37: self.create_partitions,
            32: self.describe_configs, 33: self.alter_configs, 44: self.incremental_alter_configs,
        }  # fmt: skip

    async def create_topics(self, body: Body, version: int, ctx: Context) -> Body:
        results = []
        for topic in body["topics"]:
            name, count = topic["name"], topic["num_partitions"]
            count = 1 if count in (-1, 0) and not topic["assignments"] else count or len(topic["assignments"])
            out: Body = {"name": name, "error_code": 0, "error_message": None, "num_partitions": count,
                         "replication_factor": 1, "configs": None}  # fmt: skip
            try:
                given = {c["name"]: c["value"] for c in topic["configs"] if c["value"] is not None}
                # Only settings StreamHouse enforces; Kafka ones it does not are refused, not stored.
                config = topic_config.create_config(given, f"CreateTopics {name}")
                if body["validate_only"]:
                    if any(t.name == name for t in await self.front.list_topics()):
                        out["error_code"] = codes.TOPIC_ALREADY_EXISTS
                else:
                    await self.front.create_topic(name, count, config)
            except StreamHouseError as exc:
                out["error_code"], out["error_message"] = admin_error(exc), str(exc)
            results.append(out)
        return {"throttle_time_ms": 0, "topics": results}

    async def delete_topics(self, body: Body, version: int, ctx: Context) -> Body:
        names = body["topic_names"] if version < 6 else [t["name"] for t in body["topics"]]
        results = []
        for name in names:
            out: Body = {"name": name, "error_code": 0, "error_message": None}
            try:
                if name is None:
                    raise NotFoundError("topics are addressed by name here, not by topic id")
                await self.front.delete_topic(name)
            except StreamHouseError as exc:
                out["error_code"], out["error_message"] = admin_error(exc), str(exc)
            results.append(out)
        return {"throttle_time_ms": 0, "responses": results}

    async def create_partitions(self, body: Body, version: int, ctx: Context) -> Body:
        results = []
        for topic in body["topics"]:
            out: Body = {"name": topic["name"], "error_code": 0, "error_message": None}
            try:
                info = await self.front.topic(topic["name"])
                more = topic["count"] - info.partitions
                if more <= 0:
                    raise PartitionCountError(f"{topic['name']} has {info.partitions} partitions; the count only grows")
                if not body["validate_only"]:
                    await self.front.alter_topic(topic["name"], add_partitions=more)
            except StreamHouseError as exc:
                out["error_code"], out["error_message"] = admin_error(exc), str(exc)
            results.append(out)
        return {"throttle_time_ms": 0, "results": results}

    async def describe_configs(self, body: Body, version: int, ctx: Context) -> Body:
        results = []
        for resource in body["resources"]:
            out: Body = {"error_code": 0, "error_message": None, "resource_type": resource["resource_type"],
                         "resource_name": resource["resource_name"], "configs": []}  # fmt: skip
            if resource["resource_type"] == TOPIC_RESOURCE:
                try:
                    info = await self.front.topic(resource["resource_name"])
                    out["configs"] = topic_configs(info.config, resource["configuration_keys"])
                except StreamHouseError as exc:
                    out["error_code"], out["error_message"] = admin_error(exc), str(exc)
            results.append(out)
        return {"throttle_time_ms": 0, "results": results}

    async def alter_configs(self, body: Body, version: int, ctx: Context) -> Body:
        """Kafka's (non-incremental) AlterConfigs: the given set replaces the topic's
        settings; keys not given are reset."""
        results = []
        for resource in body["resources"]:
            out: Body = {"error_code": 0, "error_message": None, "resource_type": resource["resource_type"],
                         "resource_name": resource["resource_name"]}  # fmt: skip
            try:
                if resource["resource_type"] != TOPIC_RESOURCE:
                    raise TopicSettingError("only topic configs can be altered here")
                name = resource["resource_name"]
                info = await self.front.topic(name)
                wanted = {c["name"]: c["value"] for c in resource["configs"] if c["value"] is not None}
                reset = [k for k in info.config if k not in wanted and k in topic_settings.alterable_keys()]
                if not body["validate_only"]:
                    await self.front.alter_topic(name, set_config=wanted, reset=reset)
            except StreamHouseError as exc:
                out["error_code"], out["error_message"] = admin_error(exc), str(exc)
            results.append(out)
        return {"throttle_time_ms": 0, "responses": results}

    async def incremental_alter_configs(self, body: Body, version: int, ctx: Context) -> Body:
        """SET (0) and DELETE (1) per key, as one ALTER TOPIC; APPEND/SUBTRACT (2, 3) apply
        to list-valued settings, which StreamHouse topics do not have: INVALID_CONFIG."""
        results = []
        for resource in body["resources"]:
            out: Body = {"error_code": 0, "error_message": None, "resource_type": resource["resource_type"],
                         "resource_name": resource["resource_name"]}  # fmt: skip
            try:
                if resource["resource_type"] != TOPIC_RESOURCE:
                    raise TopicSettingError("only topic configs can be altered here")
                wanted = {c["name"]: c["value"] for c in resource["configs"] if c["config_operation"] == 0}
                reset = [c["name"] for c in resource["configs"] if c["config_operation"] == 1]
                if any(c["config_operation"] not in (0, 1) for c in resource["configs"]):
                    raise TopicSettingError("APPEND and SUBTRACT apply to list settings; no topic setting is a list")
                if None in wanted.values():
                    raise TopicSettingError("SET needs a value")
                if body["validate_only"]:
                    info = await self.front.topic(resource["resource_name"])
                    topic_config.alter_change(info.name, wanted, reset, None, info.config)
                else:
                    await self.front.alter_topic(resource["resource_name"], set_config=wanted, reset=reset)
            except StreamHouseError as exc:
                out["error_code"], out["error_message"] = admin_error(exc), str(exc)
            results.append(out)
        return {"throttle_time_ms": 0, "responses": results}
