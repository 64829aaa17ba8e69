"""free_port keeps out of the kernel's ephemeral range, where client connections take their local
ports (a CI run once lost its chaos test to an agent port taken that way between pick and
restart)."""

from __future__ import annotations

import socket
from pathlib import Path

from streamhouse.devservices.ports import LOWEST, ephemeral_range, free_port


def test_a_free_port_is_below_the_ephemeral_range_and_bindable() -> None:
    span = ephemeral_range()
    assert span is not None, "this test needs Linux's ip_local_port_range"
    ports = {free_port() for _ in range(50)}
    assert all(LOWEST <= port < span[0] for port in ports), sorted(ports)
    assert len(ports) > 40  # random picks, not one port over and over
    for port in ports:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_a_port_taken_by_a_listener_is_not_handed_out() -> None:
    span = ephemeral_range()
    assert span is not None
    taken: list[socket.socket] = []
    try:
        # Hold the ports of the first picks; no later pick may return one of them.
        for _ in range(30):
            s = socket.socket()
            s.bind(("127.0.0.1", free_port()))
            s.listen()
            taken.append(s)
        held = {s.getsockname()[1] for s in taken}
        assert not held & {free_port() for _ in range(200)}
    finally:
        for s in taken:
            s.close()


def test_the_range_is_read_and_garbage_reads_as_unknown(tmp_path: Path) -> None:
    ranges = tmp_path / "range"
    ranges.write_text("21000\t60999\n")
    assert ephemeral_range(ranges) == (21000, 60999)
    ranges.write_text("garbage")
    assert ephemeral_range(ranges) is None
