"""Printing rows: the one `--format table|csv|json` every row-printing command takes.

- json: one JSON object per row (JSON lines), every Arrow type encoded by `json_text`.
- csv: pyarrow's CSV writer with a header; nested values (list, struct, map) as JSON text and
  binary as UTF-8 text, the types the writer cannot take itself.
- table: at most `max_rows` rows (the first and last halves, like DuckDB's CLI) and a footer
  with the total, so a million-row result prints at once. On a terminal it is a rich table
  fitted to the window; piped or redirected it is plain aligned text that is never cut.

All three work a column at a time with pyarrow kernels, never a Python loop per row: 1 M
rows of csv or json take about a second.
"""

from __future__ import annotations

import argparse
import io
import sys
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as _pc
import pyarrow.csv as pacsv

from streamhouse.cli.json_text import json_text, plain_text

# pyarrow-stubs type variadic compute kernels too narrowly (scalars vs arrays); the kernels
# check their arguments at run time.
pc: Any = _pc
# Arrays of any Arrow type: the stubs cannot express the per-type attributes (offsets, keys,
# flatten) that the branches below use after checking the type.
Arrow = Any

__all__ = ["FORMATS", "MAX_ROWS", "add_format_option", "write_result"]

FORMATS = ("table", "csv", "json")
MAX_ROWS = 40
_JSON_SLICE = 65_536  # rows encoded per step: bounds the memory of the text being built


def add_format_option(parser: argparse.ArgumentParser, default: str = "table") -> None:
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=default,
        help=f"table (at most {MAX_ROWS} rows, with the total), csv or json lines (default {default})",
    )


def write_result(
    table: pa.Table, fmt: str, *, max_rows: int = MAX_ROWS, out: IO[str] | None = None, count: bool = True
) -> None:
    """`count`: after a table, say "(N rows)" on stderr (query results; not listings)."""
    stream = out if out is not None else sys.stdout
    if fmt == "json":
        write_json_lines(table, stream)
    elif fmt == "csv":
        write_csv(table, stream)
    else:
        write_table(table, stream, max_rows=max_rows, count=count)


def write_json_lines(table: pa.Table, out: IO[str]) -> None:
    import json

    for start in range(0, table.num_rows, _JSON_SLICE):
        part = table.slice(start, _JSON_SLICE)
        parts: list[object] = []
        for index, (name, column) in enumerate(zip(table.column_names, part.columns, strict=True)):
            parts += [("{" if index == 0 else ", ") + json.dumps(name, ensure_ascii=False) + ": ", json_text(column)]
        if not parts:
            out.write("{}\n" * part.num_rows)
            continue
        lines = pc.binary_join_element_wise(*parts, "}\n", "")
        _write_text_buffer(lines, out)
    out.flush()


def _write_text_buffer(lines: Arrow, out: IO[str]) -> None:
    """Write a string array's characters as one block: its data buffer already holds every
    value back to back, so no per-row Python string is made."""
    _validity, offset_buffer, data = lines.buffers()
    width = 8 if pa.types.is_large_string(lines.type) else 4
    offsets = memoryview(offset_buffer).cast("q" if width == 8 else "i") if offset_buffer is not None else None
    start = offsets[lines.offset] if offsets is not None else 0
    end = offsets[lines.offset + len(lines)] if offsets is not None else 0
    block = memoryview(data)[start:end] if data is not None else memoryview(b"")
    buffer = getattr(out, "buffer", None)
    if buffer is None:
        out.write(bytes(block).decode())
        return
    out.flush()
    buffer.write(block)
    buffer.flush()


def write_csv(table: pa.Table, out: IO[str]) -> None:
    columns = [_csv_column(column) for column in table.columns]
    printable = pa.Table.from_arrays(columns, names=table.column_names)
    buffer = getattr(out, "buffer", None)
    if buffer is not None:
        out.flush()
        pacsv.write_csv(printable, buffer)
        buffer.flush()
        return
    sink = io.BytesIO()
    pacsv.write_csv(printable, sink)
    out.write(sink.getvalue().decode())


def _csv_column(column: Arrow) -> Arrow:
    t = column.type
    nested = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    nested = nested or pa.types.is_struct(t) or pa.types.is_map(t) or pa.types.is_union(t)
    if nested:
        # JSON text, with SQL NULL left empty as the writer does for every other type.
        return pc.if_else(pc.is_null(column), pa.scalar(None, pa.string()), json_text(column))
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return plain_text(column)
    if pa.types.is_duration(t) or pa.types.is_interval(t) or isinstance(t, pa.ExtensionType):
        return plain_text(column)
    return column


def write_table(table: pa.Table, out: IO[str], *, max_rows: int = MAX_ROWS, count: bool = True) -> None:
    total = table.num_rows
    head = total if total <= max_rows else (max_rows + 1) // 2
    tail = 0 if total <= max_rows else max_rows - head
    if total > max_rows:
        # take() copies the shown rows compactly: later kernels never see the other rows.
        rows = pa.array([*range(head), *range(total - tail, total)], pa.int64())
        table = table.take(rows)
    cells = [pc.fill_null(plain_text(column), "NULL").to_pylist() for column in table.columns]
    numeric = [_is_numeric(column.type) for column in table.columns]
    isatty = _isatty(out)
    if isatty:
        _rich_table(table.column_names, cells, numeric, head if tail else None, out)
    else:
        _plain_table(table.column_names, cells, numeric, head if tail else None, out)
    if tail:
        out.write(f"{total:,} rows total ({head + tail} shown)\n")
    out.flush()
    if count:
        print(f"({total:,} row{'' if total == 1 else 's'})", file=sys.stderr)


def _plain_table(
    names: list[str], cells: list[list[str]], numeric: list[bool], gap_after: int | None, out: IO[str]
) -> None:
    """Aligned columns, never cut: a pipe or a file gets every character."""
    widths = [max([len(name), 1, *(len(v) for v in values)]) for name, values in zip(names, cells, strict=True)]
    if not names:
        return

    def line(values: list[str]) -> str:
        padded = [v.rjust(w) if right else v.ljust(w) for v, w, right in zip(values, widths, numeric, strict=True)]
        return "  ".join(padded).rstrip()

    lines = [line(names), line(["-" * w for w in widths])]
    count = len(cells[0])
    for row in range(count):
        if gap_after is not None and row == gap_after:
            lines.append(line(["…"] * len(names)))
        lines.append(line([column[row] for column in cells]))
    out.write("\n".join(lines) + "\n")


def _rich_table(
    names: list[str], cells: list[list[str]], numeric: list[bool], gap_after: int | None, out: IO[str]
) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    # Text(), not str: a value such as "[red]" must print as itself, not as rich markup.
    grid = Table(show_edge=False, pad_edge=False)
    for name, right in zip(names, numeric, strict=True):
        grid.add_column(Text(name), justify="right" if right else "left", no_wrap=right)
    count = len(cells[0]) if cells else 0
    for row in range(count):
        if gap_after is not None and row == gap_after:
            grid.add_row(*(["…"] * len(names)))
        grid.add_row(*(Text(column[row]) for column in cells))
    Console(file=out, highlight=False).print(grid)


def _is_numeric(t: pa.DataType) -> bool:
    return bool(pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t))


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
