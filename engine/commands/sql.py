"""`streamhouse sql`: one statement (`streamhouse sql "SELECT …" --format table|csv|json`) or,
with no statement, an interactive shell: statements end with `;` and may span lines, history
is kept in ~/.streamhouse_history, `\\d` lists topics, `\\d NAME` describes one, `\\q` quits.
Errors are one `error: …` line, never a traceback; the shell keeps going after one."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from streamhouse.commands import common
from streamhouse.storage.errors import StreamHouseError

if TYPE_CHECKING:
    from streamhouse.client.client import Client

HISTORY = "~/.streamhouse_history"
FORMATS = ("table", "csv", "json")


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "sql",
        parents=[common.engine_options()],
        help="run SQL over topics (no statement: a shell)",
        description=__doc__,
    )
    p.add_argument("statement", nargs="?", help="one SQL statement; omit it for the interactive shell")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    p.add_argument("--file", help="run the statements of this file (separated by ;)")


def run(args: argparse.Namespace) -> int:
    with common.open_client(args) as client:
        if args.statement:
            print_result(client.sql(args.statement), args.format)
            return 0
        if args.file:
            for statement in split_statements(Path(args.file).read_text()):
                print_result(client.sql(statement), args.format)
            return 0
        return shell(client, args.format)


def print_result(table: pa.Table, fmt: str) -> None:
    if fmt == "json":
        for row in table.to_pylist():
            sys.stdout.write(json.dumps(row, default=_json_default, ensure_ascii=False) + "\n")
    elif fmt == "csv":
        import pyarrow.csv as pacsv

        sink = io.BytesIO()
        pacsv.write_csv(_printable(table), sink)
        sys.stdout.write(sink.getvalue().decode())
    else:
        out = common.table(*table.column_names)
        for row in _printable(table).to_pylist():
            out.add_row(*("NULL" if v is None else str(v) for v in row.values()))
        common.stdout_console().print(out)
        common.stderr_console().print(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")


def _printable(table: pa.Table) -> pa.Table:
    """Binary columns as text where they are UTF-8 (keys and raw values usually are)."""
    columns = []
    for column in table.columns:
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            values = [None if v is None else v.decode("utf-8", errors="replace") for v in column.to_pylist()]
            column = pa.chunked_array([pa.array(values, pa.string())])
        columns.append(column)
    return pa.Table.from_arrays(columns, names=table.column_names)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def split_statements(text: str) -> list[str]:
    """Statements separated by `;` outside quotes."""
    statements: list[str] = []
    current: list[str] = []
    quote = ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == ";":
            statements.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def shell(client: Client, fmt: str) -> int:
    readline: Any = None
    with contextlib.suppress(ImportError):
        import readline

        with contextlib.suppress(OSError):
            readline.read_history_file(os.path.expanduser(HISTORY))
    print("StreamHouse SQL shell: end statements with ;  \\d lists topics, \\d NAME describes one, \\q quits")
    buffer: list[str] = []
    try:
        while True:
            try:
                line = input("sql> " if not buffer else "...> ")
            except EOFError:
                print()
                return 0
            stripped = line.strip()
            if not buffer and stripped.startswith("\\"):
                if not _command(client, stripped, fmt):
                    return 0
                continue
            buffer.append(line)
            if not stripped.endswith(";"):
                continue
            statement, buffer = "\n".join(buffer), []
            for one in split_statements(statement):
                try:
                    print_result(client.sql(one), fmt)
                except StreamHouseError as exc:
                    print(f"error: {exc}", file=sys.stderr)
    except KeyboardInterrupt:
        print()
        return 0
    finally:
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(os.path.expanduser(HISTORY))


def _command(client: Client, command: str, fmt: str) -> bool:
    """A backslash command; False means quit."""
    parts = command.split()
    try:
        if parts[0] in ("\\q", "\\quit"):
            return False
        if parts[0] == "\\d" and len(parts) == 1:
            print_result(client.sql("SHOW TOPICS"), fmt)
        elif parts[0] == "\\d":
            print_result(client.sql(f'DESCRIBE "{parts[1]}"'), fmt)
        else:
            print(f"unknown command {parts[0]}: \\d, \\d NAME, \\q", file=sys.stderr)
    except StreamHouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
    return True
