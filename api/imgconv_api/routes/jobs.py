"""Jobs: upload, poll (ETag, long poll), list, download, cancel, delete.

Thin adapters over `imgconv_core.services`: the domain work is there, errors become HTTP in
`imgconv_api.errors`.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from imgconv_api import metrics
from imgconv_api.deps import ClientId, ServicesDep, StateDep, bearer
from imgconv_api.paths import API_PREFIX, job_path, with_links
from imgconv_api.polling import answer_poll
from imgconv_api.schemas import (
    DOWNLOAD,
    ETAG,
    NOT_MODIFIED,
    Job,
    JobPage,
    JobsCreated,
    errors,
)
from imgconv_api.uploads import parse_upload
from imgconv_core import services
from imgconv_core.db import job_store
from imgconv_core.errors import JobNotFound
from imgconv_core.jobs import JobStatus
from imgconv_core.services import ServiceContext
from imgconv_core.storage import DOWNLOAD_CHUNK_BYTES, BlobReader, BlobRole
from imgconv_core.telemetry.tracing import current_traceparent

# The prefix belongs to the router, so a route's own path is its whole template (metrics labels).
router = APIRouter(prefix=API_PREFIX, tags=["jobs"])

JSON = "application/json"
DOWNLOAD_CACHE = "private, max-age=31536000, immutable"

JobId = Annotated[
    str,
    Path(
        description="A job id (a UUID; any other string is an unknown job)",
        json_schema_extra={"format": "uuid"},
    ),
]


IfNoneMatch = Annotated[
    str | None,
    Header(description="The ETag of the answer you have: 304 while it is still current"),
]


def _parse_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise JobNotFound("no such job") from None


def _link(operation_id: str, job_id: str = "$response.body#/jobs/0/id") -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": {"job_id": job_id}}


def _revalidate(operation_id: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "description": "The same resource with its ETag: 304 while unchanged",
        "parameters": {
            "job_id": "$request.path.job_id",
            "header.if-none-match": "$response.header.ETag",
        },
    }


# How a generated client (or a stateful fuzzer) goes on from an upload.
UPLOAD_LINKS = {
    "GetJob": _link("getJob"),
    "GetResult": _link("getResult"),
    "GetSource": _link("getSource"),
    "CancelJob": _link("cancelJob"),
    "DeleteJob": _link("deleteJob"),
    "Replay": {
        "operationId": "createJobs",
        "description": "The same upload again with its Idempotency-Key: the same jobs (410 once "
        "they are deleted); another upload with that key: 409",
        # The body too: the key is bound to the options and every file (upload_fingerprint).
        "parameters": {"header.idempotency-key": "$request.header.idempotency-key"},
        "requestBody": "$request.body",
    },
}

# A canceled job's images are deleted: its source answers 410 from then on.
CANCEL_LINKS = {
    "GetSource": {
        **_link("getSource", "$response.body#/id"),
        "description": "The canceled job's source: 410 once its images are deleted",
    },
}
# What a deleted job's id answers (README: "then 404").
DELETE_LINKS = {
    "GetDeleted": {
        **_link("getJob", "$request.path.job_id"),
        "description": "The deleted job: 404",
    },
}


@router.post(
    "/jobs",
    status_code=202,
    operation_id="createJobs",
    response_model=JobsCreated,
    responses={
        202: {
            "description": "Accepted: the jobs are queued",
            "headers": {
                "Location": {
                    "description": "The first job",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
            "links": UPLOAD_LINKS,
        },
        **errors(401, 408, 409, 410, 413, 415, 422, 429, 503),
    },
)
async def create_jobs(
    request: Request,
    state: StateDep,
    client_id: ClientId,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=255,
            description="Makes a retry safe: the same upload with the same key answers the "
            "jobs of the first",
        ),
    ] = None,
) -> Response:
    """Upload one or more images (`file` parts) to convert; all or nothing."""
    limits = state.rate_limits
    await limits.hit(limits.upload_per_token, "upload-token", client_id.hex)
    await limits.hit(limits.upload_per_ip, "upload-ip", limits.client_ip(request))
    # Taken here, in the request's context: the service runs in a worker thread.
    traceparent = current_traceparent()
    form = await parse_upload(
        request, state.settings, state.upload_budget, hashed=bool(idempotency_key)
    )
    try:
        accepted = await run_in_threadpool(
            services.accept_upload, state.services, client_id, form, idempotency_key, traceparent
        )
    finally:
        form.close()
    if accepted.created:
        metrics.count_accepted(accepted.jobs)
    # The jobs' JSON is already encoded (it is what the cache holds): no second serialization.
    bodies = [
        with_links(body, job.id) for job, body in zip(accepted.jobs, accepted.bodies, strict=True)
    ]
    return Response(
        b'{"jobs":[' + b",".join(bodies) + b"]}",
        status_code=202,
        media_type=JSON,
        headers={"Location": job_path(accepted.jobs[0].id)},
    )


@router.get(
    "/jobs/{job_id}",
    operation_id="getJob",
    response_model=Job,
    dependencies=[Depends(bearer)],  # documents the scheme; answer_poll authenticates
    responses={
        200: {
            "description": "The job",
            "links": {"Revalidate": _revalidate("getJob")},
            "headers": {
                **ETAG,
                "Retry-After": {
                    "description": "While the job is not finished: when to poll again",
                    "schema": {"type": "integer", "minimum": 1},
                },
            },
        },
        304: NOT_MODIFIED,
        **errors(401, 404, 422),
    },
)
async def get_job(
    job_id: JobId,
    request: Request,
    state: StateDep,
    if_none_match: IfNoneMatch = None,
    wait: Annotated[
        float,
        Query(
            ge=0,
            description="long poll: seconds to wait for a change (at most the maximum)",
            examples=[0.5],
        ),
    ] = 0,
) -> Response:
    """A job's status. With `If-None-Match` it answers 304 while unchanged; with `wait` it
    answers as soon as the job changes, or after `wait` seconds. (Served by the poll fast path;
    this route documents it and handles what the fast path leaves to FastAPI.)"""
    answer = await answer_poll(
        state,
        request.headers.get("authorization"),
        job_id,
        wait,
        if_none_match,
    )
    state.poll_metrics.answered(answer.outcome)
    return Response(
        answer.body,
        status_code=answer.status,
        headers=answer.headers,
        media_type=JSON if answer.body else None,
    )


@router.get("/jobs", operation_id="listJobs", response_model=JobPage, responses=errors(401, 422))
async def list_jobs(
    state: StateDep,
    client_id: ClientId,
    limit: Annotated[int, Query(ge=1, le=100, examples=[20])] = 20,
    cursor: Annotated[
        str | None,
        Query(
            pattern=job_store.CURSOR_PATTERN,
            description="`next_cursor` of the previous page",
        ),
    ] = None,
    status: Annotated[JobStatus | None, Query(examples=["completed"])] = None,
) -> Response:
    """This client's jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""
    query = job_store.list_query(client_id, limit=limit, cursor=cursor, status=status)
    # In the event loop (async psycopg): a page is one short indexed read, so it needs no thread
    # hop, and concurrent pages interleave on the loop instead of trading the GIL between threads.
    async with state.async_reads.connect() as conn:
        rows = (await conn.execute(query)).all()
    jobs, next_cursor = job_store.page_of(rows, limit)
    items = [with_links(job_store.job_view(job).model_dump_json().encode(), job.id) for job in jobs]
    cursor_json = b"null" if next_cursor is None else f'"{next_cursor}"'.encode()
    # Serialized here, so FastAPI does not validate the page a second time.
    body = b'{"items":[' + b",".join(items) + b'],"next_cursor":' + cursor_json + b"}"
    return Response(body, media_type=JSON)


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266/5987)."""
    ascii_name = (
        "".join(
            ch if ch.isascii() and (ch.isalnum() or ch in "._- ") else "_" for ch in filename
        ).strip()
        or "image"
    )
    quoted = urllib.parse.quote(filename, safe="")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quoted}"


async def _download(
    ctx: ServiceContext,
    if_none_match: str | None,
    client_id: uuid.UUID,
    job_id: str,
    role: BlobRole,
) -> Response:
    uid = _parse_id(job_id)

    def load() -> Response:
        download = services.open_download(ctx, client_id, uid, role, if_none_match)
        headers = {"ETag": download.etag, "Cache-Control": DOWNLOAD_CACHE}
        if download.url is not None:
            return RedirectResponse(download.url, status_code=307)
        reader = download.reader
        if reader is None:  # the client's copy is current
            return Response(status_code=304, headers=headers)
        headers["Content-Disposition"] = content_disposition(download.filename)
        headers["X-Content-Type-Options"] = "nosniff"
        if reader.size <= DOWNLOAD_CHUNK_BYTES:  # one piece: no streaming machinery needed
            try:
                body = b"".join(reader.chunks())
            finally:
                reader.close()
            return Response(body, media_type=reader.content_type, headers=headers)
        headers["Content-Length"] = str(reader.size)
        return StreamingResponse(_pieces(reader), media_type=reader.content_type, headers=headers)

    return await run_in_threadpool(load)


def _pieces(reader: BlobReader) -> Iterator[bytes]:
    """A big image in pieces (each read in a worker thread): never whole in memory."""
    try:
        yield from reader.chunks()
    finally:
        reader.close()


@router.get(
    "/jobs/{job_id}/result",
    operation_id="getResult",
    response_class=Response,
    responses={
        200: {**DOWNLOAD, "links": {"Revalidate": _revalidate("getResult")}},
        304: NOT_MODIFIED,
        **errors(401, 404, 409, 410, 503),
    },
)
async def get_result(
    job_id: JobId, ctx: ServicesDep, client_id: ClientId, if_none_match: IfNoneMatch = None
) -> Response:
    """The converted image (409 until the job is completed)."""
    return await _download(ctx, if_none_match, client_id, job_id, "result")


@router.get(
    "/jobs/{job_id}/source",
    operation_id="getSource",
    response_class=Response,
    responses={
        200: {**DOWNLOAD, "links": {"Revalidate": _revalidate("getSource")}},
        304: NOT_MODIFIED,
        **errors(401, 404, 410, 503),
    },
)
async def get_source(
    job_id: JobId, ctx: ServicesDep, client_id: ClientId, if_none_match: IfNoneMatch = None
) -> Response:
    """The uploaded original (410 once a canceled job's images are deleted)."""
    return await _download(ctx, if_none_match, client_id, job_id, "source")


@router.post(
    "/jobs/{job_id}/cancel",
    operation_id="cancelJob",
    response_model=Job,
    responses={
        200: {"description": "The job, canceled unless it had finished", "links": CANCEL_LINKS},
        **errors(401, 404, 503),
    },
)
async def cancel_job(job_id: JobId, ctx: ServicesDep, client_id: ClientId) -> Response:
    """Cancel a queued or processing job: it ends `canceled` and its images are deleted. A job
    that already finished is answered as it is."""
    uid = _parse_id(job_id)
    body = await run_in_threadpool(services.cancel_job, ctx, client_id, uid)
    return Response(with_links(body, uid), media_type=JSON)


@router.delete(
    "/jobs/{job_id}",
    status_code=204,
    operation_id="deleteJob",
    response_class=Response,
    responses={
        204: {"description": "Deleted", "links": DELETE_LINKS},
        **errors(401, 404, 503),
    },
)
async def delete_job(job_id: JobId, ctx: ServicesDep, client_id: ClientId) -> Response:
    """Delete a job and its images, whatever its state (a running conversion is dropped)."""
    uid = _parse_id(job_id)
    await run_in_threadpool(services.remove_job, ctx, client_id, uid)
    return Response(status_code=204)
