"""Rate quotas on the Kafka listener, as a Kafka broker applies them (KIP-219, issue 15).

A Kafka broker never refuses a request over a quota: it does the work, answers at once with
`throttle_time_ms` set, and then mutes the connection (stops reading from it) for that long.
A KIP-219 client (librdkafka ≥ 1.0, the Java client ≥ 2.0) also holds its next request back
for the time it was told; a client that does not is held back by the mute. So an acknowledged
batch is never dropped or refused for a quota: only the next request waits.

What is charged, on the agent's one QuotaGate (engine/auth/quota_gate.py), to the org of the
connection's SASL principal ("" without authentication, the server's default limits):
- Produce: its request frame's bytes (the whole batch, before the work, as Kafka does) and one
  request;
- Fetch: its answer's bytes once encoded and one request (the answer is encoded again with the
  throttle time only when there is one, the rare case);
- every other request: one request.
SASL requests before a login are never charged (there is no org yet to charge).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from streamhouse.auth import Principal
from streamhouse.auth.quota_gate import QuotaGate

PRODUCE = 0
FETCH = 1


class Mute:
    """One connection's mute: its reader takes no further request before `until` (monotonic)."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = 0.0

    def extend(self, seconds: float) -> None:
        if seconds > 0:
            self.until = max(self.until, time.monotonic() + seconds)

    async def wait(self) -> None:
        left = self.until - time.monotonic()
        if left > 0:
            await asyncio.sleep(left)


class KafkaThrottle:
    def __init__(self, gate: QuotaGate) -> None:
        self.gate = gate

    @staticmethod
    def org(principal: Principal | None) -> str | None:
        return principal.org if principal is not None else None

    async def before(self, api_key: int, frame_bytes: int, principal: Principal | None) -> float:
        """Charge a request before its work (all but Fetch): the throttle seconds it earns."""
        org = self.org(principal)
        if api_key == PRODUCE:
            return await self.gate.record(org, "produce", frame_bytes, request=True)
        if api_key == FETCH:
            return 0.0  # charged after, by its answer's size
        return await self.gate.record(org, "request", 1)

    async def after(self, api_key: int, answer_bytes: int, principal: Principal | None) -> float:
        """Charge a Fetch by its answer's bytes: the throttle seconds it earns."""
        if api_key != FETCH:
            return 0.0
        return await self.gate.record(self.org(principal), "fetch", answer_bytes, request=True)


def with_throttle(body: dict[str, Any], seconds: float) -> bool:
    """Put the throttle time (ms, rounded up) in an answer that has the field; whether it changed."""
    if seconds <= 0 or "throttle_time_ms" not in body:
        return False
    ms = min(2**31 - 1, int(seconds * 1000) + 1)
    if ms <= body["throttle_time_ms"]:
        return False
    body["throttle_time_ms"] = ms
    return True
