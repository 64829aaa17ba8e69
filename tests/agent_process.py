"""Run `streamhouse serve` as a real subprocess for integration tests, and keep score of
what producers were told.

`AgentProcess` is one agent: started with given flags and environment, considered up once it
prints its ready line (`streamhouse agent listening grpc=HOST:PORT http=PORT`), and controlled
by signals exactly as an operator (or the kernel) would: SIGTERM for a graceful stop, SIGKILL for
a crash, SIGSTOP/SIGCONT for a process that freezes (GC pause, VM migration) and comes back.

`AgentLauncher` starts agents for one test and always kills whatever is still running when the
test ends, passed or failed, so no agent outlives its test and holds ports, WAL locks or leases.
Each agent's stdout and stderr go to a log file in the test's tmp_path; the launcher prints
the tail of every log at teardown, which pytest shows only for failing tests.

`Producer` threads send unique payloads and record every acknowledgement in a `Ledger`;
`read_log` and `check_ledger` then hold the agents to it: each acknowledged record exactly at
its acknowledged position, nothing twice, nothing nobody sent, offsets dense.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, TypeVar

import streamhouse
from streamhouse.client.client import Client
from streamhouse.devservices.ports import free_port
from streamhouse.storage.errors import StreamHouseError

T = TypeVar("T")
Acks = Literal["leader", "durable", "none"]

READY_RE = re.compile(r"streamhouse agent listening grpc=(?P<grpc>\S+) http=(?P<http>\S+)")
# A cold start imports pyarrow, grpc and the stores (~1 s here); CI machines can be slower.
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
LOG_TAIL_LINES = 40


class AgentStartError(RuntimeError):
    """The agent exited or stayed silent instead of printing its ready line."""


class AgentProcess:
    """One `streamhouse serve` child process. Use `AgentLauncher.start`, which cleans up."""

    def __init__(
        self,
        name: str,
        flags: Sequence[str],
        *,
        cwd: Path,
        log_path: Path,
        env: Mapping[str, str] | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        self.name = name
        self.flags = list(flags)
        self.log_path = log_path
        self.address = ""
        self.http_port: int | None = None
        self._paused = False
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMHOUSE_")}
        # The agent must be configured by this test alone, never by the developer's shell.
        child_env.update(env or {})
        child_env["PYTHONUNBUFFERED"] = "1"
        self._log: IO[str] = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 - closed in _reap
        self._log.write(f"=== {name}: streamhouse serve {' '.join(self.flags)}\n")
        self._log.flush()
        self._log_lock = threading.Lock()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamhouse.cli", "serve", *self.flags],
            cwd=cwd,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            # stderr (the log) goes straight to the file: nothing to drain, a chatty agent can
            # never block on a full pipe.
            stderr=self._log,
            text=True,
        )
        self._ready = threading.Event()
        # stdout is drained for the whole life of the process by this thread (the ready line
        # first, then anything else), so the agent never blocks writing to it either.
        self._reader = threading.Thread(target=self._drain_stdout, name=f"{name}-stdout", daemon=True)
        self._reader.start()
        try:
            self._wait_ready(start_timeout_s)
        except BaseException:
            self.kill()
            raise

    # -- startup --------------------------------------------------------------------------------
    def _drain_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._log_lock:
                if not self._log.closed:
                    self._log.write(f"[stdout] {line}")
                    self._log.flush()
            match = READY_RE.search(line)
            if match and not self._ready.is_set():
                self.address = match["grpc"]
                self.http_port = None if match["http"] == "-" else int(match["http"])
                self._ready.set()

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None:
                self._reader.join(1)  # the ready line may still sit in the pipe
                if self._ready.is_set():
                    break
                raise AgentStartError(
                    f"agent {self.name} exited with {self.proc.returncode} before it was ready:\n{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise AgentStartError(f"agent {self.name} not ready after {timeout_s:g}s:\n{self.log_tail()}")

    # -- control --------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> int:
        """SIGKILL (a crash: no flush, no lease release) and reap; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self._reap(STOP_TIMEOUT_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (graceful: drain, flush, release leases) and wait; returns the exit status.
        A paused agent is resumed first, since a stopped process cannot handle the signal."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self._paused:
                self.resume()
        return self._reap(timeout_s)

    def pause(self) -> None:
        """SIGSTOP: the process freezes mid-whatever, its sockets stay open."""
        self.proc.send_signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT after pause()."""
        self.proc.send_signal(signal.SIGCONT)
        self._paused = False

    def _reap(self, timeout_s: float) -> int:
        try:
            code = self.proc.wait(timeout_s)
        finally:
            self._reader.join(5)
            with self._log_lock:
                self._log.close()
            if not self._reader.is_alive() and self.proc.stdout is not None:
                self.proc.stdout.close()
        return code

    def cleanup(self) -> None:
        """Whatever state the test left it in: make sure the process is gone."""
        if self.proc.poll() is None:
            if self._paused:
                self.resume()
            self.kill()
        else:
            self._reap(1)

    # -- diagnostics ----------------------------------------------------------------------------
    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<AgentProcess {self.name} pid={self.pid} grpc={self.address} http={self.http_port}>"


class AgentLauncher:
    """Starts agents for one test; `close()` (the fixture's teardown) kills every one still up."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.agents: list[AgentProcess] = []
        self._counts: dict[str, int] = {}

    def start(
        self,
        *flags: str,
        name: str = "agent",
        env: Mapping[str, str] | None = None,
        port: int = 0,
        http_port: int = -1,
        kafka_port: int = 0,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> AgentProcess:
        """Start `streamhouse serve --port PORT --http-port HTTP_PORT --kafka-port KAFKA_PORT
        FLAGS…` in the test's directory. Ports default to any free gRPC port, no HTTP endpoint
        and no Kafka listener (serve's default 9092 would collide between parallel agents); a
        `--kafka-port` in FLAGS wins, as argparse keeps the last one."""
        n = self._counts[name] = self._counts.get(name, 0) + 1
        log_path = self.workdir / f"{name}.log"
        agent = AgentProcess(
            f"{name}#{n}",
            ["--port", str(port), "--http-port", str(http_port), "--kafka-port", str(kafka_port), *flags],
            cwd=self.workdir,
            log_path=log_path,
            env=env,
            start_timeout_s=start_timeout_s,
        )
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        for agent in self.agents:
            with contextlib.suppress(Exception):
                agent.cleanup()
        # Shown by pytest only when the test failed: the agents' side of the story.
        for path in sorted({a.log_path for a in self.agents}):
            tail = "\n".join(path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:])
            print(f"----- {path.name} (last {LOG_TAIL_LINES} lines) -----\n{tail}")

    def __enter__(self) -> AgentLauncher:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@contextlib.contextmanager
def kafka_agent(
    tmp_path: Path, pg_url: str, s3_url: tuple[str, str], *flags: str
) -> Iterator[tuple[AgentProcess, int]]:
    """One agent on PostgreSQL + S3 with its Kafka listener on a free port: (process, port)."""
    url, endpoint = s3_url
    port = free_port()
    with AgentLauncher(tmp_path) as launcher:
        process = launcher.start(
            *("--data-dir", str(tmp_path / "a"), "--metadata", pg_url, "--object-store", url),
            *("--s3-endpoint", endpoint, *flags),
            kafka_port=port,
        )
        yield process, port


def wait_until(
    check: Callable[[], T], *, timeout_s: float = 15.0, interval_s: float = 0.05, what: str = "condition"
) -> T:
    """Poll `check` until it returns something truthy (returned) or the deadline passes
    (AssertionError naming `what` and the last value). Exceptions from `check` count as
    "not yet" until the deadline, then propagate."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = check()
        except Exception:
            if time.monotonic() > deadline:
                raise
        else:
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}; last value {value!r}")
        time.sleep(interval_s)


# -- producers and what they were told -----------------------------------------------------------
@dataclass
class Ledger:
    """What producers were told, shared by producer threads (guarded by `lock`)."""

    acked: dict[bytes, tuple[int, int]] = field(default_factory=dict)  # payload -> (partition, offset)
    attempted: set[bytes] = field(default_factory=set)  # every payload ever sent, acked or not
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, payloads: Sequence[bytes], partition: int, base_offset: int) -> None:
        with self.lock:
            for i, payload in enumerate(payloads):
                assert payload not in self.acked, f"{payload!r} acknowledged twice"
                self.acked[payload] = (partition, base_offset + i)

    def ends(self) -> dict[int, int]:
        """Per partition: one past the highest acknowledged offset."""
        with self.lock:
            out: dict[int, int] = {}
            for p, o in self.acked.values():
                out[p] = max(out.get(p, 0), o + 1)
            return out


class Producer(threading.Thread):
    """Sends unique payloads (`<name>-<n>`) in batches of 1-4 to random partitions until
    `stopping` is set or a produce fails, recording each acknowledgement in the ledger.

    `in_flight` is the batch whose produce call has not returned yet: with retries on, that is
    the one batch an agent crash can make appear twice (written, then the answer lost, then
    retried elsewhere)."""

    def __init__(
        self,
        name: str,
        addresses: str,
        ledger: Ledger,
        *,
        topic: str,
        partitions: int,
        acks: Acks,
        retries: bool,
        timeout_s: float = 30.0,
        retry_for_s: float = 30.0,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self.addresses = addresses
        self.ledger = ledger
        self.topic = topic
        self.partitions = partitions
        self.acks: Acks = acks
        self.retries = retries
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self.stopping = threading.Event()
        self.acked_here = 0
        self.in_flight: tuple[bytes, ...] = ()
        self.failure: StreamHouseError | None = None

    def run(self) -> None:
        rng = random.Random()
        client = streamhouse.connect(
            self.addresses, retries=self.retries, timeout_s=self.timeout_s, retry_for_s=self.retry_for_s
        )
        with client:
            seq = 0
            while not self.stopping.is_set():
                payloads = [f"{self.name}-{seq + i}".encode() for i in range(rng.randint(1, 4))]
                seq += len(payloads)
                partition = rng.randrange(self.partitions)
                with self.ledger.lock:
                    self.ledger.attempted.update(payloads)
                self.in_flight = tuple(payloads)
                try:
                    [result] = client.produce_batch(self.topic, payloads, partition=partition, acks=self.acks)
                except StreamHouseError as exc:
                    # Not acknowledged: it may or may not have been written.
                    self.failure = exc
                    return
                assert (result.partition, result.record_count) == (partition, len(payloads)), result
                self.ledger.ack(payloads, partition, result.base_offset)
                self.in_flight = ()
                self.acked_here += len(payloads)


def read_log(client: Client, topic: str) -> dict[int, list[bytes | None]]:
    """partition -> values in offset order, asserting every partition's offsets are dense from 0."""
    table = client.read(topic)
    partitions = client.describe(topic).info.partitions
    out: dict[int, list[bytes | None]] = {}
    for p in range(partitions):
        rows = table.filter(table.column("partition").to_numpy() == p)
        offsets = rows.column("offset").to_pylist()
        assert offsets == list(range(len(offsets))), f"{topic}/{p}: offsets not dense: {offsets[:50]}…"
        out[p] = rows.column("value").to_pylist()
    return out


def check_ledger(
    log: dict[int, list[bytes | None]], ledger: Ledger, *, may_repeat: frozenset[bytes] = frozenset()
) -> None:
    """Every acknowledged payload exactly at its acknowledged position; no payload twice (except
    `may_repeat`, at most twice); nothing that was never sent."""
    seen: dict[bytes | None, int] = {}
    for values in log.values():
        for v in values:
            seen[v] = seen.get(v, 0) + 1
    twice = {v: n for v, n in seen.items() if n > 1 and not (v in may_repeat and n == 2)}
    assert not twice, f"payloads appear more than once: {dict(list(twice.items())[:10])}"
    strangers = {v for v in seen if v not in ledger.attempted}
    assert not strangers, f"the log holds payloads nobody sent: {sorted(strangers, key=repr)[:10]}"
    lost = []
    for payload, (p, offset) in ledger.acked.items():
        if offset >= len(log[p]) or log[p][offset] != payload:
            lost.append((payload, p, offset, log[p][offset] if offset < len(log[p]) else None))
    assert not lost, f"{len(lost)} acknowledged records missing or moved, e.g. {lost[:5]}"
