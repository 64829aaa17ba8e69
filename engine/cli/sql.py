"""`streamhouse sql`: one statement (`streamhouse sql "SELECT …" --format table|csv|json`) or,
with no statement, an interactive shell: statements end with `;` and may span lines, history
is kept in ~/.streamhouse_history, `\\d` lists topics, `\\d NAME` describes one, `\\q` quits,
Ctrl-C clears the line or cancels the running statement, Ctrl-D quits. Statements piped into
stdin run without banner or prompts. Errors are one `error: …` line, never a traceback; the
shell keeps going after one. Output formats: see `streamhouse.cli.output`."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from streamhouse.cli import common, output, sql_engine
from streamhouse.client.client import Client
from streamhouse.sql.statements.split import split_statements
from streamhouse.storage.errors import StreamHouseError

HISTORY = "~/.streamhouse_history"


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "sql",
        parents=[common.engine_options()],
        help="run SQL over topics (no statement: a shell)",
        description=__doc__,
    )
    p.add_argument("statement", nargs="?", help="one SQL statement; omit it for the interactive shell")
    output.add_format_option(p)
    p.add_argument(
        "--max-rows",
        type=common.positive_int,
        default=output.MAX_ROWS,
        metavar="N",
        help=f"rows a table shows, the first and last halves (default {output.MAX_ROWS}; csv and json print all)",
    )
    p.add_argument("--file", help="run the statements of this file (separated by ;)")
    sql_engine.add_engine_options(p)


def run(args: argparse.Namespace) -> int:
    fmt = Format(args.format, args.max_rows)
    with common.open_client(args) as client:
        execute = sql_engine.executor(args, client)  # --engine: the agents, or Daft for queries
        if args.statement:
            print_result(execute(args.statement), fmt)
            return 0
        if args.file:
            for statement in split_statements(Path(args.file).read_text()):
                print_result(execute(statement), fmt)
            return 0
        return shell(client, fmt, execute)


@dataclass(frozen=True)
class Format:
    """How results are printed: --format and, for tables, --max-rows."""

    name: str = "table"
    max_rows: int = output.MAX_ROWS


def print_result(table: pa.Table, fmt: Format) -> None:
    output.write_result(table, fmt.name, max_rows=fmt.max_rows)


def shell(client: Client, fmt: Format, execute: Callable[[str], pa.Table] | None = None) -> int:
    """Read statements until Ctrl-D or \\q. On a terminal: a banner, prompts, history;
    Ctrl-C clears the line being typed or cancels the running statement. From a pipe or a
    file: no banner and no prompts, only results and errors, so the output is the data."""
    interactive = _isatty(sys.stdin)
    run_one = execute or client.sql
    readline: Any = None
    if interactive:
        with contextlib.suppress(ImportError):
            import readline

            with contextlib.suppress(OSError):
                readline.read_history_file(os.path.expanduser(HISTORY))
        print("StreamHouse SQL shell: end statements with ;  \\d lists topics, \\d NAME describes one, \\q quits")
        print("Ctrl-C clears the line or cancels a running statement; Ctrl-D quits")
    buffer: list[str] = []
    try:
        while True:
            try:
                line = _read_line(("sql> " if not buffer else "...> ") if interactive else None)
            except EOFError:
                if interactive:
                    print()
                _run_all(run_one, "\n".join(buffer), fmt)  # a last statement without its ;
                return 0
            except KeyboardInterrupt:
                if not interactive:
                    raise
                print()  # the terminal echoed ^C; the next prompt starts on a fresh line
                buffer = []
                continue
            stripped = line.strip()
            if not buffer and stripped.startswith("\\"):
                if not _command(client, stripped, fmt):
                    return 0
                continue
            buffer.append(line)
            if not stripped.endswith(";"):
                continue
            statement, buffer = "\n".join(buffer), []
            try:
                _run_all(run_one, statement, fmt)
            except KeyboardInterrupt:
                if not interactive:
                    raise
                print("cancelled", file=sys.stderr)
    finally:
        if readline is not None:
            with contextlib.suppress(OSError):
                readline.write_history_file(os.path.expanduser(HISTORY))


def _read_line(prompt: str | None) -> str:
    if prompt is not None:
        return input(prompt)
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.removesuffix("\n")


def _run_all(execute: Callable[[str], pa.Table], text: str, fmt: Format) -> None:
    for one in split_statements(text):
        try:
            print_result(execute(one), fmt)
        except StreamHouseError as exc:
            print(f"error: {exc}", file=sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _command(client: Client, command: str, fmt: Format) -> bool:
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
