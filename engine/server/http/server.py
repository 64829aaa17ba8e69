"""Serving the HTTP face (app.py) with uvicorn inside the agent's own event loop (docs/DESIGN.md §10).

No thread and no process of its own: `uvicorn.Server.serve()` runs as one task of the agent's
loop, like the gRPC and Kafka servers. Three things uvicorn would otherwise do are taken from it:
- Signals: the agent owns SIGINT/SIGTERM (agent_server.serve) and stops everything in order;
  uvicorn's `capture_signals` would replace those handlers and re-raise the signal afterwards.
- Binding: we bind the sockets ourselves, so a taken port is an OSError the agent turns into
  AddressInUseError naming it (uvicorn logs and calls sys.exit), and port 0 is known at once.
- Logging: no dictConfig of uvicorn's (the agent configured logging), no access log (probes and
  scrapers would fill it), uvicorn's own lines only from ERROR (not one per
  malformed request: a broken prober must not fill the agent's log).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Iterator, Sequence

import uvicorn
from fastapi import APIRouter

from streamhouse.api.contract import FrontEnd
from streamhouse.api.tls import ClientTls
from streamhouse.auth import Authenticator
from streamhouse.auth.quota_gate import QuotaGate
from streamhouse.registry.service import RegistryService
from streamhouse.server.http.app import MAX_BODY_BYTES, create_app
from streamhouse.server.http.health import ReadinessCheck
from streamhouse.server.http.metrics import MetricsRenderer
from streamhouse.server.http.protocol import guarded_protocol

_START_TIMEOUT_S = 10.0  # startup is local work only (no lifespan): far more than it ever takes
_STOP_GRACE_S = 2  # in-flight requests (a readiness check is bounded by its own timeout) get this long


class _InLoopServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the agent's handlers stay in place (module docstring)


class HttpServer:
    """GET/HEAD /health/live, /health/ready, /metrics and /openapi.json on `host:port`; port 0
    picks a free port, and after `start()` `.port` is the one bound."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        ready: ReadinessCheck,
        metrics: MetricsRenderer,
        ready_timeout_s: float = 2.0,
        read_timeout_s: float = 5.0,
        max_header_bytes: int = 16 * 1024,
        max_body_bytes: int = MAX_BODY_BYTES,
        front: FrontEnd | None = None,
        routers: Sequence[APIRouter] = (),
        registry: RegistryService | None = None,
        auth: Authenticator | None = None,
        tls: ssl.SSLContext | None = None,
        peer_tls: ClientTls | None = None,
        quotas: QuotaGate | None = None,
    ) -> None:
        """`tls`: serve HTTPS with this server context (engine/api/tls.py); `peer_tls`: how
        REST produce forwarding connects to other agents when the cluster serves TLS."""
        self.host = host
        self.port = port
        # Set first when the agent stops, so long-lived responses (REST's event streams) end cleanly.
        self.stopping = asyncio.Event()
        self.app = create_app(
            ready=ready,
            metrics=metrics,
            ready_timeout_s=ready_timeout_s,
            max_body_bytes=max_body_bytes,
            front=front,
            stopping=self.stopping,
            routers=routers,
            registry=registry,
            auth=auth,
            peer_tls=peer_tls,
            quotas=quotas,
        )
        self._config = uvicorn.Config(
            self.app,
            http=guarded_protocol(read_timeout_s),
            ws="none",
            lifespan="off",
            interface="asgi3",
            log_config=None,
            log_level="error",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            h11_max_incomplete_event_size=max_header_bytes,
            timeout_keep_alive=max(1, round(read_timeout_s)),
            timeout_graceful_shutdown=_STOP_GRACE_S,
        )
        if tls is not None:
            # Our own context (TLS 1.2 floor, mutual TLS), set after load() builds the rest of
            # the config; serve() then loads nothing again (uvicorn's file options would need paths).
            self._config.load()
            self._config.ssl = tls
        self._server: _InLoopServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Bind and serve; raises OSError (the port is taken, the host is not local) before serving."""
        sockets = _bind(self.host, self.port)
        self.port = sockets[0].getsockname()[1]
        server = _InLoopServer(self._config)
        task = asyncio.create_task(server.serve(sockets=sockets), name=f"http {self.host}:{self.port}")
        try:
            async with asyncio.timeout(_START_TIMEOUT_S):
                while not server.started and not task.done():
                    await asyncio.sleep(0.005)
            if not server.started:
                await task  # raises what startup raised
                raise RuntimeError("uvicorn ended before it started serving")
        except BaseException:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            for sock in sockets:
                sock.close()
            raise
        self._server, self._task = server, task

    async def stop(self) -> None:
        """Stop listening, close idle connections, give in-flight requests a short grace; safe twice."""
        if self._server is None or self._task is None:
            return
        server, task = self._server, self._task
        self._server = self._task = None
        self.stopping.set()
        server.should_exit = True
        await task


def _bind(host: str, port: int) -> list[socket.socket]:
    """One listening-ready socket per address `host` resolves to, as asyncio.start_server does
    ("localhost" → 127.0.0.1 and ::1), all on one port even when 0 asked for any."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, str]] = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, str(address[0])) in seen:
                continue
            seen.add((family, str(address[0])))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            # As every server here: a port in TIME_WAIT after a restart is free, a listener is not.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets
