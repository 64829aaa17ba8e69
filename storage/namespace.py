"""Organisations' namespaces (issue 15, isolation): the one mapping between the names a client
uses and the names the agent stores.

Every organisation has its own namespace of topics, groups, jobs and subjects. Inside the
agent a name of org `acme` is stored as `acme~orders`: the org, SEPARATOR, the client's name.
'~' is not a legal character of a Kafka topic name, nor of an org name (auth_sql.check_org),
so no client name can look like another org's stored one, and `acme~` is never a prefix of
`acme2~`'s names. The stored names of one org therefore share one string prefix everywhere:
in the metadata store and in the object store, where its segments are `topics/acme~<topic>/…`
(so `topics/acme~` is the org's object-store prefix, usable in a bucket policy or a listing).

Who is in which namespace: the request's org, set by the authorizer next to its ACLs
(engine/auth/authorizer.py, CURRENT_ORG). Nothing set — auth off, embedded mode, the agent's
own work — admins (the cluster's operators) and the system orgs (GLOBAL_ORGS: the embedding
process, the agents' own keys) see the global namespace: unprefixed names, as before
organisations, where an org's resources appear by their stored names. A job runs in the
namespace its stored name carries (`org_of`), after restarts too.

The mapping is applied at the boundary every face passes (engine/api/guarded.py for gRPC,
REST and Kafka; sql/engine.py for SQL; the registry's routes for subjects) and undone on every
answer, so a client of one org never sees, and cannot name, another org's resources.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
from collections.abc import Iterable
from typing import TypeVar

from streamhouse.storage.errors import InvalidInputError, StreamHouseError
from streamhouse.storage.model import TopicInfo

SEPARATOR = "~"
# The embedding process (org "") and the agents' own keys (engine/auth/agent_key.AGENTS_ORG).
GLOBAL_ORGS = frozenset({"", "streamhouse-agents"})

CURRENT_ORG: contextvars.ContextVar[str | None] = contextvars.ContextVar("streamhouse_namespace", default=None)

T = TypeVar("T")


def namespace_of(org: str, *, admin: bool = False) -> str | None:
    """The namespace a principal of `org` works in (None: the global one). An admin is the
    cluster's operator (it creates orgs and keys for any of them, and no ACL binds it), so it
    works in the global namespace, where an org's resources are named `<org>~<name>`."""
    return None if admin or org in GLOBAL_ORGS else org


def current() -> str | None:
    return CURRENT_ORG.get()


def inner(name: str, org: str | None) -> str:
    """The stored name of `org`'s `name` (org None: the name itself). A name holding the
    separator is refused inside a namespace: it could only be an attempt at another org's."""
    if org is None:
        return name
    if SEPARATOR in name:
        raise InvalidInputError(f"invalid name {name!r}: {SEPARATOR!r} is not allowed in a name")
    return f"{org}{SEPARATOR}{name}"


def outer(stored: str, org: str | None) -> str | None:
    """The name `org`'s clients use for a stored name; None when it is not `org`'s."""
    if org is None:
        return stored
    prefix = org + SEPARATOR
    return stored[len(prefix) :] if stored.startswith(prefix) else None


def org_of(stored: str) -> str | None:
    """The org whose namespace a stored name is in (None: the global namespace)."""
    head, sep, _ = stored.partition(SEPARATOR)
    return head if sep else None


def visible(stored: Iterable[str], org: str | None) -> list[str]:
    """The client names of the stored names that are `org`'s, in order."""
    return [n for n in (outer(s, org) for s in stored) if n is not None]


def scoped(topics: Iterable[TopicInfo], org: str | None) -> dict[str, TopicInfo]:
    """`org`'s topics by the names its clients use (a job's query resolves its tables here)."""
    named = ((outer(t.name, org), t) for t in topics)
    return {n: t for n, t in named if n is not None}


def scrub(exc: StreamHouseError, org: str | None) -> StreamHouseError:
    """`exc` with the org's prefix taken out of its message: a client reads its own names only."""
    if org is not None:
        prefix = org + SEPARATOR
        exc.args = tuple(a.replace(prefix, "") if isinstance(a, str) else a for a in exc.args)
        for attr in ("name", "topic", "job", "group", "subject"):
            value = getattr(exc, attr, None)
            if isinstance(value, str) and value.startswith(prefix):
                with contextlib.suppress(AttributeError):  # read-only: the message is what matters
                    setattr(exc, attr, value[len(prefix) :])
    return exc


_STORED_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}~")
_STORED_IN_TEXT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}~[A-Za-z0-9._-]*")


def scrub_text(text: str, org: str | None) -> str:
    """Free text (a readiness reason) as `org` may read it: its own stored names by its names,
    any other org's stored name hidden."""
    if org is None:
        return text
    prefix = org + SEPARATOR

    def shown(match: re.Match[str]) -> str:
        found = match.group(0)
        return found[len(prefix) :] if found.startswith(prefix) else "(another organisation's resource)"

    return _STORED_IN_TEXT.sub(shown, text)


def split_stored(name: str) -> tuple[str, str]:
    """(org prefix with separator or "", the rest) of a stored name, for validation: the rest
    must be a legal name on its own (storage/metadata/validate.py)."""
    match = _STORED_RE.match(name)
    return ("", name) if match is None else (match.group(0), name[match.end() :])
