"""Mixed-fault run (issue 20): two agents on PostgreSQL + SeaweedFS under kill -9, SIGSTOP past
the lease, PostgreSQL immediate restarts and dropped replies to COMMIT, with producers in both
ack modes; then every acknowledged record is looked for in the final log.

    .venv/bin/python tools/chaos_run.py --seconds 180

Producers use retries=False, so every record is sent once: a record whose produce failed may
appear at most once, an acknowledged one exactly once. The dropped COMMIT replies come from a
TCP proxy between the agents and PostgreSQL that forwards a COMMIT and then cuts the
connection before the answer returns (the transaction is applied; the agent never hears so).
Prints one JSON line of figures; exits 1 if an acknowledged record is lost or repeated, or an
offset is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.agent_process

import streamhouse
from streamhouse.devservices.postgres import PostgresServer, _run
from streamhouse.devservices.seaweedfs import credentials_env, s3_client, start_seaweedfs
from tests.agent_process import AgentLauncher, AgentProcess, AgentStartError

TOPIC = "chaos"
PARTITIONS = 2
TTL_MS = 2000
RENEW_MS = 500
START_RETRIES = [0]  # agent starts that failed on a dropped metadata connection and were retried


class CommitDropper:
    """A TCP proxy to PostgreSQL that, with probability `p`, forwards a client chunk holding a
    COMMIT and then closes both sides without relaying the server's answer."""

    def __init__(self, target_port: int, p: float) -> None:
        self.target_port = target_port
        self.p = p
        self.dropped = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(10)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        cut = asyncio.Event()

        async def upstream() -> None:
            while data := await reader.read(65536):
                up_writer.write(data)
                await up_writer.drain()
                if b"COMMIT" in data.upper() and random.random() < self.p:
                    await asyncio.sleep(0.05)  # let the server apply it
                    self.dropped += 1
                    cut.set()
                    return

        async def downstream() -> None:
            while not cut.is_set() and (data := await up_reader.read(65536)):
                if cut.is_set():
                    return
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        with contextlib.suppress(Exception):
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (writer, up_writer):
            with contextlib.suppress(Exception):
                w.close()


class Producer(threading.Thread):
    def __init__(self, addresses: list[str], acks: str, stop: threading.Event, pause_s: float) -> None:
        super().__init__(daemon=True, name=f"producer-{acks}")
        self.pause_s = pause_s
        self.addresses, self.acks, self.stop = addresses, acks, stop
        self.acked: set[bytes] = set()
        self.attempted: set[bytes] = set()
        self.failures = 0

    def run(self) -> None:
        n = 0
        client = streamhouse.connect(self.addresses, retries=False, timeout_s=5)
        while not self.stop.is_set():
            batch = [f"{self.acks}-{n + i}".encode() for i in range(20)]
            n += len(batch)
            self.attempted.update(batch)
            try:
                client.produce_batch(TOPIC, batch, partition=n % PARTITIONS, acks=self.acks)  # type: ignore[arg-type]
                self.acked.update(batch)
            except Exception:
                self.failures += 1
                time.sleep(0.1)
            time.sleep(self.pause_s)  # a steady load, not a CPU hog on a shared machine
        client.close()


