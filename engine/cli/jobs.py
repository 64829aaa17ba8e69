"""`streamhouse job list|describe|drop`: the continuous queries (created with
`streamhouse sql "CREATE MATERIALIZED VIEW …"`): state, source lag, watermark, rows in/out,
late rows and the last checkpoint."""

from __future__ import annotations

import argparse

from streamhouse.cli import common, output
from streamhouse.storage.errors import JobNotFoundError


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    engine = common.engine_options()
    job = commands.add_parser("job", help="list, describe and drop continuous queries", description=__doc__)
    actions = job.add_subparsers(dest="job_command", required=True, metavar="ACTION")
    listing = actions.add_parser("list", parents=[engine], help="every job and how it is doing")
    output.add_format_option(listing)
    describe = actions.add_parser("describe", parents=[engine], help="one job, with its SQL and options")
    describe.add_argument("name", help="the job (the materialized view's or INSERT job's name)")
    output.add_format_option(describe, default="json")
    drop = actions.add_parser("drop", parents=[engine], help="stop and remove a job")
    drop.add_argument("name", help="the job to drop")
    drop.add_argument("--keep-topic", action="store_true", help="keep a materialized view's output topic")


def run(args: argparse.Namespace) -> int:
    with common.open_client(args) as client:
        if args.job_command == "list":
            table = client.jobs()
            output.write_result(
                table.drop_columns(["sql", "options"]) if args.format == "table" else table, args.format
            )
        elif args.job_command == "describe":
            table = client.jobs()
            mask = [name == args.name for name in table.column("job").to_pylist()]
            if not any(mask):
                raise JobNotFoundError(args.name)
            output.write_result(table.filter(mask), args.format)
        else:
            client.drop_job(args.name, drop_topic=not args.keep_topic)
            common.stderr_console().print(f"dropped job {args.name}")
    return 0
