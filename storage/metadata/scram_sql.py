"""SCRAM credentials of API keys in the metadata store (issue 15, migration 0008): the value
and the SQL both backends run (written with `?`; registry_sql.numbered gives PostgreSQL's `$n`).

They are written by the key-creation transaction of sqlite_auth.py / postgres_auth.py (through
`insert_sqlite` / `insert_postgres` here), read by the Kafka listener's SCRAM exchange
(engine/kafka/sasl/). Derived by engine/auth/scram.py; nothing here sees a secret.
"""

from __future__ import annotations

import base64
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata.rows import Row

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
MIN_ITERATIONS = 4096  # RFC 7677's and Kafka's minimum


@dataclass(frozen=True)
class ScramCredential:
    """What a server keeps to verify one mechanism's proofs (RFC 5802 §3): StoredKey =
    H(HMAC(SaltedPassword, "Client Key")), ServerKey = HMAC(SaltedPassword, "Server Key")."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    def __post_init__(self) -> None:
        if self.mechanism not in MECHANISMS:
            raise InvalidInputError(f"unknown SCRAM mechanism {self.mechanism!r}: one of {', '.join(MECHANISMS)}")
        if self.iterations < MIN_ITERATIONS:
            raise InvalidInputError(f"SCRAM iterations must be >= {MIN_ITERATIONS}, not {self.iterations}")

    def __repr__(self) -> str:  # keys stay out of logs even though they are not the secret
        return f"ScramCredential({self.mechanism}, iterations={self.iterations})"


INSERT = (
    "INSERT INTO auth_scram_credentials (key_id, mechanism, salt, iterations, stored_key, server_key)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
GET = (
    "SELECT mechanism, salt, iterations, stored_key, server_key FROM auth_scram_credentials"
    " WHERE key_id = ? AND mechanism = ?"
)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def params(key_id: str, credential: ScramCredential) -> tuple[Any, ...]:
    c = credential
    return (key_id, c.mechanism, _b64(c.salt), c.iterations, _b64(c.stored_key), _b64(c.server_key))


def credential_row(row: Row) -> ScramCredential:
    return ScramCredential(
        mechanism=str(row["mechanism"]),
        salt=base64.b64decode(str(row["salt"])),
        iterations=int(row["iterations"]),
        stored_key=base64.b64decode(str(row["stored_key"])),
        server_key=base64.b64decode(str(row["server_key"])),
    )


def insert_sqlite(conn: sqlite3.Connection, key_id: str, credentials: Sequence[ScramCredential]) -> None:
    """Inside the key's creation transaction (sqlite_auth.py)."""
    conn.executemany(INSERT, [params(key_id, c) for c in credentials])
