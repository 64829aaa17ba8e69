"""The PostgreSQL store's metadata export and import (storage/metadata/snapshot.py): generic
over tables and columns, read from the catalog (pg_tables, information_schema.columns,
pg_constraint), so tables and columns later migrations add need no change here. The export is
one read-only repeatable-read transaction (one consistent state); the import one transaction
under an advisory lock, so two recoveries into one database cannot interleave."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata import snapshot as sn
from streamhouse.storage.metadata.postgres_base import PostgresBase, redact

_IMPORT_LOCK = 0x5354_4D48_5245_434F & 0x7FFF_FFFF_FFFF_FFFF
_TABLES = "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY tablename"
_COLUMNS = (
    "SELECT table_name, column_name FROM information_schema.columns"
    " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
)
_PARENTS = (
    "SELECT conrelid::regclass::text AS child, confrelid::regclass::text AS parent FROM pg_constraint"
    " WHERE contype = 'f' AND connamespace = current_schema()::regnamespace"
)
_COUNTERS = (
    'INSERT INTO counters ("name", "value") VALUES ($1, $2)'
    " ON CONFLICT (name) DO UPDATE SET value = GREATEST(counters.value, excluded.value)"
)


class PostgresSnapshot(PostgresBase):
    async def export_tables(self) -> sn.MetadataDump:
        # The clock first: every commit acknowledged before it is in the snapshot that follows.
        taken_ms = await self.now_ms()
        tables: list[sn.Table] = []
        async with self._conn(snapshot=True) as conn:
            version = await conn.fetchval("SELECT max(version) FROM schema_migrations")
            for row in await conn.fetch(_TABLES):
                name = str(row[0])
                if name in sn.NOT_EXPORTED:
                    continue
                statement = await conn.prepare(f'SELECT * FROM "{name}"')
                columns = tuple(a.name for a in statement.get_attributes())
                tables.append(sn.Table(name, columns, tuple(tuple(r) for r in await statement.fetch())))
        return sn.MetadataDump(taken_ms, int(version or 0), tuple(tables))

    async def import_tables(self, tables: Sequence[sn.Table]) -> None:
        tables = list(tables)
        url = redact(self._url)
        async with self._conn(transaction=True) as conn:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _IMPORT_LOCK)
            target: dict[str, list[str]] = {}
            for row in await conn.fetch(_COLUMNS):
                target.setdefault(str(row[0]), []).append(str(row[1]))
            counts = {n: int(await conn.fetchval(f'SELECT count(*) FROM "{n}"')) for n in target}
            sn.check_empty(counts, url)
            sn.check_importable(tables, target, url)
            parents: dict[str, set[str]] = {}
            for row in await conn.fetch(_PARENTS):
                parents.setdefault(str(row[0]).strip('"'), set()).add(str(row[1]).strip('"'))
            try:
                for name in sn.insert_order({t.name for t in tables}, parents):
                    for table in (t for t in tables if t.name == name and t.rows):
                        if name == "counters":  # seeded by the migrations: continue from the larger value
                            await conn.executemany(
                                _COUNTERS, [(r[table.column("name")], r[table.column("value")]) for r in table.rows]
                            )
                        else:  # COPY: one round trip for a table of any size
                            await conn.copy_records_to_table(name, records=table.rows, columns=list(table.columns))
            except asyncpg.IntegrityConstraintViolationError as exc:
                raise InvalidInputError(f"metadata store {url} refused the snapshot's rows: {exc}") from exc
