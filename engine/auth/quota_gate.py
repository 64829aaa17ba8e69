"""The one place the front ends ask about rate quotas (issue 15): `QuotaGate`, one per agent.

It holds a token bucket per (org, kind) on this agent (quota.py has the math), the org's limits
(its stored row over the server's defaults, `--quota-*` flags), and the usage counters:
`streamhouse_quota_usage_bytes_total{org,kind}` (requests for kind="request"),
`streamhouse_quota_throttled_total{org,kind}` and `streamhouse_quota_throttle_seconds_total{org,kind}`.

Quotas are per agent, as Kafka's are per broker: N agents let an org through at up to N times
its limit in total if its clients spread over all of them. The limits are read from the store
at most once per LIMITS_TTL_S per org (a change reaches every agent within it); a store that
cannot be read leaves the last limits in force (or the defaults) rather than failing requests,
and is tracked per org by the agents' one FailureTracker discipline (engine/agent/failures.py,
handed in by the agent as `health`: auth sits below agent): said once, retried with backoff, and
named by readiness (`faults`) unless it is an outage.

Who is counted: the principal's org; without authentication (no principal) the org is ""
(the server's defaults apply to everyone together). The agents' own org is never throttled:
their calls are WAL hand-overs and forwards of requests already counted where they came in.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from streamhouse.auth.quota import KINDS, QuotaExceededError, QuotaLimits, TokenBucket

log = logging.getLogger(__name__)
LIMITS_TTL_S = 5.0
RATE_WINDOW_S = 10.0  # SHOW USAGE's rates: averaged over the last whole window of this long
AGENTS_ORG = "streamhouse-agents"  # engine/auth/agent_key.py's org
Loader = Callable[[str], Awaitable[QuotaLimits | None]]


class Describable(Protocol):
    def describe(self, key: object = None) -> str: ...


class StoreHealth(Protocol):
    """The part of engine/agent/failures.py's FailureTracker[str] the gate uses, keyed by org."""

    def wait_s(self, key: str) -> float: ...

    def failed(self, key: str, exc: BaseException) -> object: ...

    def succeeded(self, key: str) -> None: ...

    def failing_faults(self) -> Mapping[str, Describable]: ...


class _LogOnly:
    """Without a tracker (tests, tools): every failure is logged, none backs off."""

    def wait_s(self, key: str) -> float:
        return 0.0

    def failed(self, key: str, exc: BaseException) -> object:
        log.warning("quota limits of org %r not refreshed (%s); keeping the last ones", key, exc)
        return None

    def succeeded(self, key: str) -> None:
        pass

    def failing_faults(self) -> Mapping[str, Describable]:
        return {}


@dataclass(frozen=True)
class OrgUsage:
    """One row of SHOW USAGE: an org's totals and limits on this agent (None: unlimited)."""

    org: str
    produce_bytes: int
    fetch_bytes: int
    requests: int
    produce_bytes_per_s: float | None
    fetch_bytes_per_s: float | None
    requests_per_s: float | None
    throttled: int


