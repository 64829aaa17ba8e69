"""Planning a lookup (temporal) join in a continuous query (docs/DESIGN.md §8, issue 17).

    SELECT o.id, r.rate FROM orders o JOIN rates FOR SYSTEM_TIME AS OF o.ts AS r ON o.cur = r.cur

The topic after FOR SYSTEM_TIME AS OF (the build side, here `rates`) is read as a versioned
table: per key, its rows are versions, each in effect from its event time (the topic's
watermark column) on. Each row of the other topic (the probe side) meets the version in effect
at its own event time: the latest build row of its key whose time is at or before the probe
row's. sqlglot parses the clause into the table's `version`; the planner checks that it names
the probe topic's watermark column and that the ON clause has one equality of a probe column
with a build column (the lookup key), then rewrites the query for the operator
(sql.streaming.lookup_join): the clause dropped and `AND p.__sh_row = b.__sh_row` added, so
DataFusion joins each probe row with exactly the version the as-of search picked for it.

Inner joins only (a probe row with no version yet gives nothing, as in Flink); the SELECT may
only project and filter, as for the interval join.
"""

from __future__ import annotations

from dataclasses import dataclass

import datafusion
import pyarrow as pa
from sqlglot import exp

from streamhouse.sql.dialect import ident_name, to_sql
from streamhouse.sql.streaming import plan as single
from streamhouse.sql.streaming.interval_plan import IntervalPlan, IntervalSide
from streamhouse.sql.windows.relations import find_cte, table_name

__all__ = ["ROW_COLUMN", "LookupPlan", "is_lookup", "plan_lookup_join"]

# The probe row's number within one emission, added to both sides' tables for the query.
ROW_COLUMN = "__sh_row"
_ROW_NODES = {"Projection", "Filter", "TableScan", "SubqueryAlias", "Join"}


@dataclass(frozen=True)
class LookupPlan(IntervalPlan):
    """sides[0] probes, sides[1] is the versioned table; `probe_key` = `build_key` picks the
    versions of a probe row. It is an IntervalPlan so the job machinery (two sources, late rows
    with `source_topic`, snapshots, EXPLAIN) treats it as the other per-row joins."""

    probe_key: str = ""
    build_key: str = ""

    def keep_ms(self) -> tuple[int, int]:
        return 0, 0

    def describe(self) -> str:
        probe, build = self.sides
        return "\n".join(
            [
                f"lookup join: each {probe.topic} row meets the {build.topic} version in effect at its "
                f"{probe.event_time} ({build.topic}.{self.build_key} = {probe.topic}.{self.probe_key}, latest "
                f"{build.event_time} <= it); emitted once the job watermark passes its {probe.event_time}",
                f"state {probe.topic}: rows ({', '.join(probe.columns)}) until the job watermark passes "
                f"{probe.event_time}",
                f"state {build.topic}: per key, the newest version at or before the job watermark and every "
                f"later one ({', '.join(build.columns)})",
            ]
        )


def is_lookup(tree: exp.Expr) -> bool:
    return any(isinstance(t.args.get("version"), exp.Version) for t in tree.find_all(exp.Table))


