"""`streamhouse auth acl add | list | remove`: ACL allow rules (issue 15, engine/auth/acl.py) on
the metadata store the agents share (the same --metadata / --data-dir as the other `auth`
commands). Agents see a change within 5 s (their ACL cache, engine/auth/authorizer.py).

    streamhouse auth acl add --org acme --principal alice --type topic --name orders. --prefixed \\
        --operation read --operation describe
    streamhouse auth acl list --org acme
    streamhouse auth acl remove --org acme --principal alice --type topic --name orders. --prefixed --operation read
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from streamhouse.cli.common import add_format_options, write_rows
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.metadata.acl_sql import OPERATIONS, RESOURCE_TYPES, AclRule


def add_parser(kinds: argparse._SubParsersAction[argparse.ArgumentParser], where: argparse.ArgumentParser) -> None:
    acl = kinds.add_parser(
        "acl",
        help="ACLs: allow a principal an operation on topics, groups, jobs, subjects or transactional ids",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = acl.add_subparsers(dest="acl_command", required=True, metavar="ACL_COMMAND")
    rule = argparse.ArgumentParser(add_help=False)
    rule.add_argument("--org", required=True, help="the principal's organisation")
    rule.add_argument("--principal", required=True, help="who the rule allows (as in create-key)")
    rule.add_argument("--type", required=True, choices=RESOURCE_TYPES, help="the resource type")
    rule.add_argument("--name", required=True, help="the resource name ('*': every name), or a prefix with --prefixed")
    rule.add_argument("--prefixed", action="store_true", help="--name is a prefix (Kafka's PREFIXED pattern)")
    rule.add_argument(
        "--operation", required=True, action="append", choices=OPERATIONS, help="allowed operation (repeatable)"
    )
    commands.add_parser("add", parents=[where, rule], help="allow (adding a rule that exists changes nothing)")
    commands.add_parser("remove", parents=[where, rule], help="remove exactly these rules")
    listing = commands.add_parser("list", parents=[where], help="the rules")
    listing.add_argument("--org", help="only this organisation's rules")
    listing.add_argument("--principal", help="only this principal's rules (with --org)")
    add_format_options(listing)


def _rules(args: argparse.Namespace) -> list[AclRule]:
    pattern = "prefixed" if args.prefixed else "literal"
    ops = dict.fromkeys(args.operation)  # repeated operations once, in the given order
    return [AclRule(args.org, args.principal, args.type, pattern, args.name, op) for op in ops]


def run(args: argparse.Namespace, url: str) -> int:
    command = args.acl_command
    if command == "list":
        rules = asyncio.run(_list(url, args.org, args.principal if args.org else None))
        write_rows(
            {
                "org": [r.org for r in rules],
                "principal": [r.principal for r in rules],
                "resource_type": [r.resource_type for r in rules],
                "pattern": [r.pattern for r in rules],
                "resource_name": [r.resource_name for r in rules],
                "operation": [r.operation for r in rules],
            },
            args.format,
        )
        return 0
    rules = _rules(args)  # every rule checked before any is written
    changed = asyncio.run(_change(url, rules, add=command == "add"))
    verb = "added" if command == "add" else "removed"
    for rule, did in zip(rules, changed, strict=True):
        what = f"{rule.operation} on {rule.resource_type} {rule.pattern} {rule.resource_name!r}"
        state = verb if did else ("already there" if command == "add" else "not found")
        print(f"{rule.org}/{rule.principal}: {what}: {state}", file=sys.stderr if not did else sys.stdout)
    return 0


async def _list(url: str, org: str | None, principal: str | None) -> list[AclRule]:
    store = await open_metadata_store(url)
    try:
        return await store.acl_list(org, principal)
    finally:
        await store.close()


async def _change(url: str, rules: list[AclRule], *, add: bool) -> list[bool]:
    store = await open_metadata_store(url)
    try:
        return [await (store.acl_add(rule) if add else store.acl_remove(rule)) for rule in rules]
    finally:
        await store.close()
