"""Rate quotas per organisation (issue 15): the limits and the token-bucket math, with no clock
and no I/O inside (every method takes `now`, in seconds of any monotonic clock), so the
arithmetic is tested exactly and the front ends decide where time comes from (quota_gate.py).

The bucket is Kafka's (KIP-599): it holds at most `burst` tokens (= rate × burst_s), refills at
`rate` per second, and a request is charged whole (its batch bytes, never per record), so the
balance may go negative. While it is negative the org is in debt, and the throttle time is the
time the refill needs to pay it back: debt / rate. Because a request is only ever admitted when
the balance is not negative, what is admitted over any interval of T seconds is at most
burst + rate × T + one request, whatever the arrival pattern (tests/engine/auth/test_quota.py).

Two ways to use it, as Kafka's and gRPC's conventions differ:
- `admit` (gRPC, REST: refuse before the work): refused while in debt, and a refusal changes
  nothing; the caller answers RESOURCE_EXHAUSTED / 429 with the throttle time as retry-after.
- `record` (Kafka, and fetch bytes known only after the work): always charged, the answer's
  throttle_time_ms says how long the client is to wait.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from streamhouse.storage.errors import BackpressureError, InvalidInputError

KINDS = ("produce", "fetch", "request")
# Request sizes and rates are given as "10MB", "512KiB", "100" (bytes or requests per second).
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9}
_UNITS.update({"kib": 1024, "mib": 1024**2, "gib": 1024**3})


class QuotaExceededError(BackpressureError):
    """An org is over a rate quota: nothing was done; retry after `retry_after_s` seconds.

    A BackpressureError, so every face already answers it as a retry-later (gRPC
    RESOURCE_EXHAUSTED, HTTP 429, the SDK retries it) through the contract's ERRORS table."""

    def __init__(self, org: str, kind: str, retry_after_s: float) -> None:
        super().__init__(f"organisation {org!r} is over its {kind} quota: retry after {retry_after_s:.3f} s")
        self.org = org
        self.kind = kind
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class QuotaLimits:
    """Per-second limits for one org, and its storage and partition limits (quota_storage.py);
    None is unlimited (or, in a stored row, "the server's default", see `over`)."""

    produce_bytes_per_s: float | None = None
    fetch_bytes_per_s: float | None = None
    requests_per_s: float | None = None
    storage_bytes: int | None = None
    partitions: int | None = None

    def __post_init__(self) -> None:
        for kind in KINDS:
            rate = self.of(kind)
            if rate is not None and not (math.isfinite(rate) and rate > 0):
                raise InvalidInputError(f"quota {kind}: a rate must be a positive number, not {rate!r}")
        for name, size in (("storage bytes", self.storage_bytes), ("partitions", self.partitions)):
            if size is not None and not size > 0:
                raise InvalidInputError(f"quota {name}: a size must be positive, not {size!r}")

    def of(self, kind: str) -> float | None:
        if kind == "produce":
            return self.produce_bytes_per_s
        if kind == "fetch":
            return self.fetch_bytes_per_s
        if kind == "request":
            return self.requests_per_s
        raise InvalidInputError(f"quota kind {kind!r} is not one of {', '.join(KINDS)}")

    def over(self, default: QuotaLimits) -> QuotaLimits:
        """These limits with every unset one taken from `default` (an org's row over the server's)."""
        produce, fetch, requests = (
            mine if mine is not None else theirs for mine, theirs in zip(self.tuple(), default.tuple(), strict=True)
        )
        return QuotaLimits(
            produce,
            fetch,
            requests,
            self.storage_bytes if self.storage_bytes is not None else default.storage_bytes,
            self.partitions if self.partitions is not None else default.partitions,
        )

    def tuple(self) -> tuple[float | None, float | None, float | None]:
        """The three rates."""
        return (self.produce_bytes_per_s, self.fetch_bytes_per_s, self.requests_per_s)


def parse_rate(text: str, what: str = "rate") -> float:
    """'10MB' → 10_000_000.0, '512KiB' → 524288.0, '100' → 100.0; InvalidInputError otherwise."""
    raw = text.strip().lower().removesuffix("/s")
    digits = raw.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = raw[len(digits) :]
    try:
        value = float(digits) * _UNITS[unit]
    except (ValueError, KeyError):
        raise InvalidInputError(f"{what}: {text!r} is not a rate such as 10MB, 512KiB or 100") from None
    if not (math.isfinite(value) and value > 0):
        raise InvalidInputError(f"{what}: {text!r} must be positive")
    return value


class TokenBucket:
    """One org's budget for one kind on one agent (mutable; owned by one event loop)."""

    __slots__ = ("at", "burst", "rate", "tokens")

    def __init__(self, rate: float, now: float, burst_s: float = 1.0) -> None:
        if not (rate > 0 and burst_s > 0):
            raise InvalidInputError(f"token bucket: rate {rate!r} and burst {burst_s!r} s must be positive")
        self.rate = rate
        self.burst = rate * burst_s
        self.tokens = self.burst  # a new bucket starts full: an idle org may burst at once
        self.at = now

    def _refill(self, now: float) -> None:
        # A clock that went backwards (a caller's mistake) refills nothing rather than draining.
        if now > self.at:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now

    def throttle_s(self, now: float) -> float:
        """How long until the balance is not negative again: 0.0 when not in debt."""
        self._refill(now)
        # A debt of under a millionth of a token is float rounding after an exact wait: paid.
        return -self.tokens / self.rate if self.tokens < -1e-6 else 0.0

    def record(self, amount: float, now: float) -> float:
        """Charge `amount` whatever the balance (Kafka's way: the work is done); the throttle
        time that follows."""
        self._refill(now)
        self.tokens -= amount
        return self.throttle_s(now)

    def admit(self, amount: float, now: float) -> float:
        """Charge `amount` only if not in debt: 0.0 if admitted, else the retry-after (nothing
        charged)."""
        wait = self.throttle_s(now)
        if wait > 0:
            return wait
        self.tokens -= amount
        return 0.0
