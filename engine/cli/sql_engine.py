"""`streamhouse sql --engine`: which engine runs the queries of `streamhouse sql`.

    --engine datafusion     the agents (or the embedded engine) run them: the default
    --engine daft           Daft in this process over the segment files plus the unflushed tails
    --engine ray://H:P      Daft on that Ray cluster (`ray`: the cluster ray.init() finds or starts)

With Daft, the command reads the segments itself, so it needs the storage the agents were served
with: `--metadata`, `--object-store`, `--s3-endpoint`, or the variables `serve` reads
(STREAMHOUSE_METADATA_URL, STREAMHOUSE_OBJECT_STORE_URL, STREAMHOUSE_S3_ENDPOINT); with
--data-dir they default to the embedded engine's. On a Ray cluster of several machines the
object store must be S3 (or a path every worker sees): workers read the segment files themselves.
Statements that are not queries (SHOW, DESCRIBE, DDL, SET) still go to the agents. Daft and Ray
are imported only when asked for (`pip install 'streamhouse[daft]'`).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

import pyarrow as pa

from streamhouse.cli import common
from streamhouse.client.client import Client
from streamhouse.storage.errors import InvalidInputError

if TYPE_CHECKING:
    from streamhouse.daft_sql.run import Storage

__all__ = ["add_engine_options", "executor"]

ENV = {
    "metadata": "STREAMHOUSE_METADATA_URL",
    "object_store": "STREAMHOUSE_OBJECT_STORE_URL",
    "s3_endpoint": "STREAMHOUSE_S3_ENDPOINT",
}
_QUERY_STARTS = ("SELECT", "WITH", "VALUES", "(")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("engine for queries")
    group.add_argument(
        "--engine",
        default="datafusion",
        metavar="datafusion|daft|ray|ray://HOST:PORT",
        help="run queries on the agents (datafusion, the default), on Daft in this process (daft), or on Daft "
        "on a Ray cluster (ray://HOST:PORT); Daft needs pip install 'streamhouse[daft]'",
    )
    group.add_argument("--metadata", help=f"with Daft: the agents' metadata store URL (env {ENV['metadata']})")
    group.add_argument("--object-store", help=f"with Daft: the agents' object store URL (env {ENV['object_store']})")
    group.add_argument("--s3-endpoint", help=f"with Daft: the S3 endpoint URL (env {ENV['s3_endpoint']})")


def executor(args: argparse.Namespace, client: Client) -> Callable[[str], pa.Table]:
    """What runs one statement: `client.sql`, or Daft for queries when --engine asks for it."""
    engine = str(getattr(args, "engine", "datafusion") or "datafusion")
    if engine == "datafusion":
        return client.sql
    from streamhouse.daft_sql.run import is_daft_engine, run_daft

    if not is_daft_engine(engine):
        raise InvalidInputError(f"unknown --engine {engine!r}: use datafusion, daft, ray or ray://HOST:PORT")
    storage = _storage(args)

    def execute(statement: str) -> pa.Table:
        if statement.lstrip().upper().startswith(_QUERY_STARTS):
            return run_daft(client, statement, engine, storage)
        return client.sql(statement)

    return execute


def _storage(args: argparse.Namespace) -> Storage:
    from streamhouse.daft_sql.run import Storage

    values = {name: getattr(args, name, None) or os.environ.get(env, "").strip() or None for name, env in ENV.items()}
    kind, where = common.engine_target(args)
    if kind == "embedded":
        from streamhouse.agent.config import AgentConfig

        config = AgentConfig(data_dir=where)
        values["metadata"] = values["metadata"] or config.resolved_metadata_url
        values["object_store"] = values["object_store"] or config.resolved_object_store_url
    if not values["metadata"] or not values["object_store"]:
        raise InvalidInputError(
            "--engine daft/ray reads the segments itself: give the agents' --metadata and --object-store "
            f"(or {ENV['metadata']} and {ENV['object_store']})"
        )
    return Storage(str(values["metadata"]), str(values["object_store"]), values["s3_endpoint"])
