"""Server-sent events: subscribe to a topic over one long-lived HTTP response (any browser's
EventSource, `curl -N`). Each record is one event: `id: <partition>-<offset>`, `event:
record`, `data:` the record's JSON (as consume answers it, on one line). A comment line every
`heartbeat_ms` while nothing arrives keeps proxies from closing the connection and finds a
client that has gone.

The stream ends cleanly: when the client leaves (Starlette cancels the generator; the pending
reads are cancelled, they change nothing), when the agent stops (`stopping` is set first: one
`event: end` and the response closes before the node shuts down), or on an error (one
`event: error` whose data is the error body, then the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import pyarrow as pa
import pyarrow.compute as _pc
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from streamhouse.api.contract import FrontEnd, error_mapping
from streamhouse.api.json_rows import single_chunk
from streamhouse.registry.service import RegistryService
from streamhouse.rest.consume import KeyType, ValueType, read_partitions
from streamhouse.rest.errors import RestRoute, error_code, status_word
from streamhouse.rest.records import join, record_texts
from streamhouse.rest.typed_consume import Decoding, decoded_json, value_kind
from streamhouse.storage.errors import StreamHouseError

pc: Any = _pc
EVENT_STREAM = "text/event-stream"
_BATCH = 1_000


async def _frames(results: list[Any], key_type: Any, value_type: Any, decode: Decoding, registry: Any) -> str:
    tables = [r.records for r in results if r.records.num_rows]
    partitions = pa.concat_arrays(
        [pa.repeat(pa.scalar(r.partition, pa.int32()), r.records.num_rows) for r in results if r.records.num_rows]
    )
    records = pa.concat_tables(tables)
    _, fmt, schema = decode
    value_json = None
    if fmt is not None and schema is not None:  # a registry topic's values decoded (typed_consume.py)
        value_json = await decoded_json(registry, single_chunk(records.column("value")), fmt, schema)
    texts = record_texts(records, partitions, key_type, value_type if value_json is None else "JSON", value_json)
    # Valid JSON has raw line breaks only as whitespace, and SSE data must be one line.
    texts = pc.replace_substring(pc.replace_substring(texts, "\r", " "), "\n", " ")
    ids = pc.binary_join_element_wise(
        pc.cast(partitions, pa.string()), pc.cast(records.column("offset").combine_chunks(), pa.string()), "-"
    )
    frames = pc.binary_join_element_wise("id: ", ids, "\nevent: record\ndata: ", texts, "\n\n", "")
    return join(frames, "")


def events_router(front: FrontEnd, stopping: asyncio.Event, registry: RegistryService | None = None) -> APIRouter:
    router = APIRouter(prefix="/v1/topics", tags=["records"], route_class=RestRoute)

    @router.get(
        "/{topic_name}/events",
        response_class=StreamingResponse,
        responses={200: {"content": {EVENT_STREAM: {"schema": {"type": "string"}}}, "description": "records as SSE"}},
        summary="Subscribe to a topic as server-sent events (one event per record)",
    )
    async def subscribe(
        topic_name: str,
        start: Annotated[Literal["earliest", "latest"], Query(alias="from")] = "latest",
        heartbeat_ms: Annotated[int, Query(ge=100, le=60_000)] = 15_000,
        key_type: KeyType = "JSON",
        value_type: ValueType = None,
    ) -> StreamingResponse:
        info = await front.topic(topic_name)  # an unknown topic is a 404 before the stream starts
        decode = await value_kind(front, topic_name, value_type)
        positions: dict[int, int] = {}
        for p in range(info.partitions):
            if start == "earliest":
                positions[p] = await front.earliest_offset(topic_name, p)
            else:
                positions[p] = await front.end_offset(topic_name, p)

        async def stream() -> AsyncIterator[str]:
            yield ": subscribed\n\n"  # the headers and a first byte go out at once
            while not stopping.is_set():
                reading = asyncio.ensure_future(
                    read_partitions(front, topic_name, positions, _BATCH, 1 << 20, heartbeat_ms)
                )
                stop = asyncio.ensure_future(stopping.wait())
                try:
                    await asyncio.wait({reading, stop}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    stop.cancel()
                    if not reading.done():
                        reading.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await reading
                if stopping.is_set():
                    break
                try:
                    results = reading.result()
                except StreamHouseError as exc:
                    status = error_mapping(exc).http
                    body = {"status": status_word(status), "code": error_code(exc), "message": str(exc)}
                    yield f"event: error\ndata: {json.dumps(body)}\n\n"
                    return
                if not any(r.records.num_rows for r in results):
                    yield ": keep-alive\n\n"
                    continue
                for r in results:
                    positions[r.partition] = r.next_offset
                try:
                    yield await _frames(results, key_type, decode[0], decode, registry)
                except StreamHouseError as exc:  # a value that does not decode ends the stream with it
                    status = error_mapping(exc).http
                    body = {"status": status_word(status), "code": error_code(exc), "message": str(exc)}
                    yield f"event: error\ndata: {json.dumps(body)}\n\n"
                    return
            yield 'event: end\ndata: {"reason":"the agent is stopping"}\n\n'

        return StreamingResponse(
            stream(), media_type=EVENT_STREAM, headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return router
