"""What a query's WHERE clause allows for each topic it reads, before anything is decoded
(docs/DESIGN.md §7): partitions from `_partition`, offset and record-time ranges from `_offset` and
`_timestamp`, and an event-time range for the topic's watermark column. Only plain AND-chains
of comparisons with literals count; anything else leaves that side unbounded, so a bound can
never drop a row the query would have kept (DataFusion still applies the full predicate)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime

import sqlglot
from sqlglot import exp

from streamhouse.storage.partition.scan import ScanBounds

_SYSTEM = ("_partition", "_offset", "_timestamp")


@dataclass(frozen=True)
class TopicBounds:
    partitions: frozenset[int] | None  # None: every partition
    scan: ScanBounds

    @classmethod
    def everything(cls) -> TopicBounds:
        return cls(None, ScanBounds())


def merge(a: TopicBounds, b: TopicBounds) -> TopicBounds:
    """The envelope of two reads of the same topic (a query may read a topic twice)."""
    parts = None if a.partitions is None or b.partitions is None else a.partitions | b.partitions
    x, y = a.scan, b.scan

    def low(p: int | None, q: int | None) -> int | None:
        return None if p is None or q is None else min(p, q)

    def high(p: int | None, q: int | None) -> int | None:
        return None if p is None or q is None else max(p, q)

    same_event = x.event_column == y.event_column
    return TopicBounds(
        parts,
        ScanBounds(
            start_offset=min(x.start_offset, y.start_offset),
            end_offset=high(x.end_offset, y.end_offset),
            min_timestamp=low(x.min_timestamp, y.min_timestamp),
            max_timestamp=high(x.max_timestamp, y.max_timestamp),
            event_column=x.event_column if same_event else None,
            event_min=low(x.event_min, y.event_min) if same_event else None,
            event_max=high(x.event_max, y.event_max) if same_event else None,
        ),
    )


def topic_bounds(tree: exp.Expr, topics: set[str], event_columns: dict[str, str | None]) -> dict[str, TopicBounds]:
    """Bounds per topic read by `tree` (a parsed query). A topic read in a SELECT that joins
    or has no usable WHERE is read whole."""
    found: dict[str, TopicBounds] = {}
    for table in tree.find_all(exp.Table):
        name = table.name
        if name not in topics or table.args.get("db"):
            continue
        select = table.find_ancestor(exp.Select)
        bounds = TopicBounds.everything()
        if select is not None and _sole_source(select, table):
            where = select.args.get("where")
            if where is not None:
                bounds = _from_condition(where.this, {name, table.alias_or_name}, event_columns.get(name))
        found[name] = merge(found[name], bounds) if name in found else bounds
    return found


def _sole_source(select: exp.Select, table: exp.Table) -> bool:
    source = select.args.get("from_") or select.args.get("from")  # the key's name varies by sqlglot version
    return source is not None and source.this is table and not select.args.get("joins")


def _from_condition(condition: exp.Expr, names: set[str], event: str | None) -> TopicBounds:
    partitions: frozenset[int] | None = None
    scan = ScanBounds(event_column=event)
    for part in conjuncts(condition):
        for column, op, value in _comparisons(part, names, event):
            if column == "_partition":
                partitions = _narrow_partitions(partitions, op, value)
            else:
                scan = _narrow(scan, column, op, value)
    return TopicBounds(partitions, scan)


def conjuncts(condition: exp.Expr) -> list[exp.Expr]:
    if isinstance(condition, exp.And):
        return conjuncts(condition.left) + conjuncts(condition.right)
    if isinstance(condition, exp.Paren):
        return conjuncts(condition.this)
    return [condition]


_FLIP = {"gt": "lt", "gte": "lte", "lt": "gt", "lte": "gte", "eq": "eq"}
_OPS: dict[type, str] = {exp.GT: "gt", exp.GTE: "gte", exp.LT: "lt", exp.LTE: "lte", exp.EQ: "eq"}


def _comparisons(part: exp.Expr, names: set[str], event: str | None) -> list[tuple[str, str, int | list[int]]]:
    wanted = set(_SYSTEM) | ({event.lower()} if event else set())
    if isinstance(part, exp.Between):
        column = _column(part.this, names, wanted)
        low, high = _literal(part.args["low"], column), _literal(part.args["high"], column)
        if column and low is not None and high is not None:
            return [(column, "gte", low), (column, "lte", high)]
        return []
    if isinstance(part, exp.In) and not part.args.get("query"):
        column = _column(part.this, names, wanted)
        values = [_literal(v, column) for v in part.expressions]
        if column == "_partition" and values and all(v is not None for v in values):
            return [(column, "in", [v for v in values if v is not None])]
        return []
    op = _OPS.get(type(part))
    if op is None:
        return []
    assert isinstance(part, exp.Binary)
    column = _column(part.left, names, wanted)
    if column is not None:
        value = _literal(part.right, column)
        return [] if value is None else [(column, op, value)]
    column = _column(part.right, names, wanted)
    value = _literal(part.left, column) if column else None
    return [] if column is None or value is None else [(column, _FLIP[op], value)]


def _column(node: exp.Expr, names: set[str], wanted: set[str]) -> str | None:
    if not isinstance(node, exp.Column):
        return None
    qualifier = node.table
    if qualifier and qualifier not in names:
        return None
    name = node.name.lower()
    return name if name in wanted else None


def _literal(node: exp.Expr, column: str | None) -> int | None:
    """An integer, or a timestamp literal in epoch ms (for the time columns)."""
    if column is None:
        return None
    if isinstance(node, exp.Neg):
        inner = _literal(node.this, column)
        return None if inner is None else -inner
    if isinstance(node, exp.Cast | exp.TryCast):
        return _literal(node.this, column)
    if isinstance(node, exp.Literal):
        if not node.is_string:
            try:
                return int(node.this)
            except ValueError:
                return None
        if column in ("_partition", "_offset"):
            return None
        return _timestamp_ms(node.this)
    if isinstance(node, exp.Timestamp | exp.TimeStrToTime) or (
        isinstance(node, exp.Anonymous) and str(node.this).lower() in ("timestamp",)
    ):
        inner = node.this
        return _literal(inner, column) if isinstance(inner, exp.Expr) else None
    return None


def _timestamp_ms(text: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # TIMESTAMP(3) columns are UTC
    return int(parsed.timestamp() * 1000)


def _narrow_partitions(current: frozenset[int] | None, op: str, value: int | list[int]) -> frozenset[int] | None:
    if op == "in" and isinstance(value, list):
        allowed = frozenset(value)
    elif op == "eq" and isinstance(value, int):
        allowed = frozenset([value])
    else:
        return current  # ranges on _partition: rare, left to DataFusion
    return allowed if current is None else current & allowed


def _narrow(scan: ScanBounds, column: str, op: str, value: int | list[int]) -> ScanBounds:
    if not isinstance(value, int):
        return scan
    low = {"gt": value + 1, "gte": value, "eq": value}.get(op)
    high = {"lt": value - 1, "lte": value, "eq": value}.get(op)  # inclusive
    if column == "_offset":
        start = scan.start_offset if low is None else max(scan.start_offset, low)
        end = scan.end_offset
        if high is not None:
            end = high + 1 if end is None else min(end, high + 1)
        return replace(scan, start_offset=max(start, 0), end_offset=end)
    if column == "_timestamp":
        return replace(
            scan,
            min_timestamp=_max(scan.min_timestamp, low),
            max_timestamp=_min(scan.max_timestamp, high),
        )
    return replace(scan, event_min=_max(scan.event_min, low), event_max=_min(scan.event_max, high))


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def parse_query(sql: str) -> exp.Expr:
    """DataFusion SQL (after the window rewrite) as sqlglot sees it, for this analysis only."""
    return sqlglot.parse_one(sql, read="postgres")
