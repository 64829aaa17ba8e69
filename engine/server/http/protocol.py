"""uvicorn's h11 connection protocol with the two guards it lacks, and JSON for its own errors.

uvicorn arms no timer until a first response is sent, so a client that connects and stays silent,
or sends half a request head, would hold a connection (and its memory) forever; the agent's
former hand-rolled server cut both after a read timeout, and this keeps that promise. uvicorn
also answers every unparsable request with a text/plain 400 and closes on EOF mid-head without a
word; here those errors are JSON like every other error of the HTTP face (errors.py), an
over-long head is 431 (h11's own hint), and a truncated head still gets its 400.

h11 (pure Python) rather than httptools on purpose: h11 bounds the request head
(`h11_max_incomplete_event_size`), httptools does not. Probes and scrapers send a few hundred
bytes, so its speed is not what limits them (see the latency note in the final report of issue 11).
"""

from __future__ import annotations

import asyncio
import json
import re
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from streamhouse.server.http.errors import error_body

_HEAD_END = re.compile(rb"\r?\n\r?\n")  # h11 accepts bare LF line ends too


class _RecordingConnection(h11.Connection):
    """An h11 connection that remembers the status hint of the last protocol error it raised."""

    last_error_status = 400

    def next_event(self) -> Any:
        try:
            return super().next_event()
        except h11.RemoteProtocolError as exc:
            self.last_error_status = exc.error_status_hint
            raise


class GuardedH11Protocol(H11Protocol):
    """One HTTP/1.1 connection. A request head must arrive whole within `read_timeout_s` of the
    connection opening (or of the previous response); a body must keep arriving, one chunk per
    `read_timeout_s` at least. A connection that misses either is closed."""

    read_timeout_s = 5.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Same arguments as uvicorn's own: only the error hint is added.
        self._max_head_bytes = self.config.h11_max_incomplete_event_size or 16 * 1024
        self._recording = _RecordingConnection(h11.SERVER, self._max_head_bytes)
        self.conn = self._recording
        self._read_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        self._arm_read_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_read_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and self._head_too_large(data):
            self._send_error(431)
            return
        super().data_received(data)
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._arm_read_deadline()  # progress on a body: the next chunk gets a fresh timeout
        elif state is not h11.IDLE:
            self._disarm_read_deadline()  # the whole request is in; the route's own limits apply
        # In IDLE (head still incomplete) the deadline keeps running: a trickled head is no progress.

    def _head_too_large(self, data: bytes) -> bool:
        """h11 checks its size limit only while an event is incomplete, so a head that arrives
        in one read (up to 256 KiB on a socket) would pass it; measure the head itself."""
        pending = self.conn.trailing_data[0] + data if self.conn.trailing_data[0] else data
        end = _HEAD_END.search(pending, 0, self._max_head_bytes + 4)
        return (end.start() if end else len(pending)) > self._max_head_bytes

    # typeshed's Protocol allows bool | None; uvicorn narrowed its override to None.
    def eof_received(self) -> bool | None:  # type: ignore[override]
        """The client closed its sending side. Mid-head, the half it sent is a bad request and
        hears so. After a whole request (`printf 'GET …' | nc -N`), it still gets its answer:
        True keeps the transport open for writing, and the connection closes after the reply
        (uvicorn would close at once and drop the response)."""
        if self.transport.is_closing():
            return None
        buffered, _ = self.conn.trailing_data
        if self.conn.their_state is h11.IDLE and buffered:
            self._send_error(400)
            return None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and self.conn.their_state is h11.DONE:
            cycle.keep_alive = False
            return True
        return None  # idle: asyncio closes the transport

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # uvicorn's keep-alive timer is cancelled by the next byte received; ours keeps a trickled
        # second request head bounded too.
        if not self.transport.is_closing():
            self._arm_read_deadline()

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this for any request h11 could not parse (msg is always the same line)."""
        self._send_error(self._recording.last_error_status)

    def _send_error(self, status: int) -> None:
        body = json.dumps(error_body(status), separators=(",", ":")).encode()
        head = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
        head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\nconnection: close\r\n\r\n"
        # Written raw: after a protocol error h11's state machine refuses to send anything.
        self.transport.write(head.encode("latin-1") + body)
        self.transport.close()

    def _arm_read_deadline(self) -> None:
        self._disarm_read_deadline()
        self._read_deadline = self.loop.call_later(self.read_timeout_s, self._read_timed_out)

    def _disarm_read_deadline(self) -> None:
        if self._read_deadline is not None:
            self._read_deadline.cancel()
            self._read_deadline = None

    def _read_timed_out(self) -> None:
        self._read_deadline = None
        if self.transport.is_closing() or self.conn.their_state not in (h11.IDLE, h11.SEND_BODY):
            return
        cycle = self.cycle  # None before the first request; the finished one while IDLE after it
        if cycle is not None and not cycle.response_complete:
            if cycle.response_started:
                return  # the route already answers; uvicorn finishes or closes the connection itself
            cycle.disconnected = True  # a route waiting for the body sees the client gone
            cycle.message_event.set()
        self.transport.close()


def guarded_protocol(read_timeout_s: float) -> type[GuardedH11Protocol]:
    """The protocol class to hand uvicorn's Config (it instantiates it per connection)."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {"read_timeout_s": read_timeout_s})
