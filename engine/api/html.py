"""HTML for Jupyter: topics, groups, jobs and query results as small tables.

IO-free: every function renders a value it is given. The `_repr_html_` methods of the SDK's
values (api/types.py) and the formatters `%load_ext streamhouse` registers call in here; this
module knows only the storage values, so types.py builds its own cards from these pieces.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

import pyarrow as pa

from streamhouse.storage.model import TopicInfo
from streamhouse.storage.values.schema import parse_value_schema

_STYLE = "border-collapse:collapse;font-size:12px"
_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;text-align:left"
MAX_ROWS = 20


def text(value: object) -> str:
    """A value as escaped HTML text (None: empty)."""
    return "" if value is None else escape(str(value))


def grid(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A plain HTML table; every value escaped."""
    head = "".join(f'<th style="{_CELL}">{text(h)}</th>' for h in headers)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{text(v)}</td>' for v in row) + "</tr>" for row in rows)
    return f'<table style="{_STYLE}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def fields(pairs: Sequence[tuple[str, object]]) -> str:
    """Label/value rows, for one object's properties."""
    body = "".join(f'<tr><th style="{_CELL}">{text(k)}</th><td style="{_CELL}">{text(v)}</td></tr>' for k, v in pairs)
    return f'<table style="{_STYLE}"><tbody>{body}</tbody></table>'


def title(kind: str, name: str, note: str = "") -> str:
    """A card's heading: what it shows, its name and a grey note."""
    extra = f' <span style="color:#777">{text(note)}</span>' if note else ""
    return f"<div><b>{text(kind)}</b> <code>{text(name)}</code>{extra}</div>"


def arrow_table(table: pa.Table, *, max_rows: int = MAX_ROWS) -> str:
    """A query result: column names with their types, the first `max_rows` rows, the size."""
    headers = [f"{f.name}: {f.type}" for f in table.schema]
    shown = table.slice(0, max_rows)
    columns = [shown.column(i).to_pylist() for i in range(shown.num_columns)]
    rows = list(zip(*columns, strict=True)) if columns else []
    more = f" (first {max_rows} shown)" if table.num_rows > max_rows else ""
    size = f'<div style="color:#777">{table.num_rows:,} rows × {table.num_columns} columns{more}</div>'
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
    return title("topic", info.name, note) + fields(pairs)


def topic_infos(infos: Sequence[TopicInfo]) -> str:
    rows = []
    for info in infos:
        schema = parse_value_schema(info.value_schema)
        columns = ", ".join(c.name for c in schema.columns) if schema else "(raw bytes)"
        rows.append((info.name, info.partitions, columns))
    return grid(["topic", "partitions", "columns"], rows)
