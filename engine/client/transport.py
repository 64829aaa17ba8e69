"""The one contract the SDK's two transports keep: the embedded engine (in-process, no
network) and a remote agent over gRPC. The Client above them never knows which it has."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

import pyarrow as pa

from streamhouse.api.types import Acks, FetchResult, GroupDescription, GroupOffset, ProduceResult, TopicDescription
from streamhouse.storage.model import TopicInfo


class Transport(Protocol):
    def create_topic(
        self, name: str, partitions: int, config: Mapping[str, str], value_schema: str | None
    ) -> TopicInfo: ...

    def list_topics(self) -> list[TopicInfo]: ...

    def describe_topic(self, name: str) -> TopicDescription: ...

    def delete_topic(self, name: str) -> None: ...

    def alter_topic(
        self, name: str, set_config: Mapping[str, str], reset: Sequence[str], add_partitions: int | None
    ) -> TopicInfo:
        """ALTER TOPIC: the agent judges the change (storage/topic_config.py) and applies all of
        it or nothing."""
        ...

    def produce(self, topic: str, partition: int, batch: pa.RecordBatch, acks: Acks) -> list[ProduceResult]:
        """Append one batch to one partition (or -1: the agent chooses); leader routing and
        retries are the transport's business."""
        ...

    def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int,
        max_wait_ms: int,
        min_bytes: int = 1,
        isolation: str = "read_committed",
    ) -> FetchResult:
        """`isolation`: "read_committed" (committed records only) or "read_uncommitted" (all of
        them), storage/metadata/isolation.py."""
        ...

    def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None: ...

    def fetch_offsets(self, group: str, topic: str) -> list[GroupOffset]: ...

    def list_groups(self) -> list[str]: ...

    def describe_group(self, group: str) -> GroupDescription: ...

    def sql(self, query: str, settings: Mapping[str, str] | None = None) -> pa.Table:
        """One SQL statement, run by the agent (or the embedded engine) under the session's
        `settings`; a KeyboardInterrupt while waiting cancels it there, then propagates."""
        ...

    def close(self) -> None: ...
