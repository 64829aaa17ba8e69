"""Start `streamhouse serve` as a child process and wait until it listens: for benchmarks,
notebooks and scripts that want a real agent on loopback without managing one by hand."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from streamhouse.storage.errors import StreamHouseError

READY = re.compile(r"streamhouse agent listening grpc=(\S+) http=(\S+)")
START_TIMEOUT_S = 60.0


class AgentProcess:
    """A running agent child. Its stderr goes to `log_path` (or is discarded)."""

    def __init__(self, proc: subprocess.Popen[str], address: str, http_port: int | None, log_path: Path | None) -> None:
        self.proc = proc
        self.address = address
        self.http_port = http_port
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout_s: float = 30.0) -> int:
        """Graceful: SIGTERM (the agent flushes and releases its leases), then wait."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_agent(
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout_s: float = START_TIMEOUT_S,
) -> AgentProcess:
    """`streamhouse serve --port 0 --http-port 0 --kafka-port 0 <args>` in a child; returns
    once it listens. No Kafka listener unless `args` has a `--kafka-port` (the last one wins):
    serve's default 9092 would collide between agents started side by side."""
    cmd = [sys.executable, "-m", "streamhouse.cli", "serve", "--port", "0", "--http-port", "0", "--kafka-port", "0"]
    cmd += args
    log: IO[str] | int = open(log_path, "a") if log_path is not None else subprocess.DEVNULL  # noqa: SIM115
    try:
        # Its own session: Ctrl-C in a terminal, or "interrupt kernel" in Jupyter, signals the
        # caller's process group, and must not stop the agent with it.
        proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    finally:
        if not isinstance(log, int):
            log.close()
    stdout = proc.stdout
    assert stdout is not None
    found: list[re.Match[str]] = []
    # The ready line may never come (bad flags): read it on a thread so the wait can time out.
    reader = threading.Thread(target=lambda: found.extend(m for m in [_ready_line(stdout)] if m), daemon=True)
    reader.start()
    reader.join(timeout_s)
    if not found:
        proc.kill()
        proc.wait()
        where = f"; see {log_path}" if log_path else ""
        raise StreamHouseError(f"agent did not start within {timeout_s:.0f} s (exit code {proc.returncode}){where}")
    # Keep reading what it prints (a full pipe would block it) and reap it once it exits, so a
    # dead agent never lingers as a zombie child of a notebook kernel that waits for its children.
    threading.Thread(target=_drain_and_reap, args=(proc, stdout), daemon=True).start()
    http = found[0].group(2)
    return AgentProcess(proc, found[0].group(1), int(http) if http.isdigit() else None, log_path)


def _drain_and_reap(proc: subprocess.Popen[str], stream: IO[str]) -> None:
    for _ in stream:
        pass
    proc.wait()


def _ready_line(stream: IO[str]) -> re.Match[str] | None:
    deadline = time.monotonic() + START_TIMEOUT_S
    for line in stream:
        match = READY.search(line)
        if match or time.monotonic() > deadline:
            return match
    return None