def start_agent(
    launcher: AgentLauncher, work: Path, name: str, flags: list[str], env: dict[str, str], port: int
) -> AgentProcess:
    """Restart an agent on its data dir and port. Its first metadata calls can hit a dropped
    connection and make it exit (as a supervisor would, start it again): up to 5 attempts."""
    for attempt in range(5):
        try:
            return launcher.start("--data-dir", str(work / name), *flags, name=name, env=env, port=port)
        except AgentStartError:
            if attempt == 4:
                raise
            START_RETRIES[0] += 1
            time.sleep(0.5)
    raise AssertionError("unreachable")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--drop-commit", type=float, default=0.02, help="share of COMMIT replies dropped")
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument(
        "--unsafe-pg", action="store_true", help="PostgreSQL with fsync and synchronous_commit off (loses commits)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (agent logs, WALs)")
    parser.add_argument("--pause-ms", type=float, default=5, help="pause between a producer's batches")
    args = parser.parse_args()
    random.seed(args.seed)
    work = Path(tempfile.mkdtemp(prefix="sh-chaos-"))
    # A durable server: the throwaway default (fsync and synchronous_commit off) forgets the
    # last committed transactions on an immediate restart, which is not what is under test.
    pg = PostgresServer(fast_unsafe=args.unsafe_pg)
    dsn = pg.start()
    (work / "weed").mkdir()
    weed = start_seaweedfs(work / "weed")
    env = credentials_env(weed.server)
    admin = s3_client(weed.server)
    bucket = f"chaos-{uuid.uuid4().hex[:8]}"
    admin.create_bucket(Bucket=bucket)
    pg_port = int(dsn.rsplit(":", 1)[1].split("/")[0])
    proxy = CommitDropper(pg_port, args.drop_commit)
    metadata = f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"
    flags = [
        *("--metadata", metadata, "--object-store", f"s3://{bucket}/run", "--s3-endpoint", weed.server.endpoint),
        *("--lease-ttl-ms", str(TTL_MS), "--renew-interval-ms", str(RENEW_MS), "--durable-flush-ms", "50"),
    ]
    faults: dict[str, int] = {"kill9": 0, "sigstop": 0, "pg_restart": 0}
    launcher = AgentLauncher(work)
    try:
        agents: dict[str, AgentProcess] = {
            n: launcher.start("--data-dir", str(work / n), *flags, name=n, env=env) for n in ("a", "b")
        }
        addresses = {n: a.address for n, a in agents.items()}
        with streamhouse.connect(list(addresses.values())) as admin_client:
            admin_client.create_topic(TOPIC, PARTITIONS)
        stop = threading.Event()
        producers = [
            Producer(list(addresses.values()), acks, stop, args.pause_ms / 1000) for acks in ("leader", "durable")
        ]
        for p in producers:
            p.start()
        deadline = time.monotonic() + args.seconds
        while time.monotonic() < deadline:
            time.sleep(random.uniform(3, 6))
            fault = list(faults)[sum(faults.values()) % len(faults)]  # each kind in turn
            name = random.choice(list(agents))
            faults[fault] += 1
            if fault == "kill9":
                agents[name].kill()
                time.sleep(random.uniform(0, 1.5))
                # The same port, so producers' address lists stay valid.
                port = int(addresses[name].rsplit(":", 1)[1])
                agents[name] = start_agent(launcher, work, name, flags, env, port)
            elif fault == "sigstop":
                agents[name].pause()
                time.sleep(TTL_MS / 1000 + random.uniform(0.5, 1.5))
                agents[name].resume()
            else:
                # -l: the new postmaster's output goes to the log, not to the pipe _run waits on.
                restart = [pg.pg_ctl, "-D", str(pg.data), "-l", str(pg.log), "-m", "immediate", "-w", "restart"]
                _run(restart, "pg_ctl restart", pg.account, pg.log)
        stop.set()
        for p in producers:
            p.join(30)
        proxy.p = 0.0
        time.sleep(3 * TTL_MS / 1000)  # held records are handed over within a few renew rounds
        for a in agents.values():
            a.stop()
        final = launcher.start("--data-dir", str(work / "final"), *flags, name="final", env=env)
        with streamhouse.connect(final.address) as client:
            table = client.read(TOPIC)
        launcher.close()
        gaps = 0
        seen: dict[bytes, int] = {}
        for part in range(PARTITIONS):
            rows = table.filter(table.column("partition").to_numpy() == part)
            offsets = rows.column("offset").to_pylist()
            gaps += len(set(range(len(offsets))) ^ set(offsets))
            for v in rows.column("value").to_pylist():
                seen[v] = seen.get(v, 0) + 1
        report: dict[str, object] = {
            "seconds": args.seconds,
            "faults": faults,
            "dropped_commit_replies": proxy.dropped,
            "agent_start_retries": START_RETRIES[0],
        }
        bad = gaps > 0
        for p in producers:
            missing = sorted((v for v in p.acked if v not in seen), key=lambda v: int(v.split(b"-")[1]))
            lost = len(missing)
            dups = sum(1 for v in p.attempted if seen.get(v, 0) > 1)
            report[p.acks] = {
                "acked": len(p.acked),
                "failed_calls": p.failures,
                "lost": lost,
                "duplicates": dups,
                "unacked_present": sum(1 for v in p.attempted - p.acked if v in seen),
                "lost_sample": [v.decode() for v in missing[:3]],
            }
            bad = bad or lost > 0 or dups > 0
        report["gaps"] = gaps
        logs = "".join(path.read_text(errors="replace") for path in work.glob("*.log"))
        report["agent_log"] = {
            "commit_reply_lost_resolved": logs.count("the reply was lost, the segment stands"),
            "reappended_after_takeover": logs.count("were appended again at offsets"),
            "forwarded_to_leader": logs.count("were produced again to the leader"),
        }
        print(json.dumps(report))
        return 1 if bad else 0
    finally:
        launcher.close()
        weed.stop()
        pg.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
