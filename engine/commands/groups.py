"""`streamhouse group list|describe|reset`: what kafka-consumer-groups does.

A group here is a named set of committed offsets per topic partition; `consume --group`
reads from and commits to it. `describe` shows each partition's committed offset (the next
record the group reads), the end offset and the lag between them; `reset` moves a group's
offsets on one topic to the beginning, the end or an absolute offset.

`--json` on list/describe/reset prints JSON instead of tables (list: an array of names;
describe and reset: {group, offsets: [{topic, partition, committed_offset, end_offset, lag}],
total_lag}, with committed_offset -1 for a partition never committed).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from streamhouse.commands import common

if TYPE_CHECKING:
    from streamhouse.agent.api import GroupOffset
    from streamhouse.client.client import Client


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    engine = common.engine_options()
    group = commands.add_parser("group", help="list, describe and reset consumer groups", description=__doc__)
    actions = group.add_subparsers(dest="group_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[engine], help="names of the consumer groups")
    listing.add_argument("--json", action="store_true", help="print a JSON array")

    describe = actions.add_parser("describe", parents=[engine], help="committed offsets, end offsets and lag")
    describe.add_argument("group")
    describe.add_argument("--json", action="store_true", help="print JSON instead of a table")

    reset = actions.add_parser("reset", parents=[engine], help="move a group's offsets on a topic")
    reset.add_argument("group")
    reset.add_argument("--topic", required=True)
    reset.add_argument(
        "--to",
        required=True,
        type=_reset_target,
        metavar="earliest|latest|OFFSET",
        help="the first record, the end, or this offset in every partition",
    )
    reset.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    with common.open_client(args) as client:
        action: str = args.group_command
        if action == "list":
            return _list(client, args)
        if action == "describe":
            description = client.describe_group(args.group)
            _show(args.group, description.offsets, json_output=args.json)
            return 0
        if action == "reset":
            offsets = client.reset_group(args.group, args.topic, args.to)
            _show(args.group, offsets, json_output=args.json)
            return 0
    return 2


def _reset_target(text: str) -> str | int:
    if text in ("earliest", "latest"):
        return text
    try:
        offset = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected earliest, latest or an offset, got {text!r}") from None
    if offset < 0:
        raise argparse.ArgumentTypeError(f"an offset must be >= 0, not {offset}")
    return offset


def _list(client: Client, args: argparse.Namespace) -> int:
    names = sorted(client.groups())
    if args.json:
        common.print_json(names)
        return 0
    # One name a line, like kafka-consumer-groups --list: easy to pipe into a loop.
    for name in names:
        print(name)
    return 0


def _show(group: str, offsets: Sequence[GroupOffset], *, json_output: bool) -> None:
    total = sum(o.lag for o in offsets)
    if json_output:
        common.print_json({"group": group, "offsets": [asdict(o) for o in offsets], "total_lag": total})
        return
    numeric = ["partition", "committed", "end", "lag"]
    out = common.table("topic", "partition", "committed", "end", "lag", title=f"group {group}", numeric=numeric)
    for o in sorted(offsets, key=lambda o: (o.topic, o.partition)):
        committed = str(o.committed_offset) if o.committed_offset >= 0 else "-"
        out.add_row(o.topic, str(o.partition), committed, str(o.end_offset), str(o.lag))
    console = common.stdout_console()
    console.print(out)
    console.print(f"total lag: {total}")
