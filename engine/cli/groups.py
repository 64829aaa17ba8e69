"""`streamhouse group list|describe|reset`: what kafka-consumer-groups does.

A group here is a named set of committed offsets per topic partition; `consume --group`
reads from and commits to it. `describe` shows each partition's committed offset (the next
record the group reads), the end offset and the lag between them; `reset` moves a group's
offsets on one topic to the beginning, the end or an absolute offset.

list/describe/reset take `--format table|csv|json` (`--json` = `--format json`); JSON is one
document (list: an array of names; describe and reset: {group, offsets: [{topic, partition,
committed_offset, end_offset, lag}], total_lag}, with committed_offset -1 for a partition
never committed).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from streamhouse.api.types import GroupOffset
from streamhouse.cli import common
from streamhouse.client.client import Client


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    engine = common.engine_options()
    group = commands.add_parser("group", help="list, describe and reset consumer groups", description=__doc__)
    actions = group.add_subparsers(dest="group_command", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[engine], help="names of the consumer groups")
    common.add_format_options(listing)

    describe = actions.add_parser("describe", parents=[engine], help="committed offsets, end offsets and lag")
    describe.add_argument("group", help="the consumer group")
    common.add_format_options(describe)

    reset = actions.add_parser("reset", parents=[engine], help="move a group's offsets on a topic")
    reset.add_argument("group", help="the consumer group")
    reset.add_argument("--topic", required=True, help="the topic whose offsets move")
    reset.add_argument(
        "--to",
        required=True,
        type=_reset_target,
        metavar="earliest|latest|OFFSET",
        help="the first record, the end, or this offset in every partition",
    )
    common.add_format_options(reset)


def run(args: argparse.Namespace) -> int:
    with common.open_client(args) as client:
        action: str = args.group_command
        if action == "list":
            return _list(client, args)
        if action == "describe":
            description = client.describe_group(args.group)
            _show(args.group, description.offsets, args.format)
            return 0
        if action == "reset":
            offsets = client.reset_group(args.group, args.topic, args.to)
            _show(args.group, offsets, args.format)
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
    if args.format == "json":
        common.print_json(names)
    elif args.format == "csv":
        common.write_rows({"group": names}, "csv")
    else:
        # One name a line, like kafka-consumer-groups --list: easy to pipe into a loop.
        for name in names:
            print(name)
    return 0


def _show(group: str, offsets: Sequence[GroupOffset], fmt: str) -> None:
    total = sum(o.lag for o in offsets)
    if fmt == "json":
        common.print_json({"group": group, "offsets": [asdict(o) for o in offsets], "total_lag": total})
        return
    ordered = sorted(offsets, key=lambda o: (o.topic, o.partition))
    if fmt == "table":
        print(f"group {group}")
    rows: dict[str, list[Any]] = {
        "topic": [o.topic for o in ordered],
        "partition": [o.partition for o in ordered],
        # None (shown as NULL / empty) for a partition the group never committed.
        "committed": [o.committed_offset if o.committed_offset >= 0 else None for o in ordered],
        "end": [o.end_offset for o in ordered],
        "lag": [o.lag for o in ordered],
    }
    common.write_rows(rows, fmt)
    if fmt == "table":
        print(f"total lag: {total:,}")
