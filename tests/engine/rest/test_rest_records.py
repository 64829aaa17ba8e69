"""REST produce, consume, consumer groups and server-sent events on a real agent: every value
type, headers, timestamps and acks; offset ranges and long-poll; group reads, commits, lag and
resets; refused batches store nothing; the body size limit; an SSE stream that sees live
records and ends when the client leaves."""

from __future__ import annotations

import base64
import http.client
import json
import threading
import time
from typing import Any

import pytest

from streamhouse.storage.records.schema import RECORD_SCHEMA
from tests.agent_process import AgentProcess
from tests.engine.rest.conftest import Reply, Rest, assert_error


def _topic(rest: Rest, name: str, partitions: int = 1) -> None:
    reply = rest.post("/v1/topics", {"topic_name": name, "partitions_count": partitions})
    assert reply.status == 201, reply.body


def _read(rest: Rest, topic: str, partition: int = 0, query: str = "") -> dict[str, Any]:
    reply = rest.get(f"/v1/topics/{topic}/partitions/{partition}/records?{query}")
    assert reply.status == 200, reply.body
    return reply.json()  # type: ignore[no-any-return]


def test_produce_and_consume_each_type(rest: Rest) -> None:
    _topic(rest, "types")
    values: list[Any] = [{"a": 1, "s": 'é\n"q"'}, [1, 2.5, None], "text", 7, None, True]
    keys = ["k1", None, {"id": 3}, "k1", "k2", "k3"]
    sent = rest.post("/v1/topics/types/records?acks=durable", {"values": values, "keys": keys})
    assert sent.status == 200, sent.body
    assert sent.json() == {
        "topic_name": "types",
        "record_count": 6,
        "partitions": [{"partition_id": 0, "base_offset": 0, "record_count": 6}],
    }
    raw = [b"\x00\xff\x10", b"", b"ab", b"abc", b"abcd"]
    binary = {
        "value_type": "BINARY",
        "key_type": "STRING",
        "values": [base64.b64encode(v).decode() for v in raw],
        "keys": ["x", "y", None, "z", "w"],
        "timestamps": [1_000, 2_000, 3_000, 4_000, 5_000],
        "headers": [
            [{"name": "h1", "value": base64.b64encode(b"\x01").decode()}, {"name": "h2"}],
            None,
            [],
            None,
            None,
        ],
    }
    assert rest.post("/v1/topics/types/records", binary).status == 200

    page = _read(rest, "types")
    assert page["next_offset"] == 11 and page["end_offset"] == 11
    got = page["records"]
    assert [r["value"] for r in got[:6]] == values
    assert [r["key"] for r in got[:6]] == keys
    assert [r["offset"] for r in got] == list(range(11))
    # Bytes that are not JSON come back as a JSON string of their text; BINARY gives them exactly.
    exact = _read(rest, "types", query="offset=6&value_type=BINARY&key_type=STRING")["records"]
    assert [base64.b64decode(r["value"]) for r in exact] == raw
    assert [r["key"] for r in exact] == ["x", "y", None, "z", "w"]
    assert [r["timestamp"] for r in exact] == [1_000, 2_000, 3_000, 4_000, 5_000]
    assert exact[0]["headers"] == [{"name": "h1", "value": "AQ=="}, {"name": "h2", "value": None}]
    assert exact[1]["headers"] is None and exact[2]["headers"] == []
    # STRING of bytes that are not UTF-8 is refused with the remedy, BINARY works.
    assert_error(rest.get("/v1/topics/types/partitions/0/records?offset=6&value_type=STRING"), 400, "invalid_input")

    # An offset range: [2, 5).
    ranged = _read(rest, "types", query="offset=2&end_offset=5")
    assert [r["offset"] for r in ranged["records"]] == [2, 3, 4] and ranged["next_offset"] == 5
    assert _read(rest, "types", query="offset=3&end_offset=3")["records"] == []
    assert_error(rest.get("/v1/topics/types/partitions/0/records?offset=99"), 400)
    assert_error(rest.get("/v1/topics/types/partitions/5/records"), 404, "partition_not_found")
    assert_error(rest.get("/v1/topics/types/partitions/0/records?offset=4&end_offset=2"), 400)


