"""What every client command shares: how to reach the engine, and how to print.

Every command that talks to topics or groups takes the same two options (added through
`engine_options()` as an argparse parent):

    --bootstrap HOST:PORT[,HOST:PORT]   running agents over gRPC   (env STREAMHOUSE_BOOTSTRAP)
    --data-dir DIR                      the embedded engine on DIR (env STREAMHOUSE_DATA_DIR,
                                        default ./streamhouse-data)

A flag beats an environment variable; with neither flag, STREAMHOUSE_BOOTSTRAP beats
STREAMHOUSE_DATA_DIR, so exporting the bootstrap once points every command at a cluster.

Agents served with TLS (`serve --tls-cert/--tls-key`) are reached with `--tls-ca PEM` (the CA
to trust; env STREAMHOUSE_TLS_CA) or `--tls` (the system's roots), plus `--tls-cert PEM
--tls-key PEM` (env STREAMHOUSE_TLS_CLIENT_CERT / _KEY) where they require client certificates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console

from streamhouse.client.client import Client, connect, open_embedded
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.model import TopicInfo

ENV_BOOTSTRAP = "STREAMHOUSE_BOOTSTRAP"
ENV_DATA_DIR = "STREAMHOUSE_DATA_DIR"
ENV_TLS = {
    "tls_ca": "STREAMHOUSE_TLS_CA",
    "tls_cert": "STREAMHOUSE_TLS_CLIENT_CERT",
    "tls_key": "STREAMHOUSE_TLS_CLIENT_KEY",
}
DEFAULT_DATA_DIR = "./streamhouse-data"


def engine_options() -> argparse.ArgumentParser:
    """A parent parser holding --bootstrap/--data-dir, for `parents=[...]` of each command.

    Both default to None so `open_client` can tell a flag from an environment variable."""
    parent = argparse.ArgumentParser(add_help=False)
    where = parent.add_argument_group("engine")
    where.add_argument(
        "--bootstrap",
        metavar="HOST:PORT[,HOST:PORT]",
        help=f"connect to running agents (env {ENV_BOOTSTRAP})",
    )
    where.add_argument(
        "--data-dir",
        metavar="DIR",
        help=f"open the embedded engine on DIR (env {ENV_DATA_DIR}, default {DEFAULT_DATA_DIR})",
    )
    tls = parent.add_argument_group("TLS (agents served with --tls-cert)")
    tls.add_argument("--tls", action="store_true", help="connect over TLS, trusting the system's CAs")
    tls.add_argument("--tls-ca", metavar="PEM", help=f"connect over TLS, trusting this CA (env {ENV_TLS['tls_ca']})")
    tls.add_argument("--tls-cert", metavar="PEM", help=f"client certificate for mutual TLS (env {ENV_TLS['tls_cert']})")
    tls.add_argument("--tls-key", metavar="PEM", help=f"key of --tls-cert (env {ENV_TLS['tls_key']})")
    return parent


def engine_target(args: argparse.Namespace) -> tuple[str, str]:
    """("remote", addresses) or ("embedded", data dir), following the precedence above."""
    bootstrap: str | None = getattr(args, "bootstrap", None)
    data_dir: str | None = getattr(args, "data_dir", None)
    if bootstrap and data_dir:
        raise InvalidInputError("use either --bootstrap (running agents) or --data-dir (embedded), not both")
    if bootstrap:
        return "remote", bootstrap
    if data_dir:
        return "embedded", data_dir
    env_bootstrap = os.environ.get(ENV_BOOTSTRAP, "").strip()
    if env_bootstrap:
        return "remote", env_bootstrap
    return "embedded", os.environ.get(ENV_DATA_DIR, "").strip() or DEFAULT_DATA_DIR


def open_client(args: argparse.Namespace) -> Client:
    """A client on the engine the options name. Use it as a context manager: closing the
    embedded engine is what flushes its buffered records into segments."""
    kind, where = engine_target(args)
    return connect(where, **tls_options(args)) if kind == "remote" else open_embedded(where)


def tls_options(args: argparse.Namespace) -> dict[str, Any]:
    """connect() keywords from --tls/--tls-ca/--tls-cert/--tls-key, each flag beating its variable."""
    options: dict[str, Any] = {}
    for name, env in ENV_TLS.items():
        value = getattr(args, name, None) or os.environ.get(env, "").strip()
        if value:
            options[name] = value
    if getattr(args, "tls", False):
        options["tls"] = True
    return options


# -- output -----------------------------------------------------------------------------------


def stderr_console() -> Console:
    # highlight=False: rich would otherwise colour numbers and quotes in names and configs.
    return Console(stderr=True, highlight=False)


def print_json(data: object) -> None:
    """Machine output (--json): one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def add_format_options(parser: argparse.ArgumentParser) -> None:
    """`--format table|csv|json` for a command whose JSON is one document, plus the older
    `--json` spelling of `--format json`."""
    from streamhouse.cli.output import add_format_option

    add_format_option(parser)
    parser.add_argument(
        "--json", action="store_const", const="json", dest="format", default=argparse.SUPPRESS, help="--format json"
    )


def write_rows(columns: Mapping[str, Sequence[Any]], fmt: str) -> None:
    """A few rows built by a command (topics, offsets) printed like query results."""
    import pyarrow as pa

    from streamhouse.cli.output import write_result

    write_result(pa.table({name: list(values) for name, values in columns.items()}), fmt, count=False)


def format_config(config: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(config.items())) or "-"


def topic_json(info: TopicInfo) -> dict[str, Any]:
    return {
        "name": info.name,
        "topic_id": info.topic_id,
        "partitions": info.partitions,
        "config": dict(info.config),
    }


def key_value(text: str) -> tuple[str, str]:
    """argparse type for `--config k=v`."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, not {value}")
    return value
