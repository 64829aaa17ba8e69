"""The Kafka listener's frame reader (engine/kafka/connection.py) over real loopback sockets:
whole frames in order whatever the chunking (small frames through the staging buffer, large
ones filled in place), an oversize prefix raised after the frames before it, a connection
cut mid-frame ends the stream, and a small buffered limit pauses reading without losing or
reordering anything. A client's close is known from the socket before the event loop has
seen it (issue 19, finding 4)."""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections.abc import Awaitable, Callable

import pytest

from streamhouse.kafka.connection import FrameConnection
from streamhouse.kafka.errors import FrameTooLargeError

MAX_FRAME = 8 << 20


def _framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def _payloads(rng: random.Random) -> list[bytes]:
    # Around the staging buffer's edges (128 KiB frames and the 256 KiB stage) and far past them.
    sizes = [0, 1, 3, 4, 100, 65_536, 131_071, 131_072, 131_073, 262_140, 262_144, 300_000, 3_000_000, 7, 50_000]
    sizes += [rng.randrange(0, 400_000) for _ in range(20)]
    return [rng.randbytes(n) for n in sizes]


async def _serve(
    client: Callable[[asyncio.StreamWriter], Awaitable[None]], *, buffered_limit: int = 8 << 20
) -> tuple[list[bytes], BaseException | None, FrameConnection]:
    """Runs a server on loopback, lets `client` write, and returns every frame read until the
    end of the stream (or the failure that ended it)."""
    opened: asyncio.Future[FrameConnection] = asyncio.get_running_loop().create_future()
    server = await asyncio.get_running_loop().create_server(
        lambda: FrameConnection(MAX_FRAME, opened.set_result, buffered_limit=buffered_limit), "127.0.0.1", 0
    )
    port = server.sockets[0].getsockname()[1]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    sending = asyncio.create_task(client(writer))
    conn = await opened
    frames: list[bytes] = []
    failure: BaseException | None = None
    try:
        while (frame := await asyncio.wait_for(conn.read_frame(), 30)) is not None:
            frames.append(bytes(frame))
            await asyncio.sleep(0)  # a slow consumer now and then: buffered frames pile up
    except FrameTooLargeError as exc:
        failure = exc
    await sending
    writer.close()
    conn.close()
    server.close()
    await server.wait_closed()
    return frames, failure, conn


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_frames_arrive_whole_and_in_order_whatever_the_chunking(seed: int) -> None:
    rng = random.Random(seed)
    payloads = _payloads(rng)
    data = b"".join(_framed(p) for p in payloads)

    async def client(writer: asyncio.StreamWriter) -> None:
        pos = 0
        while pos < len(data):
            step = rng.choice([1, 2, 5, 4096, 70_000, 1 << 20])
            writer.write(data[pos : pos + step])
            pos += step
            if rng.random() < 0.3:
                await writer.drain()
                await asyncio.sleep(0)
        await writer.drain()
        writer.write_eof()

    frames, failure, _ = asyncio.run(_serve(client))
    assert failure is None
    assert frames == payloads


def test_a_limit_smaller_than_a_frame_pauses_reading_but_loses_nothing() -> None:
    payloads = _payloads(random.Random(9))

    async def client(writer: asyncio.StreamWriter) -> None:
        writer.write(b"".join(_framed(p) for p in payloads))
        await writer.drain()
        writer.write_eof()

    frames, failure, _ = asyncio.run(_serve(client, buffered_limit=10_000))
    assert failure is None
    assert frames == payloads


def test_an_oversize_prefix_is_raised_after_the_frames_before_it() -> None:
    good = [b"a" * 10, b"b" * 200_000]

    async def client(writer: asyncio.StreamWriter) -> None:
        writer.write(b"".join(_framed(p) for p in good) + struct.pack(">i", MAX_FRAME + 1) + b"x" * 100)
        writer.write(_framed(b"never read"))
        await writer.drain()

    frames, failure, _ = asyncio.run(_serve(client))
    assert frames == good
    assert isinstance(failure, FrameTooLargeError)


def test_a_negative_prefix_is_refused() -> None:
    async def client(writer: asyncio.StreamWriter) -> None:
        writer.write(_framed(b"ok") + struct.pack(">i", -5))
        await writer.drain()

    frames, failure, _ = asyncio.run(_serve(client))
    assert frames == [b"ok"]
    assert isinstance(failure, FrameTooLargeError)


@pytest.mark.parametrize("cut", [2, 4 + 50, 4 + 150_000])
def test_a_connection_cut_mid_frame_ends_the_stream_after_the_whole_frames(cut: int) -> None:
    whole = [b"first", b"second" * 1000]
    partial = _framed(b"z" * 300_000)[:cut]

    async def client(writer: asyncio.StreamWriter) -> None:
        writer.write(b"".join(_framed(p) for p in whole) + partial)
        await writer.drain()
        writer.close()

    frames, failure, _ = asyncio.run(_serve(client))
    assert failure is None
    assert frames == whole


def test_answers_go_out_and_drain_waits_for_a_paused_transport() -> None:
    async def main() -> bytes:
        opened: asyncio.Future[FrameConnection] = asyncio.get_running_loop().create_future()
        server = await asyncio.get_running_loop().create_server(
            lambda: FrameConnection(MAX_FRAME, opened.set_result), "127.0.0.1", 0
        )
        reader, writer = await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])
        conn = await opened
        answer = b"y" * (8 << 20)  # far over the transport's high-water mark: drain must wait
        conn.write(answer)
        draining = asyncio.create_task(conn.drain())
        got = await reader.readexactly(len(answer))
        await asyncio.wait_for(draining, 30)
        writer.close()
        conn.close()
        await conn.wait_closed()
        with pytest.raises(ConnectionResetError):
            conn.write(b"late")
        server.close()
        await server.wait_closed()
        return got

    assert asyncio.run(main()) == b"y" * (8 << 20)


@pytest.mark.parametrize("unread", [b"", b"\x00\x00"])
def test_a_client_close_is_known_before_the_event_loop_has_seen_it(unread: bytes) -> None:
    """An answer made in the loop iteration in which the client closes (librdkafka does when a
    request times out) is never read, so it must not count as acknowledging an idempotent batch
    (engine/kafka/unacked.py). The loop is kept busy from the close to the question, as a busy
    agent's is; with bytes of the client still unread too."""

    async def main() -> list[bool]:
        opened: asyncio.Future[FrameConnection] = asyncio.get_running_loop().create_future()
        server = await asyncio.get_running_loop().create_server(
            lambda: FrameConnection(MAX_FRAME, opened.set_result), "127.0.0.1", 0
        )
        client = socket.create_connection(("127.0.0.1", server.sockets[0].getsockname()[1]))
        conn = await opened
        await asyncio.sleep(0.05)
        seen = [conn.client_closed()]  # open: an answer now is read
        client.sendall(unread)
        client.close()
        time.sleep(0.2)  # blocks the loop: it cannot have handled the close yet
        seen.append(conn.client_closed())
        await asyncio.sleep(0.05)
        seen.append(conn.client_closed())
        conn.close()
        server.close()
        await server.wait_closed()
        return seen

    assert asyncio.run(main()) == [False, True, True]
