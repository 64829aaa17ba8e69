"""`streamhouse recover`: rebuild a lost metadata database from the object store.

Reads the latest metadata snapshot under `_metadata/snapshots/` (agents write one after segment
commits, at most every `snapshot_interval_ms`) and the segment objects written after it (their
Parquet footers carry topic, partition, offsets and epoch), and writes the result into an EMPTY
metadata database (a non-empty one is refused, nothing written). Topics, partitions and every
segment found come back with their offsets; consumer group offsets, jobs and their checkpoints,
producer states and the schema registry as of the snapshot; topics created after it as raw
topics. Stop every agent first, recover, then start them (or use `streamhouse serve --recover`).
The rules: storage/metadata/recover.py.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from streamhouse.agent.recovery import recover_urls


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = commands.add_parser(
        "recover",
        help="rebuild an empty metadata database from the object store (snapshot + segments)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URL",
        help="the agents' object store: s3://bucket/prefix or file:///path",
    )
    p.add_argument("--s3-endpoint", help="S3 endpoint URL for S3-compatible servers")
    p.add_argument("--metadata", required=True, help="the EMPTY database to fill: postgresql://… or sqlite:///path")
    p.add_argument("--dry-run", action="store_true", help="say what would be recovered, write nothing")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    result = asyncio.run(
        recover_urls(args.metadata, args.source, s3_endpoint=args.s3_endpoint or None, dry_run=args.dry_run)
    )
    for line in result.lines():
        print(line, file=sys.stdout)
    return 0
