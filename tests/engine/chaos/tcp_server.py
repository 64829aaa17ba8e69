"""A loopback TCP server for the chaos tests' own peers (an echo behind the fault proxy, an HTTP
peer that cuts its answers off): each accepted connection is handed to `handle` on a thread of
its own, until the socket is closed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable


def tcp_server(handle: Callable[[socket.socket], None]) -> socket.socket:
    """The listening socket (port: `getsockname()[1]`); close it to stop accepting."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    return server
