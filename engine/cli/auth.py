"""`streamhouse auth`: organisations and API keys (issue 15), on the metadata store the agents
share (`--metadata`, else STREAMHOUSE_METADATA_URL, else the SQLite file under --data-dir, as
`serve` picks it). Whoever can write that database is the admin here, as with `recover`.

`create-key` prints the token `<key_id>.<secret>` alone on stdout, once: `KEY=$(streamhouse auth
create-key …)` captures it, and what it is for goes to stderr. No other command can show the
secret again (the store keeps only a salted scrypt hash); `list` shows ids, owners and states.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from typing import Any, TypeVar

from streamhouse.agent.config import AgentConfig
from streamhouse.auth.admin import AuthAdmin, KeyInfo
from streamhouse.cli import auth_acl, auth_quota
from streamhouse.cli.common import add_format_options, write_rows
from streamhouse.storage.errors import InvalidInputError
from streamhouse.storage.metadata import open_metadata_store

T = TypeVar("T")
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "auth",
        help="organisations and API keys (for agents started with --auth api-key)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--metadata", help="the agents' metadata store: postgresql://… or sqlite:///path")
    where.add_argument("--data-dir", help="with no --metadata: the SQLite store under this data dir (as serve)")
    kinds = p.add_subparsers(dest="auth_command", required=True, metavar="COMMAND")
    org = kinds.add_parser("create-org", parents=[where], help="create an organisation (a tenant)")
    org.add_argument("name", help="the organisation's name (unique)")
    key = kinds.add_parser(
        "create-key", parents=[where], help="create an API key; prints <key_id>.<secret> once, on stdout"
    )
    key.add_argument("--org", required=True, help="the key's organisation (create-org first)")
    key.add_argument("--principal", required=True, help="who the key speaks for (created with its first key)")
    key.add_argument("--admin", action="store_true", help="the principal is an admin (set with its first key)")
    key.add_argument("--expires-in", type=duration_ms, help="e.g. 3600s, 90m, 12h, 30d, 4w (default: never)")
    key.add_argument("--description", default="", help="what the key is for (shown by list)")
    listing = kinds.add_parser("list", parents=[where], help="API keys (no secrets): id, owner, state, times")
    listing.add_argument("--org", help="only this organisation's keys")
    listing.add_argument("--orgs", action="store_true", help="list the organisations instead")
    add_format_options(listing)
    revoke = kinds.add_parser("revoke", parents=[where], help="revoke an API key (every agent refuses it within 5 s)")
    revoke.add_argument("key_id", help="the key id to revoke (shk_…; the part of the token before the dot)")
    auth_acl.add_parser(kinds, where)  # `auth acl add | list | remove` (engine/cli/auth_acl.py)
    auth_quota.add_parser(kinds, where)  # `auth quota set | list` (engine/cli/auth_quota.py)


def duration_ms(text: str) -> int:
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 3600s, 90m, 12h, 30d or 4w")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def _url(args: argparse.Namespace) -> str:
    if args.metadata:
        return str(args.metadata)
    return AgentConfig.from_env(data_dir=args.data_dir).resolved_metadata_url


def _on_store(args: argparse.Namespace, work: Callable[[AuthAdmin], Coroutine[Any, Any, T]]) -> T:
    async def go() -> T:
        store = await open_metadata_store(_url(args))
        try:
            return await work(AuthAdmin(store))
        finally:
            await store.close()

    return asyncio.run(go())


def _time(ms: int | None) -> str:
    return "" if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_keys(keys: list[KeyInfo], fmt: str) -> None:
    write_rows(
        {
            "key_id": [k.key_id for k in keys],
            "org": [k.org for k in keys],
            "principal": [k.principal for k in keys],
            "admin": [k.admin for k in keys],
            "state": [k.state for k in keys],
            "created": [_time(k.created_at_ms) for k in keys],
            "expires": [_time(k.expires_at_ms) for k in keys],
            "revoked": [_time(k.revoked_at_ms) for k in keys],
            "description": [k.description for k in keys],
        },
        fmt,
    )


def run(args: argparse.Namespace) -> int:
    command = args.auth_command
    if command == "create-org":
        org = _on_store(args, lambda admin: admin.create_org(args.name))
        print(org.name)
        return 0
    if command == "create-key":
        created = _on_store(
            args,
            lambda admin: admin.create_key(
                args.org,
                args.principal,
                admin=args.admin,
                expires_in_ms=args.expires_in,
                description=args.description,
            ),
        )
        key = created.key
        expiry = f", expires {_time(key.expires_at_ms)}" if key.expires_at_ms is not None else ""
        print(
            f"API key {key.key_id} for {key.principal} of {key.org}{' (admin)' if key.admin else ''}{expiry}. "
            "The line on stdout is the only copy of its secret: store it now.",
            file=sys.stderr,
        )
        sys.stdout.write(created.token + "\n")
        return 0
    if command == "list":
        if args.orgs:
            orgs = _on_store(args, lambda admin: admin.orgs())
            write_rows({"org": [o.name for o in orgs], "created": [_time(o.created_at_ms) for o in orgs]}, args.format)
        else:
            write_keys(_on_store(args, lambda admin: admin.keys(args.org)), args.format)
        return 0
    if command == "revoke":
        info = _on_store(args, lambda admin: admin.revoke(args.key_id))
        print(f"{info.key_id} revoked at {_time(info.revoked_at_ms)}")
        return 0
    if command == "acl":
        return auth_acl.run(args, _url(args))
    if command == "quota":
        return auth_quota.run(args, _url(args))
    raise InvalidInputError(f"unknown auth command {command!r}")
