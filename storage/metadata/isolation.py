"""Which records a reader of ours asks for (issue 18): committed ones by default, as a Kafka
`isolation.level=read_committed` consumer (nothing at or past a partition's last stable offset,
no record of an aborted transaction: storage/metadata/txn_reads.py), or every record, for
debugging (`read_uncommitted`).

The level travels with the request that asked for it: the SDK's `isolation=` argument, the
gRPC FetchRequest's `isolation_level`, REST's `isolation` query parameter set it for the fetches
of one request (`reading`), and the read-committed front end (engine/api/committed_front.py)
reads it there, so no layer between them needs a new parameter. SQL has its session setting
(`SET isolation_level = 'read_uncommitted'`, sql/query/limits.py) and a continuous job its
`'isolation.level'` option (sql/statements/job_options.py); both use `parse_isolation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

from streamhouse.storage.errors import InvalidInputError

READ_COMMITTED = "read_committed"
READ_UNCOMMITTED = "read_uncommitted"
LEVELS = (READ_COMMITTED, READ_UNCOMMITTED)

_REQUESTED: ContextVar[str] = ContextVar("streamhouse_isolation", default=READ_COMMITTED)


def parse_isolation(text: str | None, where: str = "isolation level") -> str:
    """`text` as one of LEVELS (case and surrounding spaces ignored; None: the default,
    read_committed); InvalidInputError naming `where` for anything else."""
    if text is None:
        return READ_COMMITTED
    level = text.strip().lower()
    if level not in LEVELS:
        raise InvalidInputError(f"{where} must be {READ_COMMITTED!r} or {READ_UNCOMMITTED!r}, not {text!r}")
    return level


def requested() -> str:
    """The level the current request asked for (read_committed unless it said otherwise)."""
    return _REQUESTED.get()


@contextlib.contextmanager
def reading(level: str) -> Iterator[None]:
    """Fetches made inside (and in tasks started inside) read at `level`."""
    token = _REQUESTED.set(parse_isolation(level))
    try:
        yield
    finally:
        _REQUESTED.reset(token)
