"""Metadata snapshots (issue 14 item 5): the metadata database's tables ↔ bytes; pure, IO-free.

A snapshot is what `MetadataStore.export_tables` read in one consistent transaction: every
table but `schema_migrations`, each as SELECT * with its column names, so a column or a table
another migration adds travels without a change here (the format is generic over tables and
columns; values are the portable ones the migrations use: NULL, integers, text, plus floats and
booleans). `import_tables` writes such tables back into an empty database, and recovery
(storage/metadata/recover.py) edits them in between.

Bytes: MAGIC | u32 CRC32C of the body | u64 body length | body, where the body is the zlib-
compressed UTF-8 JSON document

    {"format": "streamhouse-metadata-snapshot", "format_version": 1, "schema_version": 6,
     "taken_ms": 1767225600000, "tables": [{"name": "topics", "columns": [...], "rows": [[...]]}]}

JSON rather than Parquet or Arrow IPC: the rows arrive from the database drivers as Python
tuples anyway, the document must keep Python ints of any size and NULLs exactly, and a snapshot
is written at most every few seconds by one agent, off every hot path. Damage anywhere (magic,
checksum, length, JSON, shape, value types) is a CorruptDataError naming the object.

Objects live under SNAPSHOT_PREFIX as `<taken_ms:015d>-<token>.json.z`: the zero-padded
database-clock time makes key order time order, so the latest snapshot is the last key listed.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from streamhouse.storage.checksum import crc32c
from streamhouse.storage.errors import AlreadyExistsError, CorruptDataError, InvalidInputError

FORMAT = "streamhouse-metadata-snapshot"
FORMAT_VERSION = 1
MAGIC = b"SHMETA\x00\x01"
_HEADER = struct.Struct(">IQ")  # CRC32C of the body, body length
SNAPSHOT_PREFIX = "_metadata/snapshots/"
_KEY_RE = re.compile(r"^(\d{15})-([0-9a-f]{8,32})\.json\.z$")
# Tables a snapshot never carries: the migrations table describes the code that created the
# database, and the target database has its own.
NOT_EXPORTED = frozenset({"schema_migrations"})

Value = None | bool | int | float | str
_VALUE_TYPES = (type(None), bool, int, float, str)


class MetadataNotEmptyError(AlreadyExistsError):
    """Recovery refused: the target metadata database already holds rows; nothing was written."""


class SnapshotSchemaError(InvalidInputError):
    """A snapshot names a table or column this database does not have (it was written by a newer
    StreamHouse); nothing was written."""


@dataclass(frozen=True)
class Table:
    """Rows of one table, as tuples in `columns` order. Several Table values may name the same
    table (e.g. the snapshot's rows and rows recovery adds with fewer columns): each is inserted
    with its own columns, the others taking their defaults."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Value, ...], ...] = ()

    def column(self, name: str) -> int:
        try:
            return self.columns.index(name)
        except ValueError:
            raise InvalidInputError(f"table {self.name!r} has no column {name!r} (it has {self.columns})") from None

    def dicts(self) -> list[dict[str, Value]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


@dataclass(frozen=True)
class MetadataDump:
    """A consistent read of the metadata tables. `taken_ms`: the database clock read just before
    the read began, so every commit acknowledged before that instant is in it. `schema_version`:
    the highest migration applied where it was taken."""

    taken_ms: int
    schema_version: int
    tables: tuple[Table, ...] = field(default_factory=tuple)

    def table(self, name: str) -> Table | None:
        """The first Table of that name (exports hold one per table)."""
        return next((t for t in self.tables if t.name == name), None)

    def row_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tables:
            counts[t.name] = counts.get(t.name, 0) + len(t.rows)
        return counts


# -- bytes ---------------------------------------------------------------------------------------
def encode_snapshot(dump: MetadataDump) -> bytes:
    for table in dump.tables:
        check_table(table)
    document = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": dump.schema_version,
        "taken_ms": dump.taken_ms,
        "tables": [
            {"name": t.name, "columns": list(t.columns), "rows": [list(r) for r in t.rows]} for t in dump.tables
        ],
    }
    body = zlib.compress(json.dumps(document, separators=(",", ":"), allow_nan=False).encode(), 6)
    return MAGIC + _HEADER.pack(crc32c(body), len(body)) + body


def decode_snapshot(data: bytes | bytearray | memoryview, *, source: str) -> MetadataDump:
    """The snapshot in `data`; CorruptDataError naming `source` (the object key) on any damage."""
    view = memoryview(data)
    head = len(MAGIC) + _HEADER.size
    if len(view) < head or bytes(view[: len(MAGIC)]) != MAGIC:
        raise CorruptDataError("not a StreamHouse metadata snapshot (bad magic)", source=source, position=0)
    crc, length = _HEADER.unpack(view[len(MAGIC) : head])
    body = view[head:]
    if len(body) != length:
        raise CorruptDataError(
            f"metadata snapshot truncated or padded: body of {len(body)} bytes, header says {length}",
            source=source,
            position=head,
        )
    if crc32c(body) != crc:
        raise CorruptDataError("metadata snapshot CRC32C mismatch", source=source, position=head)
    try:
        document = json.loads(zlib.decompress(body))
        return _interpret(document, source)
    except CorruptDataError:
        raise
    except (zlib.error, ValueError, TypeError, KeyError, IndexError) as exc:
        raise CorruptDataError(f"unreadable metadata snapshot: {exc!r}", source=source, position=head) from exc


def _interpret(document: object, source: str) -> MetadataDump:
    def bad(message: str) -> CorruptDataError:
        return CorruptDataError(f"metadata snapshot: {message}", source=source)

    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise bad("not a metadata snapshot document")
    if document.get("format_version") != FORMAT_VERSION:
        raise bad(f"unsupported format version {document.get('format_version')!r} (this build reads {FORMAT_VERSION})")
    taken, version, raw_tables = document["taken_ms"], document["schema_version"], document["tables"]
    if type(taken) is not int or type(version) is not int or not isinstance(raw_tables, list):
        raise bad("bad header fields")
    tables: list[Table] = []
    for raw in raw_tables:
        name, columns, rows = raw["name"], raw["columns"], raw["rows"]
        if not isinstance(name, str) or not isinstance(columns, list) or not isinstance(rows, list):
            raise bad(f"malformed table entry {str(raw)[:80]!r}")
        try:
            tables.append(check_table(Table(name, tuple(columns), tuple(tuple(r) for r in rows))))
        except InvalidInputError as exc:
            raise bad(str(exc)) from exc
    return MetadataDump(taken_ms=taken, schema_version=version, tables=tuple(tables))


def check_table(table: Table) -> Table:
    """InvalidInputError unless names are identifiers, every row fits the columns and every value
    is portable (the export's and the import's guard, and the decoder's shape check)."""
    for name in (table.name, *table.columns):
        if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
            raise InvalidInputError(f"bad table or column name {name!r} in table {table.name!r}")
    if len(set(table.columns)) != len(table.columns):
        raise InvalidInputError(f"table {table.name!r} repeats a column: {table.columns}")
    width = len(table.columns)
    for row in table.rows:
        if not isinstance(row, tuple) or len(row) != width:
            raise InvalidInputError(f"table {table.name!r}: a row of {len(row)} values for {width} columns")
        for value in row:
            if not isinstance(value, _VALUE_TYPES):
                raise InvalidInputError(
                    f"table {table.name!r}: value of type {type(value).__name__} is not portable "
                    "(NULL, integer, float, boolean or text only)"
                )
    return table


# -- object keys ---------------------------------------------------------------------------------
def snapshot_key(taken_ms: int, token: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{8,32}", token) or not 0 <= taken_ms < 10**15:
        raise InvalidInputError(f"bad snapshot key parts {taken_ms!r}, {token!r}")
    return f"{SNAPSHOT_PREFIX}{taken_ms:015d}-{token}.json.z"


def snapshot_time(key: str) -> int | None:
    """The taken_ms of a snapshot object key; None for any other key."""
    if not key.startswith(SNAPSHOT_PREFIX):
        return None
    match = _KEY_RE.match(key[len(SNAPSHOT_PREFIX) :])
    return int(match.group(1)) if match else None


def latest_first(keys: Iterable[str]) -> list[str]:
    """Snapshot keys among `keys`, newest first (by taken_ms, then key)."""
    found = [(t, k) for k in keys if (t := snapshot_time(k)) is not None]
    return [k for _, k in sorted(found, reverse=True)]


# -- import order --------------------------------------------------------------------------------
def insert_order(names: Iterable[str], parents: Mapping[str, Iterable[str]]) -> list[str]:
    """`names` ordered so that every table comes after the tables its foreign keys reference
    (`parents`: table → referenced tables, from the database's catalog); ties by name."""
    wanted = set(names)
    deps = {n: {p for p in parents.get(n, ()) if p in wanted and p != n} for n in wanted}
    ordered: list[str] = []
    while deps:
        ready = sorted(n for n, d in deps.items() if not d)
        if not ready:  # a cycle: the schema never has one; fail loudly rather than loop
            raise InvalidInputError(f"foreign keys form a cycle among tables {sorted(deps)}")
        ordered.extend(ready)
        for n in ready:
            del deps[n]
        for d in deps.values():
            d.difference_update(ready)
    return ordered


def check_importable(tables: Sequence[Table], target: Mapping[str, Sequence[str]], url: str) -> None:
    """SnapshotSchemaError unless every table and column named exists in the target database
    (`target`: table → its columns). Target tables or columns the snapshot lacks are fine: they
    were added by a later migration and take their defaults."""
    for table in tables:
        check_table(table)
        have = target.get(table.name)
        if have is None:
            raise SnapshotSchemaError(
                f"the snapshot has table {table.name!r}, which metadata store {url} lacks: "
                "recover with the StreamHouse version that wrote the snapshot, or a newer one"
            )
        extra = [c for c in table.columns if c not in have]
        if extra:
            raise SnapshotSchemaError(
                f"the snapshot's table {table.name!r} has columns {extra} that metadata store {url} lacks: "
                "recover with the StreamHouse version that wrote the snapshot, or a newer one"
            )


def check_empty(counts: Mapping[str, int], url: str) -> None:
    """MetadataNotEmptyError naming the tables with rows (counters, seeded by the migrations,
    and schema_migrations do not count)."""
    full = {name: n for name, n in sorted(counts.items()) if n and name not in ("counters", *NOT_EXPORTED)}
    if full:
        what = ", ".join(f"{name}: {n} rows" for name, n in full.items())
        raise MetadataNotEmptyError(
            f"metadata store {url} is not empty ({what}); recovery only fills an empty database "
            "(create a new one and point --metadata at it)"
        )


__all__ = [
    "FORMAT_VERSION",
    "NOT_EXPORTED",
    "SNAPSHOT_PREFIX",
    "MetadataDump",
    "MetadataNotEmptyError",
    "SnapshotSchemaError",
    "Table",
    "Value",
    "check_empty",
    "check_importable",
    "check_table",
    "decode_snapshot",
    "encode_snapshot",
    "insert_order",
    "latest_first",
    "snapshot_key",
    "snapshot_time",
]
