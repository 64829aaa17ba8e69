"""A produce quota measured through gRPC with a real key (issue 15): the SDK, told
RESOURCE_EXHAUSTED + retry-after-ms, waits and retries, so what gets in over a few seconds is the
quota (± 20 %, after the first burst); every record acknowledged is there exactly once, and
the usage is visible in /metrics."""

from __future__ import annotations

import re
import time
import urllib.request

import streamhouse
from streamhouse.auth.admin import AuthAdmin
from streamhouse.storage.metadata.acl_sql import OPERATIONS, RESOURCE_TYPES, AclRule
from streamhouse.storage.metadata.sqlite_quotas import OrgQuota
from tests.engine.auth.conftest import AuthAgent

RATE = 200_000.0  # bytes/s; the gate's burst is 1 s of it


def _metric(agent: AuthAgent, token: str, name: str) -> float:
    req = urllib.request.Request(f"{agent.http}/metrics", headers={"Authorization": f"Bearer {token}"})
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    found = re.search(rf'^{name}\{{kind="produce",org="quota-grpc"\}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_produce_rate_follows_the_quota(auth_agent: AuthAgent) -> None:
    metadata = auth_agent.server.service.manager.metadata
    admin = AuthAdmin(metadata)
    auth_agent.run(admin.create_org("quota-grpc"))
    token = auth_agent.run(admin.create_key("quota-grpc", "bob")).token
    for rtype in RESOURCE_TYPES:
        for op in OPERATIONS:
            auth_agent.run(metadata.acl_add(AclRule("quota-grpc", "bob", rtype, "prefixed", "", op)))
    auth_agent.run(metadata.quota_set(OrgQuota("quota-grpc", produce_bytes_per_s=RATE)))
    records = [{"v": "x" * 1000} for _ in range(20)]
    sent = 0
    with streamhouse.connect(auth_agent.grpc, api_key=token) as client:
        client.create_topic("quota-grpc-t", partitions=1)
        started = time.monotonic()
        while time.monotonic() - started < 3.0:
            client.produce("quota-grpc-t", records)
            sent += 1  # one record (a list of 20 objects, ~20 kB) a request
        elapsed = time.monotonic() - started
        assert client.describe("quota-grpc-t").partitions[0].end_offset == sent  # none lost or doubled
    charged = _metric(auth_agent, token, "streamhouse_quota_usage_bytes_total")
    rate = (charged - RATE) / elapsed  # the bucket starts full: one burst comes free
    assert 0.8 * RATE <= rate <= 1.2 * RATE, (charged, elapsed, rate)
    assert _metric(auth_agent, token, "streamhouse_quota_throttled_total") > 0
