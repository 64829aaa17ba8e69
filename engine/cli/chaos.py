"""`streamhouse chaos`: a fault-injection run on one machine (issue 19). Three agents on a
durable PostgreSQL and SeaweedFS (behind a TCP fault proxy), producers in every ack mode,
an idempotent Kafka producer, a consumer group and SQL reads, under a seeded plan of kill -9,
pauses past the lease, PostgreSQL immediate restarts, S3 outages (drop, delay, reset), a full
WAL disk and clock steps; then a checker over the whole history. Exits 1 on any finding."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from streamhouse.storage.errors import InvalidInputError

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """`90`, `90s`, `3m`, `2h` or `1h30m` → seconds."""
    parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?", text.strip())
    if not text.strip() or parts is None:
        raise InvalidInputError(f"--duration must look like 90s, 3m or 2h, not {text!r}")
    hours, minutes, seconds = (float(g) if g else 0.0 for g in parts.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise InvalidInputError(f"--duration must be positive, not {text!r}")
    return total


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from streamhouse.chaos.faults import KINDS

    p = commands.add_parser("chaos", help="fault-injection run with a history checker", description=__doc__)
    p.add_argument("--duration", default="3m", help="how long faults are injected: 90s, 3m, 2h (default 3m)")
    p.add_argument("--seed", type=int, default=1, help="seed of the fault plan; the same seed replays it (default 1)")
    p.add_argument(
        "--faults",
        default=",".join(KINDS),
        help=f"comma-separated fault kinds (default all: {','.join(KINDS)})",
    )
    p.add_argument("--consumers", type=int, default=2, help="Kafka group members (default 2)")
    p.add_argument(
        "--gap",
        type=float,
        default=1.0,
        help="least quiet seconds between faults (default 1; 0.3 makes a long run's cycles cheaper, holds unchanged)",
    )
    p.add_argument(
        "--background-restarts",
        action="store_true",
        help="restart a kill -9'd agent beside the next faults instead of before them (cheaper cycles)",
    )
    p.add_argument("--dir", help="working directory (default: a temp dir, removed unless --keep)")
    p.add_argument("--keep", action="store_true", help="keep the working directory (agent logs, WALs)")
    p.add_argument("--history", help="write the whole history here (JSON lines) for `--check`")
    p.add_argument("--check", metavar="HISTORY", help="only check a saved history file; start nothing")


def run(args: argparse.Namespace) -> int:
    from streamhouse.chaos.checker import check, render
    from streamhouse.chaos.faults import KINDS
    from streamhouse.chaos.history import History
    from streamhouse.chaos.run import ChaosOptions, main_exit, run_chaos

    if args.check:
        history = History.load(Path(args.check))
        verdict = check(history)
        print(f"operations: {len(history.ops)} {verdict.counts}")
        print(render(verdict, history))
        return 0 if verdict.ok else 1
    kinds = tuple(k.strip() for k in args.faults.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise InvalidInputError(f"--faults: unknown kind(s) {', '.join(unknown)}; known: {', '.join(KINDS)}")
    if args.consumers < 1:
        raise InvalidInputError(f"--consumers must be at least 1, not {args.consumers}")
    if not 0.05 <= args.gap <= 60:
        raise InvalidInputError(f"--gap must be between 0.05 and 60 seconds, not {args.gap:g}")
    options = ChaosOptions(
        duration_s=parse_duration(args.duration),
        seed=args.seed,
        kinds=kinds,
        consumers=args.consumers,
        gap_s=args.gap,
        background_restarts=args.background_restarts,
        workdir=Path(args.dir) if args.dir else None,
        keep=args.keep,
        history_path=Path(args.history) if args.history else None,
    )
    return main_exit(run_chaos(options))
