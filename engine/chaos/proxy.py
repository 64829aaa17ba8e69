"""A TCP fault proxy on loopback (asyncio, on its own thread): agents reach SeaweedFS's S3 port
through it, and the harness switches what it does to the traffic:

- `pass`: forward both ways.
- `drop`: S3 unreachable: bytes are swallowed both ways (connections stay open and hang, as
  behind a dead route); new connections are accepted and hang too.
- `delay`: S3 slow: every chunk waits `delay_s` before it is forwarded.
- `reset`: every open connection is reset (RST, SO_LINGER 0) and new ones are reset at once.

Switching back to `pass` leaves hung connections hung (clients time out, as they would after
a real outage); new ones work at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Literal

Mode = Literal["pass", "drop", "delay", "reset"]
_CHUNK = 65536


class FaultProxy:
    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "pass"
        self.delay_s = 0.0
        self.port = 0
        self.connections = 0
        self._writers: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True, name="chaos-proxy")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy did not start")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, mode: Mode, delay_s: float = 0.0) -> None:
        """Switch the proxy (thread-safe); `reset` also resets every open connection now."""
        self._loop.call_soon_threadsafe(self._switch, mode, delay_s)

    def close(self) -> None:
        def stop() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                _reset(writer)
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)

    def _switch(self, mode: Mode, delay_s: float) -> None:
        self.mode, self.delay_s = mode, delay_s
        if mode == "reset":
            for writer in list(self._writers):
                _reset(writer)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        ready.set()
        self._loop.run_forever()

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if self.mode == "reset":
            _reset(writer)
            return
        self._writers.add(writer)
        up_writer: asyncio.StreamWriter | None = None
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            self._writers.add(up_writer)
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            for w in (writer, up_writer):
                if w is not None:
                    self._writers.discard(w)
                    with contextlib.suppress(Exception):
                        w.close()

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(_CHUNK):
                if self.mode == "drop":
                    continue  # swallowed: the peer waits for an answer that never comes
                if self.mode == "delay" and self.delay_s > 0:
                    await asyncio.sleep(self.delay_s)
                sink.write(data)
                await sink.drain()
        finally:
            with contextlib.suppress(Exception):
                sink.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with an RST, not a FIN: the peer sees ECONNRESET, as from a crashed server."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(Exception):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()
