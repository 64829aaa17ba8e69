"""Fuzz of REST bodies (engine/rest/ under /v1, the schema registry under /registry) on the
agent's own FastAPI application over a real embedded engine: valid requests of every resource
with their JSON bodies mutated (a node replaced by any JSON value, a key dropped or added), their
serialised bytes damaged, and their path and query values replaced. Every answer is below 500
and carries the face's error body (/v1: status, code, message; the registry: error_code,
message); a 504 is allowed only as the documented query_timeout of a statement over its limit.
(tests/engine/rest/test_rest_schema.py runs schemathesis on valid requests.)"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import streamhouse
from streamhouse.client.embedded import EmbeddedTransport
from streamhouse.registry.routes import registry_router
from streamhouse.registry.service import RegistryService
from streamhouse.server.http.app import create_app
from tests.fuzz.budget import HANG_S, Hang, fuzz
from tests.strategies import json_mutations, mutations

TOPIC = "fz"
AVRO = json.dumps({"type": "record", "name": "R", "fields": [{"name": "a", "type": "long"}]})
# (method, path, body): one valid call of each resource a client sends a body or parameters to.
CALLS: tuple[tuple[str, str, Any], ...] = (
    ("POST", f"/v1/topics/{TOPIC}/records", {
        "values": [{"a": 1}, "s", None, 2.5], "keys": ["k", None, 1, {"x": [1]}], "timestamps": [0, 1, 2, 3],
        "headers": [[{"name": "h", "value": "aGk="}], None, [], [{"name": "ü", "value": None}]]}),
    ("POST", f"/v1/topics/{TOPIC}/records", {"value_type": "BINARY", "values": ["aGk=", ""], "partition_id": 1}),
    ("POST", f"/v1/topics/{TOPIC}/records?acks=durable", {"value_type": "STRING", "values": ["x"]}),
    ("POST", f"/v1/topics/{TOPIC}/records", {"value_type": "AVRO", "values": [{"a": 1}],
                                             "value_schema": {"subject": "fz-value"}}),
    ("POST", "/v1/topics", {"topic_name": "fz2", "partitions_count": 1,
                            "configs": [{"name": "retention.ms", "value": "1000"}], "value_schema": None}),
    ("PATCH", f"/v1/topics/{TOPIC}", {"partitions_count": 2}),
    ("POST", f"/v1/topics/{TOPIC}/configs:alter",
     {"data": [{"name": "retention.ms", "value": "5000", "operation": "SET"}]}),
    ("GET", f"/v1/topics/{TOPIC}/partitions/0/records?offset=0&max_records=5&timeout_ms=0&value_type=JSON", None),
    ("GET", "/v1/topics?page_size=1&page_token=", None),
    ("POST", "/v1/sql", {"statement": f"SELECT count(*) FROM {TOPIC}", "settings": {"statement_timeout": "5s"}}),
    ("POST", "/v1/consumer-groups/g/offsets", {"topic_name": TOPIC, "partitions": [{"partition_id": 0, "offset": 1}]}),
    ("GET", f"/v1/consumer-groups/g/topics/{TOPIC}/records?max_records=2&timeout_ms=0", None),
    ("POST", "/registry/subjects/fz-value/versions", {"schema": AVRO}),
    ("POST", "/registry/subjects/s2/versions", {"schemaType": "JSON", "schema": '{"type":"object"}'}),
    ("POST", "/registry/subjects/s3/versions", {"schemaType": "PROTOBUF",
                                                "schema": 'syntax = "proto3"; message M { int64 a = 1; }'}),
    ("POST", "/registry/compatibility/subjects/fz-value/versions/latest", {"schema": AVRO}),
    ("POST", "/registry/subjects/fz-value", {"schema": AVRO, "references": []}),
    ("PUT", "/registry/config/fz-value", {"compatibility": "BACKWARD"}),
    ("PUT", "/registry/mode", {"mode": "READWRITE"}),
    ("GET", "/registry/schemas/ids/1?subject=fz-value", None),
    # Reads of stored bytes in every value type: the fuzz topic holds whatever the run produced.
    *(("GET", f"/v1/topics/{TOPIC}/partitions/0/records?offset=0&timeout_ms=0&value_type={t}", None)
      for t in ("AVRO", "PROTOBUF", "JSONSCHEMA", "BINARY", "STRING", "JSON")),
    ("POST", "/v1/topics/fza/records", {"value_type": "AVRO", "values": [{"a": 1}, {"a": -(2**63)}]}),
    ("GET", "/v1/topics/fza/partitions/0/records?offset=0&timeout_ms=0", None),
    ("GET", "/v1/consumer-groups/g2/topics/fza/records?max_records=3&timeout_ms=0&value_type=AVRO", None),
)  # fmt: skip
# Long polls are capped: a request that asked to wait is not a hang.
_SKIP_LONG_WAITS = ("timeout_ms=", "max_wait")

PATH_VALUES = st.sampled_from(("", "%00", "..", "%2F", "x" * 300, "-1", "99999999999999999999", "ü", "%ZZ", "a b"))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes | None]:
    method, path, body = draw(st.sampled_from(CALLS))
    how = draw(st.sampled_from(("json", "bytes", "path", "valid")))
    raw = None if body is None else json.dumps(body).encode()
    if how == "json" and body is not None:
        raw = json.dumps(draw(json_mutations(body))).encode()
    elif how == "bytes" and raw is not None:
        raw = draw(mutations(st.just(raw), max_ops=3))
    elif how == "path":
        parts = path.split("/")
        at = draw(st.integers(2, len(parts) - 1))
        parts[at] = draw(PATH_VALUES) if "?" not in parts[at] else parts[at].replace("=0", "=" + draw(PATH_VALUES))
        path = "/".join(parts)
    return method, path, raw


@dataclass(frozen=True)
class Reply:
    status_code: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class App:
    loop: asyncio.AbstractEventLoop
    asgi: Any

    async def request(self, method: str, target: str, raw: bytes | None) -> Reply:
        """One HTTP request straight into the ASGI application (what uvicorn hands it)."""
        path, _, query = target.partition("?")
        headers = [(b"host", b"fuzz")]
        if raw is not None:
            headers += [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": urllib.parse.unquote(path), "raw_path": path.encode(), "query_string": query.encode(),
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 1), "server": ("fuzz", 80),
        }  # fmt: skip
        sent = False
        status = 0
        chunks: list[bytes] = []

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": raw or b"", "more_body": False}
            await asyncio.sleep(3600)  # the client stays connected; nothing more to send
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.asgi(scope, receive, send)
        return Reply(status, b"".join(chunks))


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    sh = streamhouse.open(str(tmp_path_factory.mktemp("rest-fuzz") / "data"))
    try:
        sh.create_topic(TOPIC, 2)
        transport = sh.transport
        assert isinstance(transport, EmbeddedTransport)
        service = transport.service
        # The agent server's wiring (engine/server/agent_server.py), without its socket.
        schemas = RegistryService(service.manager.metadata)
        asgi = create_app(
            ready=service.ready,
            metrics=lambda: (b"", "text/plain"),
            front=service,
            routers=[registry_router(schemas)],
            registry=schemas,
        )
        fuzz_app = App(transport._loop, asgi)
        # An Avro topic (its subject's schema registered first), so typed reads and writes run too.
        call = fuzz_app.request("POST", "/registry/subjects/fza-value/versions", json.dumps({"schema": AVRO}).encode())
        assert asyncio.run_coroutine_threadsafe(call, transport._loop).result().status_code == 200
        sh.sql("CREATE TOPIC fza WITH (format = 'avro', subject = 'fza-value', partitions = 1)")
        yield fuzz_app
    finally:
        sh.close()


@fuzz(250)
@given(request=requests())
def test_rest_requests_are_answered_below_500_with_the_error_body(
    app: App, request: tuple[str, str, bytes | None]
) -> None:
    method, path, raw = request
    future = asyncio.run_coroutine_threadsafe(app.request(method, path, raw), app.loop)
    try:
        reply = future.result(timeout=HANG_S)
    except TimeoutError:
        future.cancel()
        raise Hang(f"no answer to {method} {path} within {HANG_S} s") from None
    event(f"{method} {path.split('?')[0][:40]} -> {reply.status_code}")
    if reply.status_code == 504:  # the documented answer to a statement over its time limit
        assert reply.json()["code"] == "query_timeout", reply.body
        return
    assert reply.status_code < 500, (method, path, raw, reply.status_code, reply.body[:2000])
    if reply.status_code >= 400:
        body = reply.json()
        expected = {"error_code", "message"} if path.startswith("/registry") else {"status", "code", "message"}
        assert set(body) == expected, body
