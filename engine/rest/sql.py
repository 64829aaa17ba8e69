"""SQL: one statement → its rows as JSON, or as an Arrow IPC stream when the client sends
`Accept: application/vnd.apache.arrow.stream` (every Arrow type, no JSON conversion: what
pyarrow, DuckDB, polars or arrow-js read directly). JSON rows are built column-wise with
Arrow kernels (engine/api/json_rows.py); a column with no JSON form is a 400 that says to
ask for Arrow. A client that disconnects cancels the statement (the contract's sql)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import pyarrow as pa
from fastapi import APIRouter, Header, Response

from streamhouse.api.contract import FrontEnd
from streamhouse.api.json_rows import json_rows
from streamhouse.rest.errors import RestRoute
from streamhouse.rest.models import SqlRequest, SqlResult
from streamhouse.rest.records import join

ARROW_STREAM = "application/vnd.apache.arrow.stream"


def _arrow(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def _json_body(table: pa.Table) -> str:
    columns = json.dumps([{"name": f.name, "type": str(f.type)} for f in table.schema], ensure_ascii=False)
    rows = join(json_rows(table).cast(pa.string())) if table.num_rows else ""
    return f'{{"columns":{columns},"rows":[{rows}],"row_count":{table.num_rows}}}'


def sql_router(front: FrontEnd) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["sql"], route_class=RestRoute)
    responses: dict[int | str, dict[str, Any]] = {
        200: {
            "model": SqlResult,
            "content": {ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}}},
            "description": "JSON rows, or an Arrow IPC stream with Accept: " + ARROW_STREAM,
        }
    }

    @router.post(
        "/sql",
        response_model=None,
        responses=responses,
        summary="Run one SQL statement: a query, topic DDL, SHOW, DESCRIBE, EXPLAIN, or a job statement",
    )
    async def run_sql(body: SqlRequest, accept: Annotated[str | None, Header()] = None) -> Response:
        table = await front.sql(body.statement, body.settings)
        if accept is not None and ARROW_STREAM in accept:
            return Response(_arrow(table), media_type=ARROW_STREAM)
        return Response(_json_body(table), media_type="application/json")

    return router
