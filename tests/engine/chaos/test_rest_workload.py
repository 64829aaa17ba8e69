"""The chaos REST producer records every request it made, whatever the answer: a request cut off
mid-answer (an agent killed while it replied) is a failed produce whose values may be in the log,
never a crash of the workload (CI found its values as phantoms: written, but no operation said so)."""

from __future__ import annotations

import socket
import threading
import time

from streamhouse.chaos.history import History, Produce
from streamhouse.chaos.rest_workload import RestProducer
from tests.engine.chaos.tcp_server import tcp_server


def _read_request(conn: socket.socket) -> None:
    """One HTTP request, head and body (by its Content-Length), however the client split it."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            return
        body += chunk


def _cut_off_server() -> tuple[socket.socket, str]:
    """Answers every request with a head promising 113 bytes, then closes after none."""

    def cut_off(conn: socket.socket) -> None:
        with conn:
            _read_request(conn)  # all of it: unread bytes at the close would reset the connection instead
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 113\r\n\r\n")

    server = tcp_server(cut_off)
    return server, f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_request_cut_off_mid_answer_is_a_failed_produce() -> None:
    server, url = _cut_off_server()
    history, stop = History(), threading.Event()
    worker = RestProducer([url], history, stop, time.monotonic(), 3, pause_s=0.0)
    try:
        worker.start()
        worker.join(30)
    finally:
        stop.set()
        server.close()
    assert not worker.is_alive() and worker.crash == ""
    produces = [op for op in history.ops if isinstance(op, Produce)]
    assert len(produces) == 3 and {op.outcome for op in produces} == {"fail"}
    assert "IncompleteRead" in produces[0].error and produces[0].values == tuple(f"rest-{i}" for i in range(5))
