"""The front-end contract with the ACL check in front of every operation (issue 15).

`GuardedFrontEnd` wraps the agent's FrontEnd for every adapter of an agent running with auth
on (gRPC and REST in engine/server/agent_server.py, Kafka in engine/kafka/server.py), so all
faces ask the one check (storage/access.py → engine/auth/acl.py) the same question for the
same operation and get the same answer. The check runs before the operation: a refused
request changes nothing (no record stored, no topic created, no offset committed).

What each operation needs (Kafka's ACL model, extended to jobs and subjects):

| operation                                   | needs                                          |
|---------------------------------------------|------------------------------------------------|
| topic, describe_topic, partition_leaders    | describe topic (implied by read/write/…)      |
| list_topics / list_groups / list_jobs       | only what the principal may describe is listed |
| create_topic / alter_topic / delete_topic   | create / alter / delete topic                  |
| produce, producer_state                     | write topic                                    |
| fetch, earliest/end_offset, offset lookups  | read topic (Kafka's Fetch and ListOffsets)     |
| commit_offsets                              | read group and read topic (Kafka OffsetCommit) |
| fetch_offsets, committed_offsets            | describe group (and describe topic)            |
| describe_group / delete_group               | describe / delete group                        |
| describe_job                                | describe job                                   |
| sql, create_job, drop_job                   | checked by the SQL engine per statement        |

SQL statements are checked inside the SQL engine (sql/engine.py: the topics a query reads, DDL
create/alter/delete, a job's name, sources and output) under the same authorization, because
only it knows which topics a statement names; create_job / drop_job are SQL statements there.

Namespaces (issue 15, isolation; storage/namespace.py): a principal of an org names topics
and groups in its org's namespace. ACLs are checked on the client's names; the inner contract
gets the stored names (`<org>~<name>`) and every answer (lists, descriptions, results, error
messages) is mapped back, so another org's resources can be neither named nor seen. Jobs and
SQL statements are named in the org by the SQL engine.

Deny by default: with `required` (auth on), a call that arrives with no authorization in its
context (a front end that did not authenticate) is refused rather than let through.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace

import pyarrow as pa

from streamhouse.api.contract import FrontEnd, Leadership, TimestampOffset
from streamhouse.api.types import (
    Acks,
    FetchResult,
    GroupDescription,
    GroupOffset,
    JobDescription,
    ProduceResult,
    TopicDescription,
)
from streamhouse.storage import access
from streamhouse.storage import namespace as ns
from streamhouse.storage.errors import AuthorizationError, StreamHouseError
from streamhouse.storage.metadata.producer_state import ProducerBatch, ProducerState
from streamhouse.storage.model import TopicInfo


class GuardedFrontEnd:
    def __init__(self, inner: FrontEnd, *, required: bool = True) -> None:
        self.inner = inner
        self.required = required

    def _require(self, operation: str, resource_type: str, name: str) -> None:
        current = access.CURRENT.get()
        if current is None:
            if self.required:
                raise AuthorizationError(
                    f"cannot {operation} {resource_type} {name!r}: the request carries no authorization", resource_type
                )
            return
        current.require(operation, resource_type, name)

    def _allows(self, operation: str, resource_type: str, name: str) -> bool:
        current = access.CURRENT.get()
        return not self.required if current is None else current.allows(operation, resource_type, name)

    def _authorized(self) -> None:
        if self.required and access.CURRENT.get() is None:
            raise AuthorizationError("the request carries no authorization")

    # -- the org's namespace (storage/namespace.py): client names in, client names out ---------
    def _in(self, name: str) -> str:
        return ns.inner(name, ns.current())

    def _info(self, info: TopicInfo) -> TopicInfo:
        org = ns.current()
        return info if org is None else replace(info, name=ns.outer(info.name, org) or info.name)

    def _visible(self, stored: str) -> str | None:
        return ns.outer(stored, ns.current())

    @contextmanager
    def _scrubbed(self) -> Iterator[None]:
        """An error names the caller's own names, never a stored one."""
        try:
            yield
        except StreamHouseError as exc:
            raise ns.scrub(exc, ns.current()) from None

    # -- topics ---------------------------------------------------------------------------------
    async def topic(self, name: str, partition: int | None = None) -> TopicInfo:
        self._require("describe", "topic", name)
        with self._scrubbed():
            return self._info(await self.inner.topic(self._in(name), partition))

    async def list_topics(self) -> list[TopicInfo]:
        shown = [self._info(t) for t in await self.inner.list_topics() if self._visible(t.name) is not None]
        return [t for t in shown if self._allows("describe", "topic", t.name)]

    async def describe_topic(self, name: str) -> TopicDescription:
        self._require("describe", "topic", name)
        with self._scrubbed():
            described = await self.inner.describe_topic(self._in(name))
        return replace(described, info=self._info(described.info))

    async def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, str] | None = None, value_schema: str | None = None
    ) -> TopicInfo:
        self._require("create", "topic", name)
        with self._scrubbed():
            return self._info(await self.inner.create_topic(self._in(name), partitions, config, value_schema))

    async def alter_topic(
        self,
        name: str,
        set_config: Mapping[str, str] | None = None,
        reset: Iterable[str] | None = None,
        add_partitions: int | None = None,
    ) -> TopicInfo:
        self._require("alter", "topic", name)
        with self._scrubbed():
            return self._info(await self.inner.alter_topic(self._in(name), set_config, reset, add_partitions))

    async def delete_topic(self, name: str) -> None:
        self._require("delete", "topic", name)
        with self._scrubbed():
            await self.inner.delete_topic(self._in(name))

    async def partition_leaders(self, topic: str) -> tuple[Leadership, ...]:
        self._require("describe", "topic", topic)
        with self._scrubbed():
            return await self.inner.partition_leaders(self._in(topic))

    # -- records --------------------------------------------------------------------------------
    async def produce(
        self,
        topic: str,
        partition: int,
        batch: pa.RecordBatch,
        acks: Acks = "leader",
        payload: bytes | None = None,
        appended: Callable[[], None] | None = None,
        append_time_ms: int | None = None,
    ) -> list[ProduceResult]:
        self._require("write", "topic", topic)
        with self._scrubbed():
            done = await self.inner.produce(self._in(topic), partition, batch, acks, payload, appended, append_time_ms)
        return [replace(r, topic=topic) for r in done]

    async def fetch(
        self,
        topic: str,
        partition: int,
        offset: int,
        *,
        max_records: int = 50_000,
        max_bytes: int = 16 << 20,
        max_wait_ms: int = 0,
        min_bytes: int = 1,
    ) -> FetchResult:
        self._require("read", "topic", topic)
        with self._scrubbed():
            fetched = await self.inner.fetch(
                self._in(topic),
                partition,
                offset,
                max_records=max_records,
                max_bytes=max_bytes,
                max_wait_ms=max_wait_ms,
                min_bytes=min_bytes,
            )
        return replace(fetched, topic=topic)

    async def producer_state(self, topic: str, partition: int, producer_id: int) -> ProducerState | None:
        self._require("write", "topic", topic)
        with self._scrubbed():
            return await self.inner.producer_state(self._in(topic), partition, producer_id)

    async def unanswered(self, topic: str, partition: int, producer_id: int) -> tuple[ProducerBatch, ...]:
        self._require("write", "topic", topic)
        with self._scrubbed():
            return await self.inner.unanswered(self._in(topic), partition, producer_id)

    async def keep_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        self._require("write", "topic", topic)
        with self._scrubbed():
            await self.inner.keep_unanswered(self._in(topic), partition, batches)

    async def drop_unanswered(self, topic: str, partition: int, batches: Sequence[ProducerBatch]) -> None:
        self._require("write", "topic", topic)
        with self._scrubbed():
            await self.inner.drop_unanswered(self._in(topic), partition, batches)

    async def new_producer_id(self) -> int:
        self._authorized()  # Kafka asks IdempotentWrite on the cluster; any authenticated principal here
        return await self.inner.new_producer_id()

    # -- offsets --------------------------------------------------------------------------------
    async def earliest_offset(self, topic: str, partition: int) -> int:
        self._require("read", "topic", topic)
        with self._scrubbed():
            return await self.inner.earliest_offset(self._in(topic), partition)

    async def end_offset(self, topic: str, partition: int) -> int:
        self._require("read", "topic", topic)
        with self._scrubbed():
            return await self.inner.end_offset(self._in(topic), partition)

    async def offset_for_time(self, topic: str, partition: int, timestamp_ms: int) -> TimestampOffset:
        self._require("read", "topic", topic)
        with self._scrubbed():
            return await self.inner.offset_for_time(self._in(topic), partition, timestamp_ms)

    async def max_timestamp_offset(self, topic: str, partition: int) -> TimestampOffset:
        self._require("read", "topic", topic)
        with self._scrubbed():
            return await self.inner.max_timestamp_offset(self._in(topic), partition)

    # -- consumer groups ------------------------------------------------------------------------
    async def commit_offsets(self, group: str, topic: str, offsets: Mapping[int, int]) -> None:
        self._require("read", "group", group)
        self._require("read", "topic", topic)
        with self._scrubbed():
            await self.inner.commit_offsets(self._in(group), self._in(topic), offsets)

    async def fetch_offsets(self, group: str, topic: str) -> list[GroupOffset]:
        self._require("describe", "group", group)
        self._require("describe", "topic", topic)
        with self._scrubbed():
            held = await self.inner.fetch_offsets(self._in(group), self._in(topic))
        return [replace(o, topic=topic) for o in held]

    async def committed_offsets(self, group: str, topic: str | None = None) -> dict[tuple[str, int], int]:
        self._require("describe", "group", group)
        with self._scrubbed():
            held = await self.inner.committed_offsets(self._in(group), None if topic is None else self._in(topic))
        # Only the org's topics the principal may see: the others' names are not to be learnt this way.
        shown = {(self._visible(t), p): v for (t, p), v in held.items()}
        return {(t, p): v for (t, p), v in shown.items() if t is not None and self._allows("describe", "topic", t)}

    async def list_groups(self) -> list[str]:
        mine = ns.visible(await self.inner.list_groups(), ns.current())
        return [g for g in mine if self._allows("describe", "group", g)]

    async def describe_group(self, group: str) -> GroupDescription:
        self._require("describe", "group", group)
        with self._scrubbed():
            described = await self.inner.describe_group(self._in(group))
        offsets = tuple(replace(o, topic=t) for o in described.offsets if (t := self._visible(o.topic)) is not None)
        return replace(described, group=group, offsets=offsets)

    async def delete_group(self, group: str) -> None:
        self._require("delete", "group", group)
        with self._scrubbed():
            await self.inner.delete_group(self._in(group))

    # -- SQL and jobs (checked per statement, and named in the org, by the SQL engine) ----------
    async def sql(self, query: str, settings: Mapping[str, str] | None = None) -> pa.Table:
        self._authorized()
        with self._scrubbed():
            return await self.inner.sql(query, settings)

    async def list_jobs(self) -> list[JobDescription]:
        return [j for j in await self.inner.list_jobs() if self._allows("describe", "job", j.name)]

    async def describe_job(self, name: str) -> JobDescription:
        self._require("describe", "job", name)
        with self._scrubbed():
            return await self.inner.describe_job(name)

    async def create_job(
        self, name: str, select: str, *, into: str | None = None, options: Mapping[str, str] | None = None
    ) -> JobDescription:
        self._authorized()
        with self._scrubbed():
            return await self.inner.create_job(name, select, into=into, options=options)

    async def drop_job(self, name: str, *, drop_topic: bool = True) -> None:
        self._authorized()
        with self._scrubbed():
            await self.inner.drop_job(name, drop_topic=drop_topic)

    # -- health ---------------------------------------------------------------------------------
    async def ready(self) -> tuple[bool, str]:
        ok, reason = await self.inner.ready()
        return ok, ns.scrub_text(reason, ns.current())


def _front_end(guarded: GuardedFrontEnd) -> FrontEnd:
    return guarded  # mypy proves the guard is a whole FrontEnd
