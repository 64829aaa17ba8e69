"""The front-end contract behind storage and partition quotas (issue 15, engine/auth/quota_storage.py): one
wrapper every face's calls pass (gRPC, REST and the Kafka listener), as they pass the ACL guard
(engine/api/guarded.py), so a produce by an org at its storage quota, or a topic or partitions
taking it over its partition quota, is refused the same way everywhere and before anything is
written. Every other operation goes straight through.

The org is the request's principal's, from the authorization the front end entered for the
request (storage/access.py: the ACL grants carry their principal); none (auth off) is "".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, cast

import pyarrow as pa

from streamhouse.api.contract import FrontEnd
from streamhouse.api.types import Acks, ProduceResult
from streamhouse.storage import access
from streamhouse.storage.model import TopicInfo


class StorageQuotas(Protocol):
    """What the wrapper asks (engine/auth/quota_storage.py StorageQuotas has it; api may not
    import auth, its sibling layer)."""

    async def check_produce(self, org: str | None) -> None: ...

    async def check_partitions(self, org: str | None, added: int) -> None: ...

    def forget(self) -> None: ...


def current_org() -> str | None:
    """The org of the request being served (None: no authorization, auth off)."""
    principal = getattr(access.CURRENT.get(), "principal", None)
    org = getattr(principal, "org", None)
    return org if isinstance(org, str) else None


class QuotaFrontEnd:
    def __init__(self, inner: FrontEnd, quotas: StorageQuotas) -> None:
        self.inner = inner
        self.quotas = quotas

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # everything else is not metered here

    async def create_topic(
        self, name: str, partitions: int = 1, config: Mapping[str, str] | None = None, value_schema: str | None = None
    ) -> TopicInfo:
        await self.quotas.check_partitions(current_org(), partitions)
        created = await self.inner.create_topic(name, partitions, config, value_schema)
        self.quotas.forget()
        return created

    async def alter_topic(
        self,
        name: str,
        set_config: Mapping[str, str] | None = None,
        reset: Iterable[str] | None = None,
        add_partitions: int | None = None,
    ) -> TopicInfo:
        await self.quotas.check_partitions(current_org(), add_partitions or 0)
        altered = await self.inner.alter_topic(name, set_config, reset, add_partitions)
        if add_partitions:
            self.quotas.forget()
        return altered

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
        await self.quotas.check_produce(current_org())
        return await self.inner.produce(topic, partition, batch, acks, payload, appended, append_time_ms)


def metered(front: FrontEnd, quotas: StorageQuotas | None) -> FrontEnd:
    """`front` behind storage and partition quotas (itself when there are none to apply)."""
    if quotas is None:
        return front
    # The contract: its own three methods, the rest delegated by __getattr__.
    return cast(FrontEnd, QuotaFrontEnd(front, quotas))