def test_refused_batches_store_nothing(rest: Rest, rest_agent: AgentProcess) -> None:
    _topic(rest, "strict")
    bad_base64 = {"value_type": "BINARY", "values": ["YQ==", "not base64!"]}
    body = assert_error(rest.post("/v1/topics/strict/records", bad_base64), 400, "invalid_input")
    assert "values[1]" in body["message"]
    assert_error(rest.post("/v1/topics/strict/records", {"values": [1, 2], "keys": ["a"]}), 400)
    assert_error(rest.post("/v1/topics/strict/records", {"values": [1], "timestamps": [-5]}), 422)
    assert_error(rest.post("/v1/topics/strict/records", {"values": [1], "timestamps": [10**20]}), 422)
    # A lone surrogate (valid JSON escape, not Unicode) anywhere is bad input, not a 500.
    assert_error(rest.post("/v1/topics/strict/records", raw=b'{"values": ["\\ud800"], "value_type": "STRING"}'), 400)
    surrogate_header = b'{"values": [1], "headers": [[{"name": "\\udb0d"}]]}'
    assert_error(rest.post("/v1/topics/strict/records", raw=surrogate_header), 400)
    assert_error(rest.post("/v1/sql", raw=b'{"statement": "SELECT \'\\ud800\'"}'), 422)
    assert_error(rest.post("/v1/topics/strict/records", {"values": [1], "value_type": "STRING"}), 400)
    assert_error(rest.post("/v1/topics/strict/records", {"values": []}), 422)
    assert_error(rest.post("/v1/topics/strict/records", {"values": [1], "partition_id": 3}), 404)
    assert_error(rest.post("/v1/topics/strict/records?acks=all", {"values": [1]}), 422)
    assert_error(rest.post("/v1/topics/nope/records", {"values": [1]}), 404, "topic_not_found")
    # A record over the agent's record size limit (1 MiB) refuses the whole batch.
    big = {"value_type": "STRING", "values": ["small", "x" * (1 << 20 + 1)]}
    assert_error(rest.post("/v1/topics/strict/records", big), 400)
    # A body over the HTTP limit (16 MiB) is refused before it is read.
    conn = http.client.HTTPConnection("127.0.0.1", rest_agent.http_port, timeout=20)
    conn.putrequest("POST", "/v1/topics/strict/records")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(17 << 20))
    conn.endheaders()  # the body never follows: the declared length alone is refused
    response = conn.getresponse()
    assert_error(Reply(response.status, dict(response.headers), response.read()), 413, "request_too_large")
    conn.close()
    assert _read(rest, "strict")["end_offset"] == 0
    assert rest_agent.running


def test_long_poll_waits_for_a_record(rest: Rest) -> None:
    _topic(rest, "poll")
    started = time.monotonic()
    empty = _read(rest, "poll", query="timeout_ms=300")
    assert empty["records"] == [] and time.monotonic() - started >= 0.25

    def later() -> None:
        time.sleep(0.4)
        rest.post("/v1/topics/poll/records", {"values": ["late"]})

    thread = threading.Thread(target=later)
    thread.start()
    started = time.monotonic()
    page = _read(rest, "poll", query="timeout_ms=10000")
    thread.join()
    assert [r["value"] for r in page["records"]] == ["late"]
    assert time.monotonic() - started < 5


