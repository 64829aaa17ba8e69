"""HTML for Jupyter: topics, groups, jobs and query results as small tables.

IO-free: every function renders a value it is given. The `_repr_html_` methods of the SDK's
values and the formatters `%load_ext streamhouse` registers call in here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import TYPE_CHECKING

import pyarrow as pa

from streamhouse.storage.model import TopicInfo
from streamhouse.storage.values.schema import parse_value_schema
from streamhouse.wording import plural

if TYPE_CHECKING:
    from streamhouse.api.types import GroupDescription, JobDescription, TopicDescription

_STYLE = "border-collapse:collapse;font-size:12px"
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"
MAX_ROWS = 20


def _text(value: object) -> str:
    return "" if value is None else escape(str(value))


def grid(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain HTML table; every value escaped."""
    head = "".join(f'<th style="{_CELL}">{_text(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{_text(v)}</td>' for v in row) + "</tr>" for row in rows)
    return f'<table style="{_STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """Label/value rows, for one object's properties."""
    body = "".join(
        f'<tr><th style="{_CELL}">{_text(k)}</th><td style="{_CELL}">{_text(v)}</td></tr>' for k, v in pairs
    )
    return f'<table style="{_STYLE}"><tbody>{body}</tbody></table>'


def _title(kind: str, name: str, note: str = "") -> str:
    extra = f' <span style="color:#777">{_text(note)}</span>' if note else ""
    return f"<div><b>{_text(kind)}</b> <code>{_text(name)}</code>{extra}</div>"


def arrow_table(table: pa.Table, *, max_rows: int = MAX_ROWS) -> str:
    """A query result: column names with their types, the first `max_rows` rows, the size."""
    headers = [f"{f.name}: {f.type}" for f in table.schema]
    shown = table.slice(0, max_rows)
    columns = [shown.column(i).to_pylist() for i in range(shown.num_columns)]
    rows = list(zip(*columns, strict=True)) if columns else []
    more = f" (first {max_rows} shown)" if table.num_rows > max_rows else ""
    size = f"<div style=\"color:#777\">{table.num_rows:,} rows × {table.num_columns} columns{more}</div>"
    return grid(headers, rows) + size


def _schema_rows(info: TopicInfo) -> list[tuple[str, object]]:
    schema = parse_value_schema(info.value_schema)
    if schema is None:
        return [("value", "raw bytes (no declared columns)")]
    pairs: list[tuple[str, object]] = [
        ("columns", ", ".join(f"{c.name} {c.sql_type}" for c in schema.columns)),
    ]
    if schema.watermark is not None:
        pairs.append(("watermark", f"{schema.watermark.column} - {schema.watermark.delay_ms} ms"))
    return pairs


def topic_info(info: TopicInfo, note: str = "") -> str:
    pairs: list[tuple[str, object]] = [("partitions", info.partitions), *_schema_rows(info)]
    if info.config:
        pairs.append(("config", ", ".join(f"{k}={v}" for k, v in sorted(info.config.items()))))
    return _title("topic", info.name, note) + fields(pairs)


def topic_infos(infos: Sequence[TopicInfo]) -> str:
    rows = []
    for info in infos:
        schema = parse_value_schema(info.value_schema)
        columns = ", ".join(c.name for c in schema.columns) if schema else "(raw bytes)"
        rows.append((info.name, info.partitions, columns))
    return grid(["topic", "partitions", "columns"], rows)


def topic_description(description: TopicDescription) -> str:
    total = sum(p.end_offset for p in description.partitions)
    partitions = grid(
        ["partition", "end offset", "durable end", "segments", "leader", "epoch"],
        [
            (p.partition, p.end_offset, p.durable_end_offset, p.segments, p.leader or "(none)", p.leader_epoch)
            for p in description.partitions
        ],
    )
    return topic_info(description.info, plural(total, "record")) + partitions


def group_description(description: GroupDescription) -> str:
    rows = [(o.topic, o.partition, o.committed_offset, o.end_offset, o.lag) for o in description.offsets]
    return _title("consumer group", description.group, f"lag {description.total_lag:,}") + grid(
        ["topic", "partition", "committed", "end offset", "lag"], rows
    )


def job_description(job: JobDescription) -> str:
    pairs: list[tuple[str, object]] = [
        ("output topic", job.output_topic),
        ("state", job.state),
        ("source lag", f"{job.source_lag:,}"),
        ("watermark", job.watermark or "(none yet)"),
        ("rows in / out", f"{job.rows_in:,} / {job.rows_out:,}"),
        ("late rows", f"{job.late_rows:,}"),
        ("checkpoints", f"{job.checkpoints:,} (last {job.last_checkpoint or 'never'})"),
        ("options", ", ".join(f"{k}={v}" for k, v in sorted(job.options.items())) or "(defaults)"),
    ]
    sql = f'<pre style="font-size:11px;white-space:pre-wrap">{_text(job.sql)}</pre>'
    return _title("job", job.name) + fields(pairs) + sql
