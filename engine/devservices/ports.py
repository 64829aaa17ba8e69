"""A free loopback port for a server about to start (test services, benches, notebooks)."""

from __future__ import annotations

import socket


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now. Another process may take it before the caller binds it;
    callers start their server at once, and the launchers report a taken port clearly."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
    return port
