"""The rate-quota part of one agent process (issue 15), wired by agent_server.py in two lines:
the QuotaGate with the server's default limits (AgentConfig.quota_*) is built before the gRPC
server (its interceptor is fixed at construction) and reads each org's stored row once the node
has opened its metadata store."""

from __future__ import annotations

import logging

from streamhouse.agent.config import AgentConfig
from streamhouse.agent.failures import Backoff, FailureTracker
from streamhouse.auth.quota import QuotaLimits, parse_rate
from streamhouse.auth.quota_gate import Loader, QuotaGate
from streamhouse.storage.metadata.base import MetadataStore


def default_limits(config: AgentConfig) -> QuotaLimits:
    def rate(text: str, flag: str) -> float | None:
        return parse_rate(text, f"--quota-{flag}-per-s") if text else None

    return QuotaLimits(
        rate(config.quota_produce_bytes_per_s, "produce-bytes"),
        rate(config.quota_fetch_bytes_per_s, "fetch-bytes"),
        rate(config.quota_requests_per_s, "requests"),
    )


log = logging.getLogger("streamhouse.auth.quota_gate")
# A store that fails is asked again after 1 s, doubling to 30 s (an outage) or 60 s (a fault).
STORE_BACKOFF = Backoff(first_retry_s=1.0, outage_cap_s=30.0, fault_cap_s=60.0)


def quota_gate(config: AgentConfig) -> QuotaGate:
    """The gate, with a FailureTracker for its store (said once, backoff, readiness)."""
    health = FailureTracker[str](
        STORE_BACKOFF, label=lambda org: f"reading the quota limits of org {org!r}", topic=lambda org: "", log=log
    )
    return QuotaGate(default_limits(config), health=health)


def store_limits(store: MetadataStore) -> Loader:
    async def load(org: str) -> QuotaLimits | None:
        row = await store.quota_get(org)
        return None if row is None else QuotaLimits(*row.rates(), *row.sizes())

    return load
