"""One Kafka client connection as whole request frames in and answer bytes out.

A buffered protocol rather than asyncio's StreamReader: a produce request is typically a
~1 MB frame, and StreamReader copied each one three times on the event loop (socket chunk →
its bytearray → the `readexactly` result, plus a memmove of the rest of its buffer per
frame) and paused/resumed the socket every 128 KB. Here a small frame (a prefix, Metadata,
a Produce of a few records) is read into one staging buffer and copied out once; a large
frame gets a buffer of its exact size that the kernel fills directly (`recv_into`), so its
bytes are copied once, by the kernel. Reading pauses only when `buffered_limit` bytes of
whole frames wait for the server (server.py bounds what it applies; this bounds memory).

Sizes are checked as soon as the 4-byte prefix arrives (`frame_size`): an oversize or
negative size is raised to the reader after the frames before it, and nothing past it is
read. A connection that ends mid-frame ends the stream (the partial frame is dropped, as the
client never sent it whole)."""

from __future__ import annotations

import asyncio
import collections
import select
from collections.abc import Callable
from typing import Any

import numpy as np

from streamhouse.kafka.errors import KafkaProtocolError
from streamhouse.kafka.protocol.api import frame_size

_STAGE_BYTES = 256 * 1024  # prefixes and frames up to half of this are read here
_LARGE = _STAGE_BYTES // 2  # bigger frames get their own buffer, filled by the kernel
DEFAULT_BUFFERED_LIMIT = 8 << 20  # whole frames waiting for the server before reading pauses
Frame = bytearray | memoryview  # a request frame without its size prefix


class FrameConnection(asyncio.BufferedProtocol):
    def __init__(
        self,
        max_frame: int,
        opened: Callable[[FrameConnection], None],
        *,
        buffered_limit: int = DEFAULT_BUFFERED_LIMIT,
    ) -> None:
        self._max_frame = max_frame
        self._opened = opened
        self._limit = buffered_limit
        self._stage = bytearray(_STAGE_BYTES)
        self._view = memoryview(self._stage)
        self._start = 0  # unparsed bytes of the stage are [_start, _end)
        self._end = 0
        self._large: np.ndarray[Any, Any] | None = None  # a large frame being filled in place …
        self._filled = 0  # … this far
        self._frames: collections.deque[Frame] = collections.deque()
        self._queued = 0  # bytes in _frames
        self._failure: KafkaProtocolError | None = None  # raised after the frames before it
        self._eof = False
        self._lost = False
        self._reading_paused = False
        self._writing_paused = False
        self._wakeup: asyncio.Future[None] | None = None
        self._drained: list[asyncio.Future[None]] = []
        self._closed: asyncio.Future[None] | None = None
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None

    # -- asyncio.BufferedProtocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        self._closed = asyncio.get_running_loop().create_future()
        self._opened(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._large is not None:
            return self._large.data[self._filled :]
        if self._start == self._end:
            self._start = self._end = 0
        elif len(self._stage) - self._end < _LARGE + 4:
            # A partial small frame near the end: move it to the front so it fits whole (a
            # copy of under _LARGE bytes, at most once per _LARGE bytes consumed).
            n = self._end - self._start
            self._stage[:n] = self._view[self._start : self._end]
            self._start, self._end = 0, n
        return self._view[self._end :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._large is not None:
            self._filled += nbytes
            if self._filled == len(self._large):
                self._push(self._large.data)
                self._large = None
        else:
            self._end += nbytes
            self._parse()
        self._wake()

    def client_closed(self) -> bool:
        """The client has closed its side: an answer written now is most likely never read
        (librdkafka closes the connection when a request times out; engine/kafka/unacked.py),
        and so is one into a connection this side is closing.

        Asked of the socket itself, not only of what the event loop has seen: the loop learns
        of a close one iteration later, and an iteration of a busy agent is long (a store
        coming back finishes many commits at once, just as the requests sent when it went
        away time out). An answer made in that iteration counted as read: 26 values twice in
        the 48-minute fault run of seed 2037 (issue 19, finding 4)."""
        if self._eof or self.transport is None or self.transport.is_closing():
            return True
        return _peer_gone(self.transport)

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return True  # half-closed: the answers to what it sent still go out

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = self._lost = True
        self._wake()
        for waiter in self._drained:
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("the Kafka client connection was lost"))
        self._drained.clear()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        for waiter in self._drained:
            if not waiter.done():
                waiter.set_result(None)
        self._drained.clear()

    # -- frames in ----------------------------------------------------------------------------
    def _parse(self) -> None:
        stage, view = self._stage, self._view
        while self._failure is None and self._end - self._start >= 4:
            try:
                size = frame_size(view[self._start : self._start + 4], self._max_frame)
            except KafkaProtocolError as exc:
                self._failure = exc
                self._pause_reading()  # nothing after a refused prefix is read
                return
            have = self._end - self._start - 4
            begin = self._start + 4
            if have >= size:
                self._push(stage[begin : begin + size])
                self._start = begin + size
            elif size > _LARGE:
                # Its own buffer: the bytes already here are copied once, the rest arrive in place
                # (numpy's empty: a bytearray would first zero the whole frame).
                large = np.empty(size, np.uint8)
                large[:have] = np.frombuffer(stage, np.uint8, have, begin)
                self._large, self._filled = large, have
                self._start = self._end = 0
                return
            else:
                return  # a small frame not yet whole: get_buffer keeps room for it

    def _push(self, frame: Frame) -> None:
        self._frames.append(frame)
        self._queued += len(frame)
        if self._queued > self._limit:
            self._pause_reading()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self._lost:
            self._reading_paused = True
            self.transport.pause_reading()

    def _wake(self) -> None:
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def read_frame(self) -> Frame | None:
        """The next whole request frame (without its size prefix); None once the client has
        closed its side (or gone). Raises KafkaProtocolError for a refused size prefix."""
        while not self._frames:
            if self._failure is not None:
                raise self._failure
            if self._eof:
                return None
            self._wakeup = asyncio.get_running_loop().create_future()
            try:
                await self._wakeup
            finally:
                self._wakeup = None
        frame = self._frames.popleft()
        self._queued -= len(frame)
        if self._reading_paused and self._failure is None and self._queued <= self._limit // 2 and not self._lost:
            assert self.transport is not None
            self._reading_paused = False
            self.transport.resume_reading()
        return frame

    # -- answers out --------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._lost or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("the Kafka client connection is closed")
        self.transport.write(data)

    async def drain(self) -> None:
        """Returns once the transport's write buffer is below its high-water mark."""
        if self._lost:
            raise ConnectionResetError("the Kafka client connection was lost")
        if not self._writing_paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drained.append(waiter)
        await waiter

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        if self._closed is not None:
            await self._closed


_GONE = select.POLLHUP | select.POLLERR | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)


def _peer_gone(transport: asyncio.Transport) -> bool:
    """Whether the kernel already knows the peer closed (a FIN or a reset), at no wait."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    poller = select.poll()
    poller.register(sock.fileno(), _GONE)
    return any(events & _GONE for _, events in poller.poll(0))