def plan_lookup_join(
    sql: str, tree: exp.Query, schema_of: single.SchemaOf, watermark_of: single.WatermarkOf
) -> LookupPlan:
    """The lookup join `tree` holds; SqlError saying what is unsupported."""
    base = single._Planner(sql, schema_of, watermark_of)
    base.tree = tree
    rewritten = tree.copy()
    rewritten.set("order", None)  # a stream has no order
    tables = [t for t in rewritten.find_all(exp.Table) if isinstance(t.this, exp.Identifier) and find_cte(t) is None]
    joins = list(rewritten.find_all(exp.Join))
    versioned = [t for t in tables if isinstance(t.args.get("version"), exp.Version)]
    if len(tables) != 2 or len(joins) != 1 or len(versioned) != 1 or table_name(tables[0]) == table_name(tables[1]):
        raise base.fail(
            "a lookup join in a continuous query joins two topics directly: "
            "FROM a JOIN b FOR SYSTEM_TIME AS OF a.ts ON a.k = b.key"
        )
    build_table = versioned[0]
    probe_table = tables[0] if tables[1] is build_table else tables[1]
    join = joins[0]
    if join.args.get("side") or (join.args.get("kind") or "").upper() not in ("", "INNER"):
        raise base.fail("a lookup join in a continuous query is an inner join; outer lookup joins are not supported")
    probe, build = table_name(probe_table), table_name(build_table)
    aliases = {probe_table.alias_or_name: probe, probe: probe, build_table.alias_or_name: build, build: build}
    version = build_table.args["version"]
    at = version.expression
    probe_mark, build_mark = watermark_of(probe), watermark_of(build)
    if probe_mark is None or build_mark is None:
        missing = probe if probe_mark is None else build
        raise base.fail(f"a lookup join runs on event time: topic {missing!r} declares no watermark")
    if (
        version.args.get("kind") != "AS OF"
        or not isinstance(at, exp.Column)
        or aliases.get(at.table) != probe
        or ident_name(at) != probe_mark[0]
    ):
        raise base.fail(
            f"FOR SYSTEM_TIME AS OF must name the probe topic's watermark column ({probe}.{probe_mark[0]})", version
        )
    keys = _key(join.args.get("on"), aliases, probe, build)
    if keys is None:
        raise base.fail(
            f"a lookup join needs an equality of a {probe} column with a {build} column in its ON clause (the key)"
        )
    build_table.set("version", None)
    row_eq = exp.EQ(
        this=exp.Column(this=exp.to_identifier(ROW_COLUMN, quoted=True), table=_qualifier(probe_table)),
        expression=exp.Column(this=exp.to_identifier(ROW_COLUMN, quoted=True), table=_qualifier(build_table)),
    )
    join.set("on", exp.and_(exp.paren(join.args["on"], copy=False), row_eq, copy=False))
    query_sql = to_sql(rewritten)
    sides = []
    for topic, (column, delay), key in ((probe, probe_mark, keys[0]), (build, build_mark, keys[1])):
        schema = base.relations.table_schema(topic)
        if not isinstance(schema.field(column).type, pa.TimestampType):
            raise base.fail(f"the lookup join's time column {topic}.{column} is not a TIMESTAMP", name=column)
        columns = single._named_columns(tree, schema, (column, key))
        sides.append(IntervalSide(topic, schema, columns, column, schema.field(column).type, delay))
    ctx = datafusion.SessionContext()
    for side in sides:
        empty = pa.RecordBatch.from_pylist([], schema=side.input_schema.append(pa.field(ROW_COLUMN, pa.int64())))
        ctx.register_record_batches(single.quoted_table(side.topic), [[empty]])
    try:
        frame = ctx.sql(query_sql)
        output: pa.Schema = frame.schema()
        text = frame.logical_plan().display_indent()
    except Exception as error:  # DataFusion raises plain Exceptions for planning errors
        raise base.fail(f"cannot plan the continuous query: {single._clean(str(error))}") from None
    nodes = {line.strip().split(":")[0].strip() for line in text.splitlines() if line.strip()}
    refused = {"Join" if name.endswith("Join") else name for name in nodes} - _ROW_NODES
    if refused:
        raise base.fail(
            "a lookup join in a continuous query emits each probe row once: its SELECT may only project and "
            f"filter (found {', '.join(sorted(refused))})"
        )
    if ROW_COLUMN in output.names:
        raise base.fail("a lookup join's SELECT names its columns (SELECT * is not supported)")
    return LookupPlan(
        sql, (sides[0], sides[1]), 0, 0, query_sql, output, kind="lookup join", probe_key=keys[0], build_key=keys[1]
    )


def _qualifier(table: exp.Table) -> exp.Identifier:
    alias = table.args.get("alias")
    node: exp.Identifier = alias.this if alias is not None and alias.this is not None else table.this
    return node.copy()


def _key(on: exp.Expr | None, aliases: dict[str, str], probe: str, build: str) -> tuple[str, str] | None:
    """(probe column, build column) of the first equality relating the two topics."""
    if on is None:
        return None
    for eq in on.find_all(exp.EQ):
        left, right = eq.this, eq.expression
        if not (isinstance(left, exp.Column) and isinstance(right, exp.Column)):
            continue
        sides = {aliases.get(left.table): ident_name(left), aliases.get(right.table): ident_name(right)}
        if probe in sides and build in sides and len(sides) == 2:
            return sides[probe], sides[build]
    return None