class QuotaGate:
    def __init__(
        self,
        default: QuotaLimits | None = None,
        load: Loader | None = None,
        *,
        registry: CollectorRegistry | None = None,
        burst_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        health: StoreHealth | None = None,
    ) -> None:
        self.default = default or QuotaLimits()
        self.load = load
        self.burst_s = burst_s
        self.clock = clock
        self._limits: dict[str, tuple[float, QuotaLimits]] = {}
        self._buckets: dict[tuple[str, str], TokenBucket] = {}
        self._totals: dict[tuple[str, str], int] = {}
        self._throttled: dict[str, int] = {}
        # (org, kind) → (start, total at start) of the current rate window, and the last window's rate
        self._marks: dict[tuple[str, str], tuple[float, int]] = {}
        self._rates: dict[tuple[str, str], float] = {}
        self.store_health: StoreHealth = health or _LogOnly()
        labels = ("org", "kind")
        self._usage = Counter(
            "streamhouse_quota_usage_bytes", "Bytes (requests for kind=request) counted per org", labels,
            registry=registry,
        )  # fmt: skip
        self._count = Counter(
            "streamhouse_quota_throttled", "Requests throttled or refused over a rate quota", labels, registry=registry
        )
        self._seconds = Counter(
            "streamhouse_quota_throttle_seconds", "Throttle time handed to clients over a rate quota", labels,
            registry=registry,
        )  # fmt: skip

    def bind(self, load: Loader, registry: CollectorRegistry | None = None) -> None:
        """Attach the store once the agent has one (the gate is built before the node opens)."""
        self.load = load
        if registry is not None:
            for metric in (self._usage, self._count, self._seconds):
                registry.register(metric)

    async def limits(self, org: str) -> QuotaLimits:
        now = self.clock()
        cached = self._limits.get(org)
        if cached is not None and (now - cached[0] < LIMITS_TTL_S or self.store_health.wait_s(org) > 0):
            return cached[1]  # fresh, or the store failed and is not to be asked again yet
        limits = cached[1] if cached is not None else self.default
        if self.load is not None and org:
            try:
                row = await self.load(org)
                limits = self.default if row is None else row.over(self.default)
                self.store_health.succeeded(org)
            except Exception as exc:  # the store fails: keep what we had; said once per change
                self.store_health.failed(org, exc)
        self._limits[org] = (now, limits)
        return limits

    def faults(self) -> list[str]:
        """Orgs whose limits cannot be read for a reason other than a store outage (the store's
        own probe reports outages), one line each, for readiness."""
        return [s.describe() for _, s in sorted(self.store_health.failing_faults().items())]

    def _bucket(self, org: str, kind: str, rate: float, now: float) -> TokenBucket:
        bucket = self._buckets.get((org, kind))
        if bucket is None or bucket.rate != rate:  # a changed limit starts a fresh bucket
            bucket = self._buckets[(org, kind)] = TokenBucket(rate, now, self.burst_s)
        return bucket

    async def admit(self, org: str | None, amounts: Mapping[str, int]) -> None:
        """Before the work (gRPC, REST): count one request plus `amounts` ({kind: bytes}) if the
        org is in debt on none of them, else raise QuotaExceededError and charge nothing."""
        org = org or ""
        if org == AGENTS_ORG:
            return
        limits = await self.limits(org)
        now = self.clock()
        wanted = {"request": 1, **amounts}
        buckets = {k: self._bucket(org, k, rate, now) for k in wanted if (rate := limits.of(k)) is not None}
        waits = {k: b.throttle_s(now) for k, b in buckets.items()}
        if waits and (worst := max(waits, key=lambda k: waits[k])) and waits[worst] > 0:
            self._throttle(org, worst, waits[worst])
            raise QuotaExceededError(org or "(anonymous)", worst, waits[worst])
        for kind, amount in wanted.items():
            if kind in buckets:
                buckets[kind].record(amount, now)
            self._count_usage(org, kind, amount)

    async def record(self, org: str | None, kind: str, amount: int, *, request: bool = False) -> float:
        """After (or regardless of) the work (Kafka; fetch bytes): charge, return the throttle
        seconds for the answer (0.0 if none). `request` counts one request too."""
        org = org or ""
        if org == AGENTS_ORG:
            return 0.0
        limits = await self.limits(org)
        now = self.clock()
        wait = 0.0
        worst = kind
        for k, amount_k in ((kind, amount), ("request", 1)) if request else ((kind, amount),):
            rate = limits.of(k)
            if rate is not None:
                w = self._bucket(org, k, rate, now).record(amount_k, now)
                if w > wait:
                    wait, worst = w, k
            self._count_usage(org, k, amount_k)
        if wait > 0:
            self._throttle(org, worst, wait)
        return wait

    def _count_usage(self, org: str, kind: str, amount: int) -> None:
        key = (org, kind)
        before = self._totals.get(key, 0)
        self._totals[key] = before + amount
        self._usage.labels(org, kind).inc(amount)
        now = self.clock()
        mark = self._marks.get(key)
        if mark is None:
            self._marks[key] = (now, before)
        elif now - mark[0] >= RATE_WINDOW_S:
            self._rates[key] = (before - mark[1]) / (now - mark[0])
            self._marks[key] = (now, before)

    def recent(self, org: str) -> tuple[float, float, float]:
        """The org's produce bytes, fetch bytes and requests per second on this agent: over the
        last whole window, or since its first request while the first window runs; an org idle
        for longer than a window decays towards 0."""
        now = self.clock()
        out = []
        for kind in KINDS:
            key = (org, kind)
            mark = self._marks.get(key)
            if mark is None:
                out.append(0.0)
                continue
            since = (self._totals.get(key, 0) - mark[1]) / max(now - mark[0], 1.0)  # not a burst as a rate
            out.append(since if now - mark[0] >= RATE_WINDOW_S or key not in self._rates else self._rates[key])
        return (out[0], out[1], out[2])

    def _throttle(self, org: str, kind: str, wait: float) -> None:
        self._throttled[org] = self._throttled.get(org, 0) + 1
        self._count.labels(org, kind).inc()
        self._seconds.labels(org, kind).inc(wait)

    def usage(self) -> list[OrgUsage]:
        """Every org seen on this agent, by name (SHOW USAGE, `auth quota list`)."""
        orgs = sorted({org for org, _ in self._totals} | set(self._limits))
        out = []
        for org in orgs:
            limits = self._limits[org][1] if org in self._limits else self.default
            produce, fetch, requests = (self._totals.get((org, kind), 0) for kind in KINDS)
            out.append(
                OrgUsage(
                    org, produce, fetch, requests, limits.produce_bytes_per_s, limits.fetch_bytes_per_s,
                    limits.requests_per_s, self._throttled.get(org, 0),
                )
            )  # fmt: skip
        return out
