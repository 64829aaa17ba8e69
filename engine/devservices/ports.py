"""A free loopback port for a server about to start (test services, benches, notebooks, chaos).

Ports come from below the kernel's ephemeral range when it leaves room there. A port the kernel
hands out for `bind(0)` is one it also hands out as the local port of outgoing connections: a
server that picks one early (the chaos cluster picks its agents' ports before PostgreSQL and
SeaweedFS start, and restarts agents on the same ports after a kill) could find it taken by some
other process's client connection, and then fail with "Address already in use" however often it
retries. Below the ephemeral range only an explicit bind can take a port.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LOWEST = 20000  # above the well-known and most registered service ports
MIN_ROOM = 2000  # fewer ports than this below the ephemeral range: use bind(0) instead
PICKS = 200  # random tries below the ephemeral range before falling back to bind(0)

_random = random.SystemRandom()  # not the global generator: tests seed that one


def ephemeral_range(path: Path = EPHEMERAL_RANGE) -> tuple[int, int] | None:
    """The kernel's (first, last) ephemeral port, or None where the system does not say."""
    try:
        first, last = path.read_text().split()
        return int(first), int(last)
    except (OSError, ValueError):
        return None


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, outside the ephemeral range where possible (see above).
    Another process may still bind it first; callers start their server at once, and the
    launchers report a taken port clearly."""
    span = ephemeral_range()
    if span is not None and span[0] - LOWEST >= MIN_ROOM:
        for _ in range(PICKS):
            port = _random.randrange(LOWEST, span[0])
            if _bindable(host, port):
                return port
    with socket.socket() as s:
        s.bind((host, 0))
        found: int = s.getsockname()[1]
    return found
