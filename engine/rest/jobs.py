"""Jobs (continuous queries): create, list (paged), describe, drop; the same jobs SHOW JOBS
and `streamhouse job` see, run by whichever agent holds each one's lease."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from streamhouse.api.contract import FrontEnd
from streamhouse.api.types import JobDescription
from streamhouse.rest.errors import RestRoute
from streamhouse.rest.models import Job, JobCreate, JobList
from streamhouse.rest.pages import PageSize, PageToken, page


def _job(j: JobDescription) -> Job:
    return Job(
        name=j.name,
        output_topic=j.output_topic,
        state=j.state,
        source_lag=j.source_lag,
        watermark=j.watermark,
        rows_in=j.rows_in,
        rows_out=j.rows_out,
        late_rows=j.late_rows,
        retention_skipped=j.retention_skipped,
        checkpoints=j.checkpoints,
        last_checkpoint=j.last_checkpoint,
        sql=j.sql,
        options=dict(j.options),
    )


def jobs_router(front: FrontEnd) -> APIRouter:
    router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=RestRoute)

    @router.get("", summary="List jobs, by name, one page at a time")
    async def list_jobs(page_token: PageToken = None, page_size: PageSize = 100) -> JobList:
        jobs, token = page(await front.list_jobs(), lambda j: j.name, page_token, page_size)
        return JobList(data=[_job(j) for j in jobs], next_page_token=token)

    @router.post(
        "",
        status_code=201,
        summary="Create a job: a materialized view (a new topic named after it) or, with into, INSERT INTO a topic",
    )
    async def create_job(body: JobCreate) -> Job:
        return _job(await front.create_job(body.name, body.select, into=body.into, options=body.options))

    @router.get("/{job_name}", summary="A job's state, lag, watermark and counters")
    async def describe_job(job_name: str) -> Job:
        return _job(await front.describe_job(job_name))

    @router.delete("/{job_name}", status_code=204, summary="Stop and remove a job (and its view's topic)")
    async def drop_job(
        job_name: str,
        drop_topic: Annotated[bool, Query(description="false keeps a materialized view's topic")] = True,
    ) -> Response:
        await front.drop_job(job_name, drop_topic=drop_topic)
        return Response(status_code=204)

    return router
