"""ALTER TOPIC on the agent, transport-free (SQL, the embedded SDK and gRPC AlterTopic all come
here): the change is judged against the setting registry (storage/topic_settings.py) and the topic
as it is, then applied in one metadata transaction. A refused change changes nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from streamhouse.sql.query.catalog import topic_schema
from streamhouse.sql.statements.job_options import parse_job_options
from streamhouse.sql.streaming.continuous import plan_continuous
from streamhouse.sql.streaming.plan import JobPlan, topic_watermark
from streamhouse.storage import topic_config
from streamhouse.storage.errors import PartitionCountError, StreamHouseError
from streamhouse.storage.metadata import MetadataStore
from streamhouse.storage.model import TopicInfo


async def alter_topic(
    metadata: MetadataStore,
    name: str,
    set_config: Mapping[str, str] | None = None,
    reset: Iterable[str] | None = None,
    add_partitions: int | None = None,
) -> TopicInfo:
    """The topic after the change. TopicNotFoundError, TopicSettingError (unknown key with a
    suggestion, unsupported, not alterable, bad value) or PartitionCountError otherwise."""
    current = await metadata.get_topic(name)
    change = topic_config.alter_change(name, set_config, reset, add_partitions, current.config)
    if change.add_partitions:
        readers = await _jobs_reading(metadata, name)
        if readers:
            # A running query reads the partitions it found when it started and holds the
            # watermark over exactly those: records in a new partition would never reach it.
            raise PartitionCountError(
                f"ALTER TOPIC {name}: ADD PARTITIONS {change.add_partitions} refused: the continuous "
                f"queries {', '.join(readers)} read this topic and would miss records in new partitions; "
                "drop them first (DROP JOB keeps the output topic), then create them again"
            )
    return await metadata.alter_topic(name, dict(change.set_config), change.reset, change.add_partitions)


async def _jobs_reading(metadata: MetadataStore, topic: str) -> list[str]:
    """Names of the jobs whose source is `topic`, planned by the SQL planner as the job runner
    plans them (engine/jobs/runner.py job_plan): the agent sits below the jobs, not on them."""
    jobs = await metadata.list_jobs()
    if not jobs:
        return []
    topics = {t.name: t for t in await metadata.list_topics()}
    readers = []
    for job in jobs:
        try:
            plan = plan_continuous(
                job.sql,
                lambda t: topic_schema(topics[t]),
                lambda t: topic_watermark(topics[t]),
                state_ttl_ms=parse_job_options(job.options, job.name).state_ttl_ms,  # a regular join's TTL
            )
        except (StreamHouseError, KeyError):
            continue  # a job that cannot be planned (its source is gone) reads nothing
        read = (plan.topic,) if isinstance(plan, JobPlan) else plan.topics  # a join reads two
        if topic in read:
            readers.append(job.name)
    return readers
