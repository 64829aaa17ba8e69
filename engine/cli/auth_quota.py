"""`streamhouse auth quota set | list` (issue 15): quotas per organisation on the metadata
store the agents share: rates, committed storage bytes and partitions. `set` replaces the org's
row; a limit left out is the agents' default (serve --quota-*-per-s for rates; unlimited unless
given). Every agent applies a change within 5 s
(engine/auth/quota_gate.py LIMITS_TTL_S), each to what reaches it (quotas are per agent)."""

from __future__ import annotations

import argparse
import asyncio

from streamhouse.auth.quota import parse_rate
from streamhouse.cli.common import add_format_options, write_rows
from streamhouse.storage.metadata import open_metadata_store
from streamhouse.storage.metadata.sqlite_quotas import OrgQuota


def add_parser(kinds: argparse._SubParsersAction[argparse.ArgumentParser], where: argparse.ArgumentParser) -> None:
    p = kinds.add_parser("quota", help="quotas per organisation (rates, storage, partitions): set, list")
    verbs = p.add_subparsers(dest="quota_command", required=True, metavar="COMMAND")
    put = verbs.add_parser("set", parents=[where], help="replace an organisation's rate quotas")
    put.add_argument("--org", required=True, help="the organisation whose quotas to set")
    put.add_argument("--produce-bytes-per-s", help="e.g. 10MB, 512KiB (default: the agents' default)")
    put.add_argument("--fetch-bytes-per-s", help="e.g. 50MB")
    put.add_argument("--requests-per-s", help="requests a second, e.g. 200")
    put.add_argument("--storage-bytes", help="committed segment bytes the org's topics may hold, e.g. 100GB")
    put.add_argument("--partitions", type=int, help="partitions the org's topics may have in all, e.g. 200")
    listing = verbs.add_parser("list", parents=[where], help="every organisation's stored quotas")
    add_format_options(listing)


def _rate(text: str | None, flag: str) -> float | None:
    return None if text is None else parse_rate(text, flag)


def _size(text: str | None) -> int | None:
    return None if text is None else round(parse_rate(text, "--storage-bytes"))


def run(args: argparse.Namespace, url: str) -> int:
    async def go() -> list[OrgQuota]:
        store = await open_metadata_store(url)
        try:
            if args.quota_command == "set":
                await store.quota_set(
                    OrgQuota(
                        args.org,
                        _rate(args.produce_bytes_per_s, "--produce-bytes-per-s"),
                        _rate(args.fetch_bytes_per_s, "--fetch-bytes-per-s"),
                        _rate(args.requests_per_s, "--requests-per-s"),
                        _size(args.storage_bytes),
                        args.partitions,
                    )
                )
                row = await store.quota_get(args.org)
                return [] if row is None else [row]
            return await store.quota_list()
        finally:
            await store.close()

    rows = asyncio.run(go())
    if args.quota_command == "set":
        print(f"quota of {args.org} set: {_describe(rows[0])}")
        return 0

    def col(values: list[float | None] | list[int | None]) -> list[str]:
        return ["default" if v is None else f"{v:.10g}" for v in values]

    write_rows(
        {
            "org": [q.org for q in rows],
            "produce_bytes_per_s": col([q.produce_bytes_per_s for q in rows]),
            "fetch_bytes_per_s": col([q.fetch_bytes_per_s for q in rows]),
            "requests_per_s": col([q.requests_per_s for q in rows]),
            "storage_bytes": col([q.storage_bytes for q in rows]),
            "partitions": col([q.partitions for q in rows]),
        },
        args.format,
    )
    return 0


def _describe(q: OrgQuota) -> str:
    names = ("produce bytes/s", "fetch bytes/s", "requests/s", "storage bytes", "partitions")
    values = (*q.rates(), *q.sizes())
    return ", ".join(f"{n} {'default' if v is None else f'{v:.10g}'}" for n, v in zip(names, values, strict=True))
