"""The agent's HTTP health/metrics endpoint (FastAPI on uvicorn, engine/server/http/) over real
sockets: routes, readiness, bad clients."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from streamhouse.agent.metrics import AgentMetrics
from streamhouse.server.http.server import HttpServer

READ_TIMEOUT_S = 0.3
READY_TIMEOUT_S = 0.2


@dataclass
class Probe:
    """What the readiness callback does next: answer, raise, or hang past the timeout."""

    ok: bool = True
    reason: str = ""
    mode: str = "answer"

    async def __call__(self) -> tuple[bool, str]:
        if self.mode == "raise":
            raise RuntimeError("metadata store unreachable")
        if self.mode == "hang":
            await asyncio.sleep(60)
        return self.ok, self.reason


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def metrics() -> AgentMetrics:
    return AgentMetrics()


@pytest.fixture
async def server(probe: Probe, metrics: AgentMetrics) -> AsyncIterator[HttpServer]:
    srv = HttpServer(
        "127.0.0.1",
        0,
        ready=probe,
        metrics=metrics.render,
        ready_timeout_s=READY_TIMEOUT_S,
        read_timeout_s=READ_TIMEOUT_S,
    )
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


async def raw(server: HttpServer, data: bytes) -> Reply:
    """Send `data` as-is, read to EOF and parse the response. The server closes after an error
    and when the request asks it to (get() does); otherwise it keeps the connection alive."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status, _ = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in header_lines)}
    assert int(headers["content-length"]) == len(body) or data.startswith(b"HEAD ")
    assert headers["connection"] == "close"
    return Reply(int(status), headers, body)


async def get(server: HttpServer, path: str, method: str = "GET") -> Reply:
    head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\nUser-Agent: test\r\nConnection: close\r\n\r\n"
    return await raw(server, head.encode())


def is_error(reply: Reply, status: int, code: str) -> bool:
    """The one JSON error model (engine/server/http/errors.py), with no stack trace in it."""
    body = json.loads(reply.body)
    return (
        reply.status == status
        and reply.headers["content-type"] == "application/json"
        and set(body) == {"status", "code", "message"}
        and body["code"] == code
        and "Traceback" not in body["message"]
    )


async def test_live(server: HttpServer) -> None:
    reply = await get(server, "/health/live")
    assert reply.status == 200
    assert reply.headers["content-type"] == "application/json"
    assert json.loads(reply.body) == {"status": "live"}


async def test_live_via_urllib(server: HttpServer) -> None:
    def fetch() -> tuple[int, bytes]:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health/live?verbose=1", timeout=5) as r:
            return r.status, r.read()

    status, body = await asyncio.to_thread(fetch)
    assert (status, json.loads(body)) == (200, {"status": "live"})


async def test_ready_follows_the_callback(server: HttpServer, probe: Probe) -> None:
    reply = await get(server, "/health/ready")
    assert (reply.status, json.loads(reply.body)) == (200, {"status": "ready"})

    probe.ok, probe.reason = False, "recovering WAL"
    reply = await get(server, "/health/ready")
    assert (reply.status, json.loads(reply.body)) == (503, {"status": "not ready", "reason": "recovering WAL"})

    probe.ok = True
    assert (await get(server, "/health/ready")).status == 200


async def test_ready_urllib_sees_503(server: HttpServer, probe: Probe) -> None:
    probe.ok, probe.reason = False, "no leases yet"

    def fetch() -> int:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{server.port}/health/ready", timeout=5)
        except urllib.error.HTTPError as e:
            return e.code
        return 200

    assert await asyncio.to_thread(fetch) == 503


async def test_ready_callback_that_raises_is_503(server: HttpServer, probe: Probe) -> None:
    probe.mode = "raise"
    reply = await get(server, "/health/ready")
    assert reply.status == 503
    body = json.loads(reply.body)
    assert body["status"] == "not ready"
    assert "metadata store unreachable" in body["reason"]


async def test_ready_callback_that_hangs_is_503_after_timeout(server: HttpServer, probe: Probe) -> None:
    probe.mode = "hang"
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await get(server, "/health/ready")
    assert loop.time() - started < READY_TIMEOUT_S + 2
    assert reply.status == 503
    assert "timed out" in json.loads(reply.body)["reason"]
    # The hung check did not wedge the server.
    probe.mode = "answer"
    assert (await get(server, "/health/ready")).status == 200


