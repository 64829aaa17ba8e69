"""The quota math (engine/auth/quota.py) and the gate (quota_gate.py), with a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from streamhouse.auth.quota import QuotaExceededError, QuotaLimits, TokenBucket, parse_rate
from streamhouse.auth.quota_gate import AGENTS_ORG, QuotaGate
from streamhouse.storage.errors import BackpressureError, InvalidInputError

RATE = 1000.0
BURST_S = 0.5

arrivals = st.lists(
    st.tuples(st.floats(min_value=0.0, max_value=0.3), st.integers(min_value=1, max_value=400)),
    min_size=1,
    max_size=300,
)


def _run(pattern: list[tuple[float, int]], *, kafka: bool) -> tuple[float, list[tuple[float, int]]]:
    """Offer each request after its gap; Kafka-style clients wait out the throttle they are told."""
    bucket = TokenBucket(RATE, 0.0, BURST_S)
    now, admitted = 0.0, []
    for gap, size in pattern:
        now += gap
        if kafka:
            admitted.append((now, size))
            now += bucket.record(size, now)  # the client honours throttle_time_ms
        elif bucket.admit(size, now) == 0.0:
            admitted.append((now, size))
    return now, admitted


@settings(max_examples=150, deadline=None)
@given(arrivals, st.booleans())
def test_admitted_rate_stays_within_the_quota_and_one_burst(pattern: list[tuple[float, int]], kafka: bool) -> None:
    _end, admitted = _run(pattern, kafka=kafka)
    biggest = max(size for _, size in pattern)
    # Over every window [t_i, t_j] the admitted bytes are at most burst + rate*(t_j - t_i) + one request.
    for i in range(len(admitted)):
        total = 0
        for j in range(i, len(admitted)):
            total += admitted[j][1]
            span = admitted[j][0] - admitted[i][0]
            assert total <= RATE * BURST_S + RATE * span + biggest + 1e-6


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=1, max_value=400), st.floats(min_value=2.0, max_value=20.0))
def test_a_client_that_always_offers_gets_the_quota(size: int, seconds: float) -> None:
    """Lower bound: a greedy client retrying at the retry-after gets rate*T - one request."""
    bucket = TokenBucket(RATE, 0.0, BURST_S)
    now, total = 0.0, 0
    while now < seconds:
        wait = bucket.admit(size, now)
        if wait == 0.0:
            total += size
        else:
            now += wait
    assert RATE * seconds - size <= total <= RATE * seconds + RATE * BURST_S + size


def test_refusal_charges_nothing_and_says_how_long() -> None:
    bucket = TokenBucket(100.0, 0.0, 1.0)
    assert bucket.admit(150, 0.0) == 0.0  # admitted into debt: -50
    assert bucket.admit(10, 0.0) == pytest.approx(0.5)
    assert bucket.tokens == pytest.approx(-50)
    assert bucket.admit(10, 0.5) == 0.0
    assert bucket.record(100, 0.5) == pytest.approx(1.1)
    assert bucket.throttle_s(0.4) == pytest.approx(1.1)  # a clock going back refills nothing


def test_rates_parse_and_bad_ones_are_refused() -> None:
    assert parse_rate("10MB") == 10_000_000
    assert parse_rate("512KiB") == 524_288
    assert parse_rate("100") == 100
    assert parse_rate("1.5mb/s") == 1_500_000
    for bad in ("", "MB", "-1", "0", "10XB", "nan"):
        with pytest.raises(InvalidInputError):
            parse_rate(bad)
    with pytest.raises(InvalidInputError):
        QuotaLimits(produce_bytes_per_s=0)
    with pytest.raises(InvalidInputError):
        TokenBucket(0.0, 0.0)


def test_gate_refuses_in_debt_counts_and_falls_back_to_defaults() -> None:
    clock = [0.0]
    rows = {"acme": QuotaLimits(produce_bytes_per_s=100.0)}

    async def load(org: str) -> QuotaLimits | None:
        return rows.get(org)

    registry = CollectorRegistry()
    gate = QuotaGate(QuotaLimits(requests_per_s=1000.0), clock=lambda: clock[0])
    gate.bind(load, registry)

    async def scenario() -> None:
        await gate.admit("acme", {"produce": 300})  # burst 100, now -200 in debt
        with pytest.raises(QuotaExceededError) as refused:
            await gate.admit("acme", {"produce": 1})
        assert isinstance(refused.value, BackpressureError)
        assert refused.value.kind == "produce" and refused.value.retry_after_s == pytest.approx(2.0)
        clock[0] = 2.0
        await gate.admit("acme", {"produce": 1})
        assert await gate.record("other", "fetch", 10**9) == 0.0  # no fetch limit anywhere
        assert await gate.record(AGENTS_ORG, "produce", 10**9) == 0.0
        (acme, other) = gate.usage()
        assert (acme.org, acme.produce_bytes, acme.requests, acme.throttled) == ("acme", 301, 2, 1)
        assert (acme.produce_bytes_per_s, acme.requests_per_s) == (100.0, 1000.0)  # row over default
        assert (other.fetch_bytes, other.produce_bytes_per_s) == (10**9, None)

    asyncio.run(scenario())
    sample = registry.get_sample_value
    assert sample("streamhouse_quota_usage_bytes_total", {"org": "acme", "kind": "produce"}) == 301
    assert sample("streamhouse_quota_throttled_total", {"org": "acme", "kind": "produce"}) == 1
    assert sample("streamhouse_quota_throttle_seconds_total", {"org": "acme", "kind": "produce"}) == pytest.approx(2.0)
