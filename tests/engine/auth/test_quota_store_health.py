"""A quota store that fails (issue 15): the gate keeps the last limits, says so once (not once a
request), does not ask again before the backoff, names a fault in readiness, and recovers."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from streamhouse.agent.failures import Backoff, FailureTracker
from streamhouse.auth.quota import QuotaLimits
from streamhouse.auth.quota_gate import LIMITS_TTL_S, QuotaGate


def test_a_failing_store_is_said_once_backs_off_and_shows_in_readiness(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []
    broken = [True]

    async def load(org: str) -> QuotaLimits | None:
        calls.append(org)
        if broken[0]:
            raise RuntimeError("auth_quotas: no such column")  # a fault, not an outage
        return QuotaLimits(requests_per_s=7.0)

    clock = [0.0]
    log = logging.getLogger("test.quota")
    backoff = Backoff(first_retry_s=0.2, outage_cap_s=1.0, fault_cap_s=1.0)
    health = FailureTracker[str](backoff, label=lambda org: f"quota limits of {org}", topic=lambda o: "", log=log)
    gate = QuotaGate(QuotaLimits(requests_per_s=100.0), load, clock=lambda: clock[0], health=health)

    async def limits() -> QuotaLimits:
        clock[0] += LIMITS_TTL_S + 1  # the cached limits are always stale: only the backoff holds it back
        return await gate.limits("acme")

    with caplog.at_level(logging.DEBUG, logger="test.quota"):
        for _ in range(20):
            assert asyncio.run(limits()) == QuotaLimits(requests_per_s=100.0)  # the defaults stay in force
    assert calls == ["acme"]  # asked once: the next attempt waits out the backoff
    assert [r.levelno for r in caplog.records if r.levelno >= logging.WARNING] == [logging.ERROR]
    assert len(gate.faults()) == 1 and "quota limits of acme" in gate.faults()[0]
    broken[0] = False
    time.sleep(0.25)
    assert asyncio.run(limits()) == QuotaLimits(requests_per_s=7.0)
    assert gate.faults() == [] and calls == ["acme", "acme"]
