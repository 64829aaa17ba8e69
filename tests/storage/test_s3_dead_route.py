"""An S3 request caught by a dead route (packets swallowed, the connection open: the chaos
proxy's `drop`) is given up after READ_TIMEOUT_S and retried on a new connection, so a segment
upload, and the acks=all produces waiting on it, recovers within seconds of the route coming
back. At botocore's 60 s default it hung for a minute, past Kafka clients' delivery timeouts."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import urlparse

from streamhouse.chaos.proxy import FaultProxy
from streamhouse.storage.object_store.s3 import READ_TIMEOUT_S, S3ObjectStore

OUTAGE_S = 2.0
# Within a Kafka client's 30 s delivery timeout, with room for the upload itself on a loaded box.
BOUND_S = 25.0


async def test_an_upload_caught_by_a_dead_route_recovers_soon_after_it(s3_url: tuple[str, str]) -> None:
    url, endpoint = s3_url
    target = urlparse(endpoint)
    proxy = FaultProxy(target.hostname or "127.0.0.1", target.port or 80)
    try:
        store = S3ObjectStore(url, endpoint_url=f"http://{proxy.address}")
        await store.put("warm", b"w")  # the connection the next put reuses is open
        proxy.set("drop")
        began = time.monotonic()
        upload = asyncio.ensure_future(store.put("segment", b"x" * 1_000_000))
        await asyncio.sleep(OUTAGE_S)
        assert not upload.done()  # hung behind the dead route
        proxy.set("pass")
        await asyncio.wait_for(upload, BOUND_S)
        assert time.monotonic() - began < BOUND_S and READ_TIMEOUT_S < BOUND_S - OUTAGE_S
        assert await store.get("segment") == b"x" * 1_000_000
    finally:
        proxy.close()