async def test_metrics(server: HttpServer, metrics: AgentMetrics) -> None:
    metrics.observe_produce("orders", "durable", "ok", records=10, nbytes=1000, seconds=0.004)
    metrics.observe_produce("orders", "leader", "fenced", records=5, nbytes=500, seconds=0.001)
    metrics.observe_fetch("orders", records=7, nbytes=700)
    metrics.observe_segment("orders", nbytes=4096)
    metrics.lease_lost()
    metrics.backpressure("orders")
    metrics.set_gauges(led_partitions=3, buffered_bytes=1234, wal_bytes=5678)

    reply = await get(server, "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.body.decode()
    assert 'streamhouse_produce_requests_total{acks="durable",outcome="ok",topic="orders"} 1.0' in text
    assert 'streamhouse_produce_requests_total{acks="leader",outcome="fenced",topic="orders"} 1.0' in text
    # Only successful produces count records and bytes.
    assert 'streamhouse_produce_records_total{topic="orders"} 10.0' in text
    assert 'streamhouse_produce_bytes_total{topic="orders"} 1000.0' in text
    assert 'streamhouse_produce_latency_seconds_bucket{acks="durable",le="0.005"} 1.0' in text
    assert 'streamhouse_fetch_records_total{topic="orders"} 7.0' in text
    assert 'streamhouse_segment_bytes_total{topic="orders"} 4096.0' in text
    assert "streamhouse_led_partitions 3.0" in text
    assert "streamhouse_wal_bytes 5678.0" in text
    assert "streamhouse_lease_lost_total 1.0" in text
    assert 'streamhouse_backpressure_total{topic="orders"} 1.0' in text


def test_each_agent_has_its_own_registry() -> None:
    a, b = AgentMetrics(), AgentMetrics()
    a.lease_lost()
    assert b"streamhouse_lease_lost_total 1.0" in a.render()[0]
    assert b"streamhouse_lease_lost_total 0.0" in b.render()[0]


async def test_head_sends_headers_only(server: HttpServer) -> None:
    reply = await get(server, "/health/live", method="HEAD")
    assert reply.status == 200
    assert reply.body == b""
    assert int(reply.headers["content-length"]) == len(b'{"status":"live"}')


async def test_unknown_path_is_404(server: HttpServer) -> None:
    reply = await get(server, "/nope")
    assert reply.status == 404
    assert is_error(reply, 404, "not_found")
    assert json.loads(reply.body)["message"] == "no route for GET /nope"


async def test_other_methods_are_405(server: HttpServer) -> None:
    reply = await get(server, "/health/live", method="POST")
    assert reply.status == 405
    assert reply.headers["allow"] == "GET, HEAD"
    assert is_error(reply, 405, "method_not_allowed")


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\xff garbage \x13\x37\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /health/live\r\n\r\n",
        b"GET health/live HTTP/1.1\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
        b"GET /health/live HTTP/1.1\r\n\r\n",  # HTTP/1.1 requires Host (RFC 9112 section 3.2)
    ],
)
async def test_malformed_request_is_400(server: HttpServer, data: bytes) -> None:
    reply = await raw(server, data)
    assert reply.status == 400
    assert is_error(reply, 400, "bad_request")


async def test_truncated_request_is_400(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /health/li")
    writer.write_eof()
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await writer.wait_closed()
    assert response.startswith(b"HTTP/1.1 400 ")
    assert b'"code":"bad_request"' in response


async def test_oversized_head_is_rejected(server: HttpServer) -> None:
    data = b"GET /health/live HTTP/1.1\r\nX-Big: " + b"a" * 64 * 1024 + b"\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        writer.write(data)
        response = await asyncio.wait_for(reader.read(), 5)
        assert response.startswith(b"HTTP/1.1 431 ")
        assert b'"code":"request_header_too_large"' in response
    except ConnectionResetError:
        pass  # the server closed with our unread excess in its buffer: the kernel may RST before we read
    finally:
        writer.close()
    assert (await get(server, "/health/live")).status == 200


async def test_silent_and_half_clients_do_not_block_the_server(server: HttpServer) -> None:
    silent_r, silent_w = await asyncio.open_connection("127.0.0.1", server.port)
    half_r, half_w = await asyncio.open_connection("127.0.0.1", server.port)
    half_w.write(b"GET /health/live HTTP/1.1\r\nHost: x")
    await half_w.drain()

    # Both stalled connections are still open, yet other clients are served right away.
    for _ in range(3):
        assert (await get(server, "/health/live")).status == 200

    # The stalled connections are cut after the read timeout rather than held forever.
    for reader, writer in ((silent_r, silent_w), (half_r, half_w)):
        response = await asyncio.wait_for(reader.read(), READ_TIMEOUT_S + 5)
        assert response == b"" or response.startswith(b"HTTP/1.1 408 ")
        writer.close()
        await writer.wait_closed()
    assert (await get(server, "/health/ready")).status == 200


async def test_client_that_half_closes_after_its_request_gets_the_answer(server: HttpServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"GET /health/ready HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.write_eof()
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b'{"status":"ready"}')


async def test_client_that_leaves_early_does_not_break_the_server(server: HttpServer) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.close()
    await writer.wait_closed()
    assert (await get(server, "/health/live")).status == 200


async def test_metrics_callback_error_is_500(probe: Probe) -> None:
    def broken() -> tuple[bytes, str]:
        raise RuntimeError("boom")

    srv = HttpServer("127.0.0.1", 0, ready=probe, metrics=broken, read_timeout_s=READ_TIMEOUT_S)
    await srv.start()
    try:
        reply = await get(srv, "/metrics")
        assert reply.status == 500
        assert is_error(reply, 500, "internal_error")
        assert "boom" not in reply.body.decode()  # what failed is in the agent's log, not the reply
        assert (await get(srv, "/health/live")).status == 200
    finally:
        await srv.stop()


async def test_stop_closes_the_port_and_open_connections(probe: Probe, metrics: AgentMetrics) -> None:
    srv = HttpServer("127.0.0.1", 0, ready=probe, metrics=metrics.render, read_timeout_s=30)
    await srv.start()
    port = srv.port
    assert port != 0
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
    await srv.stop()
    assert await asyncio.wait_for(idle_r.read(), 5) == b""
    idle_w.close()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
