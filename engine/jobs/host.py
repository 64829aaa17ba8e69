"""What a job uses of the agent it runs on, and nothing more: its topics (DDL through the
agent's topic cache, scans of committed segments up to the high watermark, end offsets,
leadership), the metadata store (jobs, leases, checkpoints), the object store (output
segments, state snapshots) and the agent's settings. The node (engine/node/) builds it from
the agent it composes; jobs never hold the AgentService, so the agent does not depend on them
(docs/DESIGN.md §1, the layers; §8, jobs)."""

from __future__ import annotations

from dataclasses import dataclass

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.sql_source import AgentTopics
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.object_store import ObjectStore


@dataclass(frozen=True)
class JobHost:
    topics: AgentTopics
    metadata: MetadataStore
    store: ObjectStore
    config: AgentConfig  # holder (lease owner), agent id, lease timing, roll age
