"""The HTTP face as an application (engine/server/http/): its OpenAPI document, keep-alive,
request body limits, that it lives in the caller's loop without threads or signal handlers of
its own, and the same face on a real agent process."""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import signal
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from fastapi import Request

from streamhouse.agent.metrics import AgentMetrics
from streamhouse.server.http.server import HttpServer
from tests.agent_process import AgentLauncher, wait_until

LIMIT = 1024


async def always_ready() -> tuple[bool, str]:
    return True, ""


@pytest.fixture
async def server() -> AsyncIterator[HttpServer]:
    srv = HttpServer(
        "127.0.0.1", 0, ready=always_ready, metrics=AgentMetrics().render, read_timeout_s=0.5, max_body_bytes=LIMIT
    )

    # A route that reads its body, as REST produce will: the limit must hold for it.
    @srv.app.post("/test/echo")
    async def echo(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def fetch(port: int, path: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, {k.lower(): v for k, v in reply.headers.items()}, reply.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


async def test_openapi_document_lists_health_and_metrics(server: HttpServer) -> None:
    status, headers, body = await asyncio.to_thread(fetch, server.port, "/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    doc = json.loads(body)
    assert doc["openapi"].startswith("3.")
    for path in ("/health/live", "/health/ready", "/metrics"):
        assert set(doc["paths"][path]) == {"get"}, path  # HEAD is served but not listed twice
    ready = doc["paths"]["/health/ready"]["get"]["responses"]
    assert ready["503"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/NotReady"
    assert set(doc["components"]["schemas"]["ErrorBody"]["required"]) == {"status", "code", "message"}
    # The interactive pages need a CDN: off, and say so with a plain 404.
    for page in ("/docs", "/redoc"):
        assert (await asyncio.to_thread(fetch, server.port, page))[0] == 404


async def test_connections_are_kept_alive(server: HttpServer) -> None:
    def three_on_one_connection() -> list[tuple[int, bytes]]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            out = []
            for path in ("/health/live", "/metrics", "/health/ready"):
                conn.request("GET", path)
                reply = conn.getresponse()
                out.append((reply.status, reply.read()))
                assert not reply.will_close
            assert conn.sock is not None
            return out
        finally:
            conn.close()

    replies = await asyncio.to_thread(three_on_one_connection)
    assert [status for status, _ in replies] == [200, 200, 200]
    assert json.loads(replies[2][1]) == {"status": "ready"}


async def test_body_over_the_limit_is_413(server: HttpServer) -> None:
    status, _, body = await asyncio.to_thread(fetch, server.port, "/test/echo", "POST", b"x" * LIMIT)
    assert (status, json.loads(body)) == (200, {"bytes": LIMIT})

    # Declared too large: refused before a byte of the body is read.
    status, headers, body = await asyncio.to_thread(fetch, server.port, "/test/echo", "POST", b"x" * (LIMIT + 1))
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body)["code"] == "request_too_large"


async def test_chunked_body_over_the_limit_is_413(server: HttpServer) -> None:
    """No Content-Length to refuse up front: the read that crosses the limit fails."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"y" * 600
        for _ in range(2):
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert json.loads(body)["code"] == "request_too_large"


async def test_a_body_that_stops_arriving_is_cut(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"POST /test/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten..")
    await writer.drain()
    # The read timeout is 0.5 s: the route waiting for the rest sees the client gone, and the
    # connection is closed rather than held.
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()
    assert (await asyncio.to_thread(fetch, server.port, "/health/live"))[0] == 200


async def test_runs_in_the_callers_loop_without_threads_or_signal_handlers() -> None:
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = threading.active_count()
    srv = HttpServer("127.0.0.1", 0, ready=always_ready, metrics=AgentMetrics().render)
    await srv.start()
    try:
        # Served by this loop: a blocking client would hang here, so ask from a coroutine.
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(), 5)).endswith(b'{"status":"live"}')
        writer.close()
        assert threading.active_count() == threads
        assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    finally:
        await srv.stop()
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers
    await srv.stop()  # twice is fine


async def test_a_taken_port_fails_start_with_oserror() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        srv = HttpServer("127.0.0.1", port, ready=always_ready, metrics=AgentMetrics().render)
        with pytest.raises(OSError):
            await srv.start()
        await srv.stop()  # nothing started: a no-op


async def test_localhost_listens_on_every_loopback_address_on_one_port() -> None:
    """As asyncio.start_server did for the old server: each address the host resolves to, and
    nothing beyond them (the agent's default host is 127.0.0.1: loopback unless told)."""
    srv = HttpServer("localhost", 0, ready=always_ready, metrics=AgentMetrics().render)
    await srv.start()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo("localhost", srv.port, type=socket.SOCK_STREAM)}
        assert addresses and all(ipaddress.ip_address(a).is_loopback for a in addresses)
        for address in addresses:
            reader, writer = await asyncio.open_connection(address, srv.port)
            writer.write(b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200 "), address
            writer.close()
    finally:
        await srv.stop()


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[AgentLauncher]:
    with AgentLauncher(tmp_path) as launcher:
        yield launcher


def test_a_real_agent_serves_the_face(agents: AgentLauncher, tmp_path: Path) -> None:
    """The port printed in the ready line (what devservices and tests read) is the bound one,
    and the agent's readiness, metrics and OpenAPI document are behind it."""
    agent = agents.start("--data-dir", str(tmp_path / "data"), http_port=0)
    assert agent.http_port is not None and agent.http_port > 0
    port = agent.http_port
    assert fetch(port, "/health/live")[0] == 200
    wait_until(lambda: fetch(port, "/health/ready")[0] == 200, what="agent ready")
    assert json.loads(fetch(port, "/health/ready")[2]) == {"status": "ready"}
    status, headers, body = fetch(port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert b"streamhouse_led_partitions" in body
    assert fetch(port, "/health/live", "HEAD")[2] == b""
    doc = json.loads(fetch(port, "/openapi.json")[2])
    assert {"/health/live", "/health/ready", "/metrics"} <= set(doc["paths"])
    status, headers, body = fetch(port, "/nope", "DELETE")
    assert status == 404 and json.loads(body)["code"] == "not_found"
    status, headers, body = fetch(port, "/metrics", "POST", b"{}")
    assert (status, headers["allow"], json.loads(body)["code"]) == (405, "GET, HEAD", "method_not_allowed")
    assert agent.stop() == 0  # the HTTP face stops with the agent, cleanly