def test_group_read_commit_lag_reset(rest: Rest) -> None:
    _topic(rest, "grouped", partitions=2)
    for partition in (0, 1):
        sent = rest.post("/v1/topics/grouped/records", {"partition_id": partition, "values": list(range(5))})
        assert sent.status == 200
    first = rest.get("/v1/consumer-groups/billing/topics/grouped/records?max_records=4")
    assert first.status == 200, first.body
    got = first.json()
    assert got["committed"] is False and len(got["records"]) == 4
    # Nothing committed yet: the group does not exist, and the same read gives the same records.
    assert_error(rest.get("/v1/consumer-groups/billing"), 404, "not_found")
    again = rest.get("/v1/consumer-groups/billing/topics/grouped/records?max_records=4").json()
    assert again["records"] == got["records"]

    commit = {"topic_name": "grouped", "partitions": got["next_offsets"]}
    detail = rest.post("/v1/consumer-groups/billing/offsets", commit)
    assert detail.status == 200, detail.body
    assert detail.json()["total_lag"] == 10 - 4
    rest_of_it = rest.get("/v1/consumer-groups/billing/topics/grouped/records?commit=true").json()
    assert len(rest_of_it["records"]) == 6 and rest_of_it["committed"] is True
    assert rest.get("/v1/consumer-groups/billing").json()["total_lag"] == 0
    assert {"group_id": "billing"} in rest.get("/v1/consumer-groups").json()["data"]

    reset = rest.post("/v1/consumer-groups/billing/offsets:reset", {"topic_name": "grouped", "to": "earliest"})
    assert reset.status == 200, reset.body
    assert [o["committed_offset"] for o in reset.json()["offsets"]] == [0, 0]
    to_offset = {"topic_name": "grouped", "to": "offset", "offset": 3, "partition_ids": [1]}
    lags = rest.post("/v1/consumer-groups/billing/offsets:reset", to_offset).json()["offsets"]
    assert [(o["partition_id"], o["committed_offset"], o["lag"]) for o in lags] == [(0, 0, 5), (1, 3, 2)]
    to_time = {"topic_name": "grouped", "to": "timestamp", "timestamp_ms": 0}
    assert rest.post("/v1/consumer-groups/billing/offsets:reset", to_time).json()["total_lag"] == 10
    latest = rest.post("/v1/consumer-groups/billing/offsets:reset", {"topic_name": "grouped", "to": "latest"})
    assert latest.json()["total_lag"] == 0
    assert_error(rest.post("/v1/consumer-groups/billing/offsets:reset", {"topic_name": "grouped", "to": "offset"}), 400)
    bad = {"topic_name": "grouped", "partitions": [{"partition_id": 9, "offset": 0}]}
    assert_error(rest.post("/v1/consumer-groups/billing/offsets", bad), 404, "partition_not_found")

    assert rest.call("DELETE", "/v1/consumer-groups/billing").status == 204
    assert_error(rest.get("/v1/consumer-groups/billing"), 404)
    # latest for a group without commits starts at the end: nothing to read.
    assert rest.get("/v1/consumer-groups/fresh/topics/grouped/records?reset=latest").json()["records"] == []


def _sse(rest_agent: AgentProcess, path: str) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", rest_agent.http_port, timeout=20)
    conn.request("GET", path)
    response = conn.getresponse()
    return conn, response


def _events(response: http.client.HTTPResponse, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    current: dict[str, str] = {}
    while len(events) < count:
        line = response.readline().decode()
        assert line, "the stream ended early"
        line = line.rstrip("\n")
        if not line:
            if "data" in current:
                events.append({"id": current.get("id"), "event": current.get("event"), **json.loads(current["data"])})
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(": ")
            current[name] = value
    return events


def test_server_sent_events(rest: Rest, rest_agent: AgentProcess) -> None:
    _topic(rest, "live", partitions=2)
    rest.post("/v1/topics/live/records", {"partition_id": 0, "values": [{"n": 0}, {"n": "multi\nline"}]})
    conn, response = _sse(rest_agent, "/v1/topics/live/events?from=earliest&heartbeat_ms=200")
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/event-stream")
    old = _events(response, 2)
    assert [(e["id"], e["event"], e["value"]) for e in old] == [
        ("0-0", "record", {"n": 0}),
        ("0-1", "record", {"n": "multi\nline"}),
    ]
    rest.post("/v1/topics/live/records", {"partition_id": 1, "values": ["new"]})
    (new,) = _events(response, 1)
    assert (new["id"], new["partition_id"], new["value"]) == ("1-0", 1, "new")
    # The client leaves: the agent drops the stream and keeps serving.
    conn.close()
    assert rest.get("/v1/topics/live").status == 200
    assert_error(rest.get("/v1/topics/nope/events"), 404)


@pytest.mark.parametrize("stop", ["SIGTERM"])
def test_events_end_when_the_agent_stops(stop: str, tmp_path: Any, pg_url: str, s3_url: tuple[str, str]) -> None:
    from tests.agent_process import AgentLauncher

    url, endpoint = s3_url
    with AgentLauncher(tmp_path) as launcher:
        agent = launcher.start(
            *(
                "--data-dir",
                str(tmp_path / "a"),
                "--metadata",
                pg_url,
                "--object-store",
                url,
                "--s3-endpoint",
                endpoint,
            ),
            http_port=0,
        )
        rest = Rest(f"http://127.0.0.1:{agent.http_port}")
        _topic(rest, "stopping")
        conn, response = _sse(agent, "/v1/topics/stopping/events?from=earliest&heartbeat_ms=60000")
        assert response.readline() == b": subscribed\n"
        started = time.monotonic()
        agent.proc.terminate()
        rest_text = response.read().decode()  # to the end of the chunked body: a clean end, not a cut
        assert "event: end" in rest_text
        assert time.monotonic() - started < 10
        assert agent.stop() == 0
        conn.close()
    assert RECORD_SCHEMA  # the record schema the stream's records follow
