"""The agent's HTTP face: liveness, readiness and Prometheus metrics on a tiny asyncio server.

Stdlib only (no aiohttp): three GET/HEAD routes do not justify a web framework dependency.
Every response carries Content-Length and `Connection: close`, one request per connection,
which keeps the parser trivial and is all that probes and scrapers need.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

log = logging.getLogger(__name__)

Response = tuple[int, str, bytes, tuple[tuple[str, str], ...]]
JSON = "application/json"


def _json(status: int, body: dict[str, str]) -> Response:
    return status, JSON, json.dumps(body, separators=(",", ":")).encode(), ()


class HealthServer:
    """GET/HEAD /health/live, /health/ready and /metrics; port 0 picks a free port (see `.port`)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: Callable[[], Awaitable[tuple[bool, str]]],
        metrics: Callable[[], tuple[bytes, str] | Awaitable[tuple[bytes, str]]],
        ready_timeout_s: float = 2.0,
        read_timeout_s: float = 5.0,
        max_header_bytes: int = 16 * 1024,
    ) -> None:
        self.host = host
        self.port = port
        self._ready = ready
        self._metrics = metrics
        self._ready_timeout_s = ready_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_header_bytes = max_header_bytes
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen; afterwards `.port` is the bound port (the real one when 0 was asked)."""
        # The StreamReader limit bounds the request head: readuntil fails past it instead of buffering.
        self._server = await asyncio.start_server(self._handle, self.host, self.port, limit=self._max_header_bytes)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening and drop open connections; safe to call twice."""
        if self._server is None:
            return
        self._server.close()
        # Python 3.11's wait_closed does not wait for open connections, so end them ourselves.
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        try:
            head_only, response = await self._respond(reader)
            if response is not None:
                await self._send(writer, response, head_only)
        except (ConnectionError, TimeoutError) as e:
            log.debug("health server: client went away: %r", e)
        except Exception:
            # A broken client or handler must only ever cost its own connection.
            log.exception("health server: connection failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[bool, Response | None]:
        """Read one request head and route it; (head_only, None) means close without answering."""
        try:
            raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self._read_timeout_s)
        except TimeoutError:
            return False, _json(408, {"status": "request timeout"})
        except asyncio.LimitOverrunError:
            return False, _json(431, {"status": "request header too large"})
        except asyncio.IncompleteReadError as e:
            # EOF mid-head: a silent probe connection gets silence, a truncated request gets 400.
            return False, (_json(400, {"status": "bad request"}) if e.partial else None)
        try:
            lines = raw.decode("ascii").split("\r\n")
            method, target, version = lines[0].split(" ")
        except (UnicodeDecodeError, ValueError):
            return False, _json(400, {"status": "bad request"})
        if not method.isalpha() or not target.startswith("/") or not version.startswith("HTTP/1."):
            return False, _json(400, {"status": "bad request"})
        if any(line and ":" not in line for line in lines[1:]):
            return False, _json(400, {"status": "bad request"})
        path = target.split("?", 1)[0]
        routes = {"/health/live": self._live, "/health/ready": self._readiness, "/metrics": self._render_metrics}
        route = routes.get(path)
        if route is None:
            return False, _json(404, {"status": "not found"})
        if method not in ("GET", "HEAD"):
            status, ctype, body, _ = _json(405, {"status": "method not allowed"})
            return False, (status, ctype, body, (("Allow", "GET, HEAD"),))
        try:
            return method == "HEAD", await route()
        except Exception:
            log.exception("health server: %s failed", path)
            return method == "HEAD", _json(500, {"status": "internal error"})

    async def _live(self) -> Response:
        return _json(200, {"status": "live"})

    async def _readiness(self) -> Response:
        try:
            ok, reason = await asyncio.wait_for(self._ready(), self._ready_timeout_s)
        except TimeoutError:
            ok, reason = False, f"readiness check timed out after {self._ready_timeout_s:g}s"
        except Exception as e:
            ok, reason = False, f"readiness check failed: {type(e).__name__}: {e}"
        if ok:
            return _json(200, {"status": "ready"})
        return _json(503, {"status": "not ready", "reason": reason})

    async def _render_metrics(self) -> Response:
        rendered = self._metrics()
        # An async callback may first refresh what it reports (the agent reads its job status).
        body, ctype = await rendered if inspect.isawaitable(rendered) else rendered
        return 200, ctype, body, ()

    async def _send(self, writer: asyncio.StreamWriter, response: Response, head_only: bool) -> None:
        status, ctype, body, extra = response
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body))), ("Connection", "close"), *extra]
        head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        writer.write(head.encode("latin-1") + (b"" if head_only else body))
        # A client that never reads must not pin the connection forever.
        await asyncio.wait_for(writer.drain(), self._read_timeout_s)
