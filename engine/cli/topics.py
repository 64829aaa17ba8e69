"""`streamhouse topic create|list|describe|alter|delete`: what kafka-topics does.

list/describe take `--format table|csv|json` (`--json` is short for `--format json`): a
table or CSV of the rows, or one JSON document (list: an array of {name, topic_id,
partitions, config}; describe: the same object plus "partition_states", one {partition,
end_offset, durable_end_offset, segments, leader, leader_epoch, log_start, size_bytes,
last_compacted_ms} per partition: what retention left (the log start), the committed bytes,
and when compaction last finished a pass (null: never)).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from typing import Any

from streamhouse.cli import common
from streamhouse.client.client import Client
from streamhouse.storage import topic_settings
from streamhouse.storage.errors import TopicExistsError
from streamhouse.wording import plural


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    engine = common.engine_options()
    topic = commands.add_parser("topic", help="create, list, describe and delete topics")
    actions = topic.add_subparsers(dest="topic_command", required=True, metavar="ACTION")

    create = actions.add_parser("create", parents=[engine], help="create a topic")
    create.add_argument("name", help="the new topic")
    create.add_argument("--partitions", type=common.positive_int, default=1, help="partition count (default 1)")
    create.add_argument(
        "--config",
        type=common.key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="topic setting; repeat for several",
    )
    create.add_argument(
        "--if-not-exists", action="store_true", help="succeed without changes when the topic already exists"
    )

    listing = actions.add_parser("list", parents=[engine], help="list topics")
    common.add_format_options(listing)

    describe = actions.add_parser("describe", parents=[engine], help="offsets, segments and leaders per partition")
    describe.add_argument("name", help="the topic")
    common.add_format_options(describe)

    alter = actions.add_parser(
        "alter",
        parents=[engine],
        help="set or reset topic settings, or add partitions",
        description="Change a topic: all of the change or nothing. Settings that can change: "
        f"{', '.join(topic_settings.alterable_keys())}. Partitions only grow; keyed records then hash "
        "over the new count, and records already written stay where they are.",
    )
    alter.add_argument("name", help="the topic to change")
    alter.add_argument(
        "--set",
        type=common.key_value,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set a topic setting; repeat for several",
    )
    alter.add_argument(
        "--reset", action="append", default=[], metavar="KEY", help="reset a setting to its default; repeat for several"
    )
    alter.add_argument(
        "--add-partitions", type=common.positive_int, metavar="N", help="add N partitions after the existing ones"
    )

    delete = actions.add_parser("delete", parents=[engine], help="delete a topic and its segments")
    delete.add_argument("name", help="the topic to delete")


def run(args: argparse.Namespace) -> int:
    with common.open_client(args) as client:
        action: str = args.topic_command
        if action == "create":
            return _create(client, args)
        if action == "list":
            return _list(client, args)
        if action == "describe":
            return _describe(client, args)
        if action == "alter":
            return _alter(client, args)
        if action == "delete":
            client.delete_topic(args.name)
            print(f"deleted topic {args.name}")
            return 0
    return 2


def _create(client: Client, args: argparse.Namespace) -> int:
    config = dict(args.config)
    try:
        info = client.create_topic(args.name, args.partitions, config=config)
    except TopicExistsError:
        # Caught here rather than via exist_ok=True so the message says nothing was created.
        if not args.if_not_exists:
            raise
        print(f"topic {args.name} already exists")
        return 0
    print(f"created topic {info.name} with {info.partitions} partition{'s' if info.partitions != 1 else ''}")
    return 0


def _alter(client: Client, args: argparse.Namespace) -> int:
    info = client.alter_topic(args.name, set=dict(args.set), reset=args.reset, add_partitions=args.add_partitions)
    count = f"{info.partitions} partition{'s' if info.partitions != 1 else ''}"
    print(f"altered topic {info.name}: {count}, config {common.format_config(info.config)}")
    return 0


def _list(client: Client, args: argparse.Namespace) -> int:
    topics = sorted(client.topics(), key=lambda t: t.name)
    if args.format == "json":
        common.print_json([common.topic_json(t) for t in topics])
        return 0
    if not topics and args.format == "table":
        print("no topics")
        return 0
    rows: dict[str, list[Any]] = {
        "name": [t.name for t in topics],
        "partitions": [t.partitions for t in topics],
        "config": [common.format_config(t.config) for t in topics],
    }
    common.write_rows(rows, args.format)
    return 0


def _when(ms: int | None) -> str:
    return "never" if ms is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _describe(client: Client, args: argparse.Namespace) -> int:
    description = client.describe(args.name)
    info = description.info
    if args.format == "json":
        doc: dict[str, Any] = common.topic_json(info)
        doc["partition_states"] = [asdict(state) for state in description.partitions]
        common.print_json(doc)
        return 0
    if args.format == "table":
        print(f"{info.name}: {plural(info.partitions, 'partition')}, config {common.format_config(info.config)}")
    states = description.partitions
    rows: dict[str, list[Any]] = {
        "partition": [s.partition for s in states],
        "log start": [s.log_start for s in states],
        "end offset": [s.end_offset for s in states],
        "durable end offset": [s.durable_end_offset for s in states],
        "segments": [s.segments for s in states],
        "bytes": [s.size_bytes for s in states],
        "last compaction": [_when(s.last_compacted_ms) for s in states],
        "leader": [s.leader or "-" for s in states],
        "epoch": [s.leader_epoch for s in states],
    }
    common.write_rows(rows, args.format)
    return 0
