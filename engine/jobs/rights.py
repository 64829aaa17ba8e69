"""A job runs with its creator's rights (issue 15): under `--auth api-key` the principal that
created a job is recorded with it, and the job reads its sources and writes its output only
while that principal may.

CREATE checks the rights once, in the SQL engine, under the creator's own request. After that
the job runs on the agent, in no request, so nothing would notice a revoked rule: this module
asks the same question again with the creator's grants (engine/auth/authorizer.py, cached
5 s like every request's) when the runner starts and before every checkpoint commits. A
refusal stops the runner before anything of the round is committed; the job shows it as its
last failure (SHOW JOBS) and is retried by placement, so it resumes from its checkpoint once the
rights are back, exactly once as ever. A job created with auth off, or by an admin, is not
limited (admins bypass ACLs); a job whose creator's keys are all gone keeps the rights its
principal's rules give.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from streamhouse.auth.acl import Grants
from streamhouse.auth.authorizer import Authorizer
from streamhouse.storage import access, namespace
from streamhouse.storage.errors import AuthorizationError
from streamhouse.storage.metadata import MetadataStore

__all__ = ["CreatorRights", "creator_of_request"]

_SEPARATOR = "/"  # neither org nor principal names may hold it (storage/metadata/auth_sql.py)


def creator_of_request() -> str | None:
    """The current request's principal as a job's `creator` option ("org/principal"); None
    with auth off, in embedded mode, or for an admin (whose jobs are not limited)."""
    current = access.CURRENT.get()
    if not isinstance(current, Grants) or current.principal.admin:
        return None
    return f"{current.principal.org}{_SEPARATOR}{current.principal.name}"


@dataclass(frozen=True)
class _Creator:
    org: str
    name: str
    admin: bool


class CreatorRights:
    """The rights a running job has: its creator's, re-read at most every 5 s."""

    def __init__(
        self, metadata: MetadataStore, creator: str, *, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        org, _, name = creator.partition(_SEPARATOR)
        self.org, self.name = org, name
        self._metadata = metadata
        self._authorizer = Authorizer(metadata, monotonic=monotonic)
        self._monotonic = monotonic
        self._who: tuple[_Creator, float] | None = None  # the creator and when its admin flag was read

    async def _creator(self) -> _Creator:
        """The creator with its admin flag, read again no more often than the rules are (the
        authorizer's TTL), so a checkpoint costs no store read while both are fresh."""
        now = self._monotonic()
        if self._who is None or now - self._who[1] >= self._authorizer.cache_ttl_s:
            keys = await self._metadata.auth_list_keys(self.org)
            admin = any(k.admin for k in keys if k.principal == self.name)
            self._who = (_Creator(self.org, self.name, admin), now)
        return self._who[0]

    async def require(self, job: str, reads: Iterable[str], writes: Iterable[str]) -> None:
        """AuthorizationError naming the job, its creator and the first topic it may no longer
        read (`reads`) or write (`writes`); stored topic names."""
        grants = await self._authorizer.grants(await self._creator())
        for operation, topics in (("read", reads), ("write", writes)):
            for topic in topics:
                if not grants.allows(operation, "topic", topic):
                    shown = namespace.outer(topic, self.org) or topic
                    raise AuthorizationError(
                        f"job {namespace.outer(job, self.org) or job!r} runs with the rights of {self.name!r}, "
                        f"who may no longer {operation} topic {shown!r}; it resumes once allowed",
                        "topic",
                    )
