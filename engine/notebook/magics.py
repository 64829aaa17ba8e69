"""`%sql` and `%%sql`: SQL cells in Jupyter that return pandas DataFrames.

    %load_ext streamhouse
    sh = streamhouse.open("./data")
    %sql SELECT count(*) AS n FROM bids

    %%sql -o per_window
    SELECT window_start, count(*) AS n
    FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(ts), INTERVAL '10' SECOND))
    GROUP BY window_start

Options come first: `-c NAME` runs on the client in variable NAME (default: the client opened
last and still open), `-o NAME` also stores the result in variable NAME, `--arrow` returns the
pyarrow Table instead of a DataFrame. The rest of the line (or the cell) is SQL, taken
verbatim: IPython's own option parsing would strip the quotes out of string literals. A cell
may hold several statements separated by `;`; each runs in order and the last one's result
is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class

from streamhouse.client.client import Client, latest_client
from streamhouse.sql.statements.split import split_statements
from streamhouse.storage.errors import StreamHouseError


@dataclass(frozen=True)
class SqlOptions:
    client: str | None
    out: str | None
    arrow: bool
    sql: str


def parse_options(line: str) -> SqlOptions:
    """Leading options of a `%sql`/`%%sql` line; everything after them is SQL, untouched."""
    client = out = None
    arrow = False
    rest = line.strip()
    while rest.startswith("-"):
        head, _, tail = rest.partition(" ")
        if head == "--arrow":
            arrow = True
        elif head in ("-c", "--client", "-o", "--out"):
            value, _, tail = tail.strip().partition(" ")
            if not value.isidentifier():
                raise UsageError(f"{head} needs a Python variable name, got {value!r}")
            if head in ("-c", "--client"):
                client = value
            else:
                out = value
        else:
            raise UsageError(f"unknown option {head!r}; use -c NAME, -o NAME or --arrow")
        rest = tail.strip()
    return SqlOptions(client, out, arrow, rest)


@magics_class
class SqlMagics(Magics):
    @line_cell_magic
    def sql(self, line: str, cell: str | None = None) -> Any:
        options = parse_options(line)
        text = options.sql if cell is None else "\n".join(filter(None, [options.sql, cell]))
        statements = split_statements(text)
        if not statements:
            raise UsageError("no SQL to run: write a statement after %sql or below %%sql")
        client = self._client(options.client)
        try:
            for statement in statements:
                table = client.sql(statement)
        except StreamHouseError as exc:
            # A short message, not a traceback through the SDK; still an error to the kernel.
            raise UsageError(f"{type(exc).__name__}: {exc}") from None
        result: Any = table if options.arrow else table.to_pandas()
        if options.out is not None:
            self._namespace()[options.out] = result
        return result

    def _namespace(self) -> dict[str, Any]:
        if self.shell is None:
            raise UsageError("the SQL magics need an IPython shell")
        namespace: dict[str, Any] = self.shell.user_ns
        return namespace

    def _client(self, name: str | None) -> Client:
        if name is None:
            client = latest_client()
            if client is None:
                raise UsageError("no open StreamHouse client: run sh = streamhouse.open(...) or connect(...) first")
            return client
        value = self._namespace().get(name)
        if not isinstance(value, Client):
            raise UsageError(f"-c {name}: that variable is not a StreamHouse client")
        return value
