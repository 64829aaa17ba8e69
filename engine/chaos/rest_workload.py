"""The REST front end under faults (issue 19): a producer of unique values over HTTP/JSON
(`POST /v1/topics/{t}/records?acks=durable`, engine/rest/produce.py), the strongest ack mode,
to whichever agent answers: a partition another agent leads is forwarded there.

It never sends a value twice: a request that failed or timed out is recorded as failed (its
values may still be in the log, which the checker allows) and the next request carries new
values, so any value in the log twice is a finding. A refused or unreachable agent is left for
the next one in turn. One request at a time, each bounded by REQUEST_TIMEOUT_S.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from typing import Any

from streamhouse.chaos.history import Produce
from streamhouse.chaos.workloads import PARTITIONS, REQUEST_TIMEOUT_S, TOPICS, Worker


class RestProducer(Worker):
    def __init__(self, urls: list[str], *args: Any, batch: int = 5, pause_s: float = 0.05) -> None:
        super().__init__("rest-durable", *args)
        self.urls, self.batch, self.pause_s = urls, batch, pause_s

    def work(self) -> None:
        topic, n, at = TOPICS["rest"], 0, 0
        while self.going():
            partition = self.ops % PARTITIONS
            values = tuple(f"rest-{n + i}" for i in range(self.batch))
            n += self.batch
            start, index = self.now(), self.history.next_index()
            url = f"{self.urls[at % len(self.urls)]}/v1/topics/{topic}/records?acks=durable"
            body = {"values": list(values), "value_type": "STRING", "partition_id": partition}
            try:
                base = _post(url, body)
                offsets = tuple(range(base, base + len(values)))
                op = Produce(index, self.process, start, self.now(), "rest", topic, partition, values, "ok", offsets)
            # Refused, reset, timed out, cut off mid-answer (an agent killed), an error status.
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                op = Produce(index, self.process, start, self.now(), "rest", topic, partition, values, "fail",
                             error=f"{type(exc).__name__}: {exc}"[:200])  # fmt: skip
                at += 1  # the next agent in turn
                self.stop_event.wait(0.2)
            self.history.add(op)
            self.ops += 1
            self.stop_event.wait(self.pause_s)


def _post(url: str, body: dict[str, Any]) -> int:
    """The base offset the agent acknowledged; raises on anything but a 200 answer."""
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT_S) as response:  # loopback only
        answer = json.loads(response.read())
    (part,) = answer["partitions"]
    return int(part["base_offset"])
