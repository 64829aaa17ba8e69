"""What a Kafka SASL login costs per new connection (issue 15; engine/kafka/sasl/).

Against a real agent (`streamhouse serve --auth api-key --kafka-port`, SQLite metadata), a raw
client on the project's own codec opens connections one after another, each: TCP connect,
ApiVersions, the login, close. Rows:

- connect + ApiVersions, no login (the baseline every row includes);
- PLAIN, cold: each key's first login (one store read + scrypt in the agent);
- PLAIN, warm: the same key again within the authenticator's 5 s cache (memory, plus the one
  indexed read of the key's expiry that bounds the session);
- SCRAM-SHA-256 / SCRAM-SHA-512: two round trips; the agent reads the key and its credential and
  computes a few HMACs; the client derives PBKDF2 (4,096 iterations) each time, as librdkafka
  does.

Per connection: wall ms (median, p99), the agent's CPU ms (from /proc, all its threads) and the
client's CPU ms (this process). Run: `python -m streamhouse.bench.kafka_sasl [--logins N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import secrets
import shutil
import socket
import statistics
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streamhouse.auth.admin import AuthAdmin
from streamhouse.kafka.protocol.api import decode_response, encode_request
from streamhouse.kafka.protocol.messages_data import API_VERSIONS
from streamhouse.kafka.protocol.messages_sasl import SASL_AUTHENTICATE, SASL_HANDSHAKE
from streamhouse.kafka.protocol.schema import Api
from streamhouse.storage.errors import StreamHouseError
from streamhouse.storage.metadata import open_metadata_store

_HASHES = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
Login = Callable[[socket.socket], None]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--logins", type=int, default=300, help="connections per row (default 300)")
    parser.add_argument("--cold", type=int, default=40, help="first logins of distinct keys (default 40)")
    parser.add_argument("--dir", help="working directory (default: a temp dir)")


def _read_exactly(s: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            raise StreamHouseError("the agent closed the connection during a bench login")
        data += chunk
    return bytes(data)


def _call(s: socket.socket, api: Api, version: int, body: dict[str, Any]) -> dict[str, Any]:
    s.sendall(encode_request(api, version, 1, "bench", body))
    (size,) = struct.unpack(">i", _read_exactly(s, 4))
    _, answer = decode_response(api, version, _read_exactly(s, size))
    if answer.get("error_code", 0):
        raise StreamHouseError(f"{api.name} refused: error {answer['error_code']} {answer.get('error_message')}")
    return dict(answer)


def _authenticate(s: socket.socket, token: bytes) -> bytes:
    return bytes(_call(s, SASL_AUTHENTICATE, 2, {"auth_bytes": token})["auth_bytes"])


def plain(key_id: str, secret: str) -> Login:
    def login(s: socket.socket) -> None:
        _call(s, SASL_HANDSHAKE, 1, {"mechanism": "PLAIN"})
        _authenticate(s, f"\x00{key_id}\x00{secret}".encode())

    return login


def scram(mechanism: str, key_id: str, secret: str) -> Login:
    """The client side of RFC 5802, as librdkafka runs it (PBKDF2 on every login)."""
    name = _HASHES[mechanism]

    def login(s: socket.socket) -> None:
        _call(s, SASL_HANDSHAKE, 1, {"mechanism": mechanism})
        bare = f"n={key_id},r={secrets.token_urlsafe(18)}"
        server_first = _authenticate(s, f"n,,{bare}".encode()).decode()
        attrs = dict(part.split("=", 1) for part in server_first.split(","))
        salted = hashlib.pbkdf2_hmac(name, secret.encode(), base64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = hmac.digest(salted, b"Client Key", name)
        without_proof = f"c=biws,r={attrs['r']}"
        auth_message = f"{bare},{server_first},{without_proof}".encode()
        signature = hmac.digest(hashlib.new(name, client_key).digest(), auth_message, name)
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        final = _authenticate(s, f"{without_proof},p={base64.b64encode(proof).decode()}".encode())
        expected = hmac.digest(hmac.digest(salted, b"Server Key", name), auth_message, name)
        if not hmac.compare_digest(final, b"v=" + base64.b64encode(expected)):
            raise StreamHouseError("the agent's SCRAM server signature does not verify")

    return login


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _row(port: int, pid: int, logins: list[Login | None]) -> tuple[float, float, float, float]:
    """(median wall ms, p99 wall ms, agent CPU ms, client CPU ms) per connection."""
    walls = []
    agent, client = _cpu_s(pid), time.process_time()
    for login in logins:
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            _call(s, API_VERSIONS, 3, {"client_software_name": "bench", "client_software_version": "1"})
            if login is not None:
                login(s)
        walls.append((time.perf_counter() - start) * 1000)
    n = len(logins)
    agent_ms = (_cpu_s(pid) - agent) * 1000 / n
    client_ms = (time.process_time() - client) * 1000 / n
    walls.sort()
    return statistics.median(walls), walls[min(n - 1, int(n * 0.99))], agent_ms, client_ms


async def _keys(url: str, count: int) -> list[tuple[str, str]]:
    store = await open_metadata_store(url)
    try:
        admin = AuthAdmin(store)
        await admin.create_org("bench")
        out = []
        for _ in range(count):
            key_id, secret = (await admin.create_key("bench", "b")).token.split(".")
            out.append((key_id, secret))
        return out
    finally:
        await store.close()


def measure(workdir: Path, logins: int, cold: int) -> dict[str, tuple[float, float, float, float]]:
    from streamhouse.devservices.agent import start_agent

    data = workdir / "agent"
    keys = asyncio.run(_keys(f"sqlite:///{data / 'metadata.db'}", cold + 1))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    flags = ["--data-dir", str(data), "--auth", "api-key", "--kafka-port", str(port)]
    with start_agent(flags, log_path=workdir / "agent.log") as agent:
        warm_id, warm_secret = keys[0]
        rows: dict[str, tuple[float, float, float, float]] = {}
        _row(port, agent.pid, [plain(warm_id, warm_secret)] * 20)  # warm-up: imports, caches, the key
        rows["connect + ApiVersions, no login"] = _row(port, agent.pid, [None] * logins)
        rows["PLAIN, cold (first login of a key)"] = _row(port, agent.pid, [plain(k, s) for k, s in keys[1:]])
        rows["PLAIN, warm (key cached)"] = _row(port, agent.pid, [plain(warm_id, warm_secret)] * logins)
        for mechanism in _HASHES:
            rows[mechanism] = _row(port, agent.pid, [scram(mechanism, warm_id, warm_secret)] * logins)
    return rows


def run(args: argparse.Namespace) -> int:
    workdir = Path(args.dir or tempfile.mkdtemp(prefix="sh-bench-sasl-"))
    try:
        report(workdir, args.logins, args.cold)
    finally:
        if not args.dir:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(workdir: Path, logins: int, cold: int) -> None:
    """Measures (an agent under `workdir`) and prints the table."""
    workdir.mkdir(parents=True, exist_ok=True)
    rows = measure(workdir, logins, cold)
    table = Table(
        title=f"Kafka connection + SASL login, sequential ({logins:,} per row, cold {cold}; "
        f"{os.cpu_count()} CPUs, agent on SQLite)"
    )
    for column in ("login", "wall ms (median)", "wall ms (p99)", "agent CPU ms", "client CPU ms"):
        table.add_column(column, justify="right")
    for name, (median, p99, agent_ms, client_ms) in rows.items():
        table.add_row(name, f"{median:.2f}", f"{p99:.2f}", f"{agent_ms:.2f}", f"{client_ms:.2f}")
    Console().print(table)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    add_arguments(parser)
    raise SystemExit(run(parser.parse_args()))
