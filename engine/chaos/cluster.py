"""The cluster under test, on one machine and on loopback only: a durable PostgreSQL, SeaweedFS
behind a TCP fault proxy (fault proxy → S3), and three agents (`streamhouse serve` children)
with fixed gRPC and Kafka ports so a restarted agent comes back where clients look for it.

Each agent has a clock-offset file (storage/clock.py STREAMHOUSE_CLOCK_OFFSET_FILE) for the
clock-step fault, and the last agent's WAL directory is a small tmpfs mounted here for the
disk-full fault (when the kernel refuses the mount, e.g. without CAP_SYS_ADMIN, that fault
kind is unavailable and the run says so).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from streamhouse.chaos.proxy import FaultProxy
from streamhouse.devservices.agent import AgentProcess, start_agent
from streamhouse.devservices.ports import free_port
from streamhouse.devservices.postgres import PostgresServer
from streamhouse.devservices.seaweedfs import Weed, credentials_env, s3_client, start_seaweedfs
from streamhouse.storage.errors import StreamHouseError

log = logging.getLogger(__name__)
LEASE_TTL_MS = 2000
RENEW_MS = 500
WAL_TMPFS_BYTES = 64 * 1024 * 1024
AGENT_NAMES = ("a", "b", "c")
START_ATTEMPTS = 5
# A restart replays the WAL and hands records of a taken-over leadership to the live leader
# (acks=durable) before it listens: on a loaded machine that takes more than a minute, and a
# start cut short only starts that work over.
START_TIMEOUT_S = 180.0


class ChaosAgent:
    """One agent's fixed place (ports, data, WAL, clock file) and its current process."""

    def __init__(self, name: str, work: Path) -> None:
        self.name = name
        self.grpc_port = free_port()
        self.kafka_port = free_port()
        self.http_port = free_port()  # REST (and health); loopback, like every port here
        self.data_dir = work / name
        self.wal_dir = work / f"{name}-wal"
        self.clock_file = work / f"{name}.clock"
        self.log_path = work / f"{name}.log"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.wal_dir.mkdir(parents=True, exist_ok=True)
        self.clock_file.write_text("0")
        self.process: AgentProcess | None = None
        self.paused = False
        self.starts = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def kafka_address(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.proc.poll() is None


class Cluster:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.bucket = f"chaos-{uuid.uuid4().hex[:8]}"
        self.pg: PostgresServer | None = None
        self.weed: Weed | None = None
        self.proxy: FaultProxy | None = None
        self.agents = {name: ChaosAgent(name, work) for name in AGENT_NAMES}
        self.tmpfs: Path | None = None
        self.tmpfs_refused = ""
        self.dsn = ""

    # -- start and stop --------------------------------------------------------------------------
    def start(self) -> None:
        # Durable PostgreSQL: the throwaway default (fsync, synchronous_commit off) forgets its
        # last commits on an immediate restart, which is PostgreSQL's loss, not ours.
        self.pg = PostgresServer(fast_unsafe=False)
        self.dsn = self.pg.start()
        (self.work / "weed").mkdir(exist_ok=True)
        self.weed = start_seaweedfs(self.work / "weed")
        s3_client(self.weed.server).create_bucket(Bucket=self.bucket)
        port = int(self.weed.server.endpoint.rsplit(":", 1)[1])
        self.proxy = FaultProxy("127.0.0.1", port)
        self._mount_wal_tmpfs(self.agents[AGENT_NAMES[-1]])
        for agent in self.agents.values():
            self.start_agent(agent)

    def _mount_wal_tmpfs(self, agent: ChaosAgent) -> None:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={WAL_TMPFS_BYTES}", "tmpfs", str(agent.wal_dir)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode == 0:
            self.tmpfs = agent.wal_dir
        else:
            self.tmpfs_refused = (done.stderr or done.stdout).strip() or f"mount exited {done.returncode}"

    def agent_flags(self, agent: ChaosAgent) -> list[str]:
        assert self.proxy is not None
        return [
            *(
                "--port",
                str(agent.grpc_port),
                "--kafka-port",
                str(agent.kafka_port),
                "--http-port",
                str(agent.http_port),
            ),
            *("--data-dir", str(agent.data_dir), "--wal-dir", str(agent.wal_dir)),
            *("--metadata", self.dsn, "--object-store", f"s3://{self.bucket}/run"),
            *("--s3-endpoint", f"http://{self.proxy.address}", "--agent-id", f"chaos-{agent.name}"),
            *("--lease-ttl-ms", str(LEASE_TTL_MS), "--renew-interval-ms", str(RENEW_MS)),
            *("--durable-flush-ms", "50", "--snapshot-interval-ms", "0"),
        ]

    def start_agent(self, agent: ChaosAgent) -> int:
        """Start (or restart) an agent at its place; returns the attempts it took. A start can
        fail while PostgreSQL or S3 is down; a supervisor would start it again, and so does
        this, a bounded number of times."""
        assert self.weed is not None
        env = {**credentials_env(self.weed.server), "STREAMHOUSE_CLOCK_OFFSET_FILE": str(agent.clock_file)}
        last: Exception | None = None
        for attempt in range(START_ATTEMPTS):
            try:
                flags = self.agent_flags(agent)
                agent.process = start_agent(flags, env=env, log_path=agent.log_path, timeout_s=START_TIMEOUT_S)
                agent.starts += 1
                agent.paused = False
                return attempt + 1
            except StreamHouseError as exc:
                last = exc
                time.sleep(0.5 * (attempt + 1))
        raise StreamHouseError(f"agent {agent.name} did not start in {START_ATTEMPTS} attempts: {last}")

    def addresses(self) -> list[str]:
        return [a.address for a in self.agents.values()]

    def http_urls(self) -> list[str]:
        return [a.http_url for a in self.agents.values()]

    def kafka_bootstrap(self) -> str:
        return ",".join(a.kafka_address for a in self.agents.values())

    def heal(self) -> None:
        """Undo every fault: proxy passes, clocks true, paused agents resumed, dead ones started."""
        if self.proxy is not None:
            self.proxy.set("pass")
        for agent in self.agents.values():
            agent.clock_file.write_text("0")
            if agent.paused and agent.process is not None:
                agent.process.proc.send_signal(signal.SIGCONT)
                agent.paused = False
            if not agent.running:
                self.start_agent(agent)

    def close(self) -> None:
        for agent in self.agents.values():
            if agent.process is not None:
                with contextlib.suppress(Exception):
                    if agent.paused:
                        agent.process.proc.send_signal(signal.SIGCONT)
                    agent.process.stop(10)
        if self.tmpfs is not None:
            subprocess.run(["umount", "-l", str(self.tmpfs)], capture_output=True, check=False)
        if self.proxy is not None:
            self.proxy.close()
        if self.weed is not None:
            self.weed.stop()
        if self.pg is not None:
            self.pg.stop()

    # -- faults ----------------------------------------------------------------------------------
    def kill(self, agent: ChaosAgent) -> None:
        if agent.process is not None:
            if agent.paused:
                agent.process.proc.send_signal(signal.SIGCONT)
            agent.process.kill()
            agent.paused = False

    def pause(self, agent: ChaosAgent) -> None:
        if agent.running and agent.process is not None:
            agent.process.proc.send_signal(signal.SIGSTOP)
            agent.paused = True

    def resume(self, agent: ChaosAgent) -> None:
        if agent.process is not None and agent.paused:
            agent.process.proc.send_signal(signal.SIGCONT)
            agent.paused = False

    def restart_postgres(self) -> None:
        """`pg_ctl restart -m immediate`: every connection cut, recovery from PostgreSQL's WAL."""
        from streamhouse.devservices.postgres import _run

        pg = self.pg
        assert pg is not None
        restart = [pg.pg_ctl, "-D", str(pg.data), "-l", str(pg.log), "-m", "immediate", "-w", "restart"]
        _run(restart, "pg_ctl restart", pg.account, pg.log)

    def fill_disk(self) -> Path | None:
        """Fill the tmpfs WAL disk with a ballast file (ENOSPC for the agent's next WAL write)."""
        if self.tmpfs is None:
            return None
        ballast = self.tmpfs / "ballast"
        # Unbuffered, so ENOSPC comes from a write inside the loop, not from a flush at close.
        with contextlib.suppress(OSError), open(ballast, "wb", buffering=0) as f:
            for size in (1 << 20, 4096, 512):
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * size)
        return ballast

    def free_disk(self, ballast: Path | None) -> None:
        if ballast is not None:
            with contextlib.suppress(OSError):
                os.unlink(ballast)

    def wipe_disk(self, agent: ChaosAgent) -> None:
        """A lost disk: everything under the (killed) agent's data and WAL directories is gone.
        The directories themselves stay: the WAL's may be a tmpfs mount point."""
        assert not agent.running, "wipe a killed agent's disk only"
        for directory in (agent.data_dir, agent.wal_dir):
            for child in directory.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()

    def step_clock(self, agent: ChaosAgent, offset_ms: int) -> None:
        agent.clock_file.write_text(str(offset_ms))
