"""Names of the request's org in SQL (issue 15, isolation; storage/namespace.py): a statement
names topics and jobs as its org does; the engine stores and reads `<org>~<name>`; answers
show the org's names again. With no org (auth off, the global namespace) names are unchanged."""

from __future__ import annotations

from dataclasses import replace

import pyarrow as pa

from streamhouse.storage import access
from streamhouse.storage import namespace as ns
from streamhouse.storage.model import TopicInfo


def stored(name: str) -> str:
    """The stored name of a name the request's org uses (storage/namespace.py)."""
    return ns.inner(name, ns.current())


def client_name(stored: str) -> str:
    return ns.outer(stored, ns.current()) or stored


def named(info: TopicInfo) -> TopicInfo:
    """A stored topic as the request's org names it."""
    return replace(info, name=client_name(info.name))


def named_jobs(table: pa.Table, column: str = "job") -> pa.Table:
    """Rows of jobs (SHOW JOBS, CREATE/DROP answers) of the request's org only, by its names."""
    org = ns.current()
    if org is None or column not in table.column_names:
        return table
    names = [str(n) for n in table.column(column).to_pylist()]
    keep = [ns.outer(n, org) is not None for n in names]
    table = table.filter(pa.array(keep, pa.bool_()))
    for col in (column, "output_topic"):
        if col in table.column_names:
            shown = [ns.outer(str(n), org) or n for n in table.column(col).to_pylist()]
            table = table.set_column(table.column_names.index(col), col, pa.array(shown, table.schema.field(col).type))
    return table


def visible_topics(topics: list[TopicInfo]) -> dict[str, TopicInfo]:
    """The org's name → stored topic, of the topics the request may describe (ACLs on the
    org's names): another org's topics are neither listed nor resolvable by any name."""
    return {n: t for n, t in ns.scoped(topics, ns.current()).items() if access.allows("describe", "topic", n)}
