"""The safe default of `streamhouse serve` (issue 15): an agent that asks nobody for credentials
listens on loopback only. Serving another address without authentication takes an explicit
`--insecure`, and then says so in the log every start.

With `--auth api-key` every port asks for a key: gRPC (interceptor), HTTP (guard) and Kafka
(SASL PLAIN / SCRAM, engine/kafka/sasl/), all through the agent's one Authenticator. Embedded
mode binds nothing, so none of this applies to it.
"""

from __future__ import annotations

import ipaddress
import socket

from streamhouse.storage.errors import InvalidInputError

AUTH_MODES = ("none", "api-key")


def is_loopback(host: str) -> bool:
    """Whether every address `host` names is a loopback one ("" and 0.0.0.0 / :: are all interfaces)."""
    if host in ("", "0.0.0.0", "::"):
        return False
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False  # the bind will fail with its own message; do not call it loopback
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def check_exposure(host: str, auth: str, *, kafka_port: int, insecure: bool) -> list[str]:
    """InvalidInputError (one line, nothing started) if the agent would serve unauthenticated
    ports beyond loopback without `insecure`; otherwise the warnings to log (none when safe)."""
    if auth not in AUTH_MODES:
        raise InvalidInputError(f"auth must be one of {', '.join(AUTH_MODES)}, not {auth!r}")
    if is_loopback(host):
        return []
    if auth != "none":
        return []
    what = "gRPC, HTTP and Kafka" if kafka_port > 0 else "gRPC and HTTP"
    if not insecure:
        fix = "--auth api-key"
        raise InvalidInputError(
            f"refusing to serve {what} without authentication on {host!r} (not a loopback address): "
            f"use {fix}, --host 127.0.0.1, or --insecure to accept that anyone who reaches it can do anything"
        )
    return [f"--insecure: {what} on {host} take requests from anyone who can reach them, without authentication"]
