"""Jobs: upload, poll (ETag, long poll), list, download, cancel/delete."""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from imgconv_api import metrics
from imgconv_api.deps import ClientId, StateDep
from imgconv_api.polling import answer_poll
from imgconv_api.schemas import ERROR_RESPONSES, JobPage, JobsCreated
from imgconv_api.state import AppState
from imgconv_api.uploads import parse_upload
from imgconv_core.db import job_store
from imgconv_core.db.job_store import StoredJob
from imgconv_core.db.models import Job
from imgconv_core.db.session import transaction
from imgconv_core.errors import (
    IdempotencyConflict,
    ImageGone,
    JobNotCompleted,
    JobNotFound,
    Unauthorized,
)
from imgconv_core.images.formats import EXTENSIONS
from imgconv_core.images.inspect import ImageLimits
from imgconv_core.job_ids import job_id_belongs, new_job_id
from imgconv_core.jobs import JobStatus, JobView
from imgconv_core.storage import DOWNLOAD_CHUNK_BYTES, BlobReader, blob_key
from imgconv_core.storage.s3 import S3BlobStore
from imgconv_core.telemetry.metrics import observe_terminal
from imgconv_core.telemetry.tracing import current_traceparent
from imgconv_core.uploads import parse_conversion_request, prepare_jobs, upload_fingerprint

router = APIRouter(tags=["jobs"])

JSON = "application/json"
DOWNLOAD_CACHE = "private, max-age=31536000, immutable"


def _parse_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError:
        raise JobNotFound("no such job") from None


def _own_job(state: AppState, job_id: uuid.UUID, client_id: uuid.UUID) -> Job:
    """Load a job of this client (another client's job is indistinguishable from none)."""
    if not job_id_belongs(state.secret, client_id, job_id):
        raise JobNotFound("no such job")
    with state.reads() as tx:
        job = job_store.get_job(tx, job_id)
    if job is None or job.client_id != client_id:
        raise JobNotFound("no such job")
    return job


def _json_bodies(jobs: list[StoredJob]) -> list[bytes]:
    return [job_store.job_view(job).model_dump_json().encode() for job in jobs]


@router.post(
    "/jobs",
    status_code=202,
    response_model=JobsCreated,
    responses=ERROR_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file", "format"],
                        "properties": {
                            "file": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                            },
                            "format": {
                                "type": "string",
                                "enum": [
                                    "jpeg",
                                    "jpg",
                                    "png",
                                    "webp",
                                    "gif",
                                    "bmp",
                                    "tiff",
                                    "tif",
                                    "avif",
                                ],
                            },
                            "quality": {"type": "integer", "minimum": 1, "maximum": 100},
                            "max_width": {"type": "integer", "minimum": 1},
                            "max_height": {"type": "integer", "minimum": 1},
                            "strip_metadata": {"type": "boolean", "default": True},
                        },
                    }
                }
            },
        }
    },
)
async def create_jobs(
    request: Request,
    state: StateDep,
    client_id: ClientId,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Response:
    """Upload one or more images (`file` parts) to convert; all or nothing."""
    limits = state.rate_limits
    await limits.hit(limits.upload_per_token, "upload-token", client_id.hex)
    await limits.hit(limits.upload_per_ip, "upload-ip", limits.client_ip(request))
    form = await parse_upload(request, state.settings)
    conversion = parse_conversion_request(form.fields)
    settings = state.settings
    image_limits = ImageLimits(max_pixels=settings.max_pixels, max_frames=settings.max_frames)

    fingerprint = upload_fingerprint(conversion, form.files) if idempotency_key else ""
    traceparent = current_traceparent()

    def earlier_upload() -> list[StoredJob] | None:
        if not idempotency_key:
            return None
        with state.reads() as tx:
            earlier = job_store.find_idempotent_upload(tx, client_id, idempotency_key)
        if earlier is not None and earlier[0] != fingerprint:
            raise IdempotencyConflict("this Idempotency-Key was used for a different upload")
        return earlier[1] if earlier else None

    def accept() -> tuple[list[StoredJob], list[bytes], bool]:
        if (earlier := earlier_upload()) is not None:
            return earlier, _json_bodies(earlier), False
        new_jobs = prepare_jobs(
            conversion, form.files, image_limits, lambda: new_job_id(state.secret, client_id)
        )
        idem = (idempotency_key, fingerprint) if idempotency_key else None
        try:
            with transaction(state.sessions) as tx:
                jobs = job_store.insert_jobs(
                    tx, state.stores.current, client_id, new_jobs, idem, traceparent
                )
        except IntegrityError as exc:
            constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", None)
            # The same key raced us: answer as the retry it is.
            if constraint == "pk_idempotency_keys" and (earlier := earlier_upload()) is not None:
                return earlier, _json_bodies(earlier), False
            if constraint == "fk_jobs_client_id_clients":
                raise Unauthorized("this token's client no longer exists; get a new token") from exc
            raise
        # Committed: now it may be published (by the relay; if the broker is down or this
        # process dies first, the sweeper publishes it).
        state.outbox.add([job.id for job in jobs])
        return jobs, [state.cache_job(job) for job in jobs], True

    jobs, bodies, created = await run_in_threadpool(accept)
    if created:
        metrics.count_accepted(jobs)
    # The jobs' JSON is already encoded (it is what the cache holds): no second serialization.
    return Response(
        b'{"jobs":[' + b",".join(bodies) + b"]}",
        status_code=202,
        media_type=JSON,
        headers={"Location": f"/api/v1/jobs/{jobs[0].id}"},
    )


@router.get(
    "/jobs/{job_id}",
    response_model=JobView,
    responses={**ERROR_RESPONSES, 304: {"description": "Not modified (If-None-Match)"}},
)
async def get_job(
    job_id: str,
    request: Request,
    state: StateDep,
    wait: Annotated[float, Query(ge=0, le=30, description="long poll: seconds to wait")] = 0,
) -> Response:
    """A job's status. With `If-None-Match` it answers 304 while unchanged; with `wait` it
    answers as soon as the job changes, or after `wait` seconds. (Served by the poll fast path;
    this route documents it and handles what the fast path leaves to FastAPI.)"""
    answer = await answer_poll(
        state,
        request.headers.get("authorization"),
        job_id,
        wait,
        request.headers.get("if-none-match"),
    )
    state.poll_metrics.answered(answer.outcome)
    return Response(
        answer.body,
        status_code=answer.status,
        headers=answer.headers,
        media_type=JSON if answer.body else None,
    )


@router.get("/jobs", response_model=JobPage, responses=ERROR_RESPONSES)
async def list_jobs(
    state: StateDep,
    client_id: ClientId,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    status: JobStatus | None = None,
) -> Response:
    """This client's jobs, newest first; pass `next_cursor` back as `cursor` for the next page."""

    query = job_store.list_query(client_id, limit=limit, cursor=cursor, status=status)
    # In the event loop (async psycopg): a page is one short indexed read, so it needs no thread
    # hop, and concurrent pages interleave on the loop instead of trading the GIL between threads.
    async with state.async_reads.connect() as conn:
        rows = (await conn.execute(query)).all()
    jobs, next_cursor = job_store.page_of(rows, limit)
    body = JobPage(items=[job_store.job_view(j) for j in jobs], next_cursor=next_cursor)
    # Serialized here, so FastAPI does not validate the page a second time.
    return Response(body.model_dump_json().encode(), media_type=JSON)


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


def download_name(job: Job, role: Literal["source", "result"]) -> str:
    """The original name for the source; the same stem with the target's extension for a result."""
    if role == "source":
        return job.filename
    stem = job.filename.rsplit(".", 1)[0] if "." in job.filename else job.filename
    return f"{stem}.{EXTENSIONS.get(job.target_format, job.target_format)}"


async def _download(
    state: AppState,
    request: Request,
    client_id: uuid.UUID,
    job_id: str,
    role: Literal["source", "result"],
) -> Response:
    uid = _parse_id(job_id)
    etag = f'"{uid}-{role}"'

    def load() -> Response:
        job = _own_job(state, uid, client_id)
        if role == "result" and job.status != JobStatus.COMPLETED.value:
            raise JobNotCompleted(
                f"the job is {job.status}; the result exists once it is completed",
                details={"status": job.status},
            )
        headers = {"ETag": etag, "Cache-Control": DOWNLOAD_CACHE}
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        store = state.stores.of(job.storage)
        key = blob_key(uid, role)
        if isinstance(store, S3BlobStore) and state.settings.s3_presigned_downloads:
            if job.status == JobStatus.CANCELED.value:  # a canceled job's images are deleted
                raise ImageGone(f"the {role} image was deleted")
            return RedirectResponse(store.presigned_url(key), status_code=307)
        with state.reads() as tx:
            reader = store.open(tx, key)
        if reader is None:
            raise ImageGone(f"the {role} image was deleted")
        headers["Content-Disposition"] = content_disposition(download_name(job, role))
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


@router.get("/jobs/{job_id}/result", responses=ERROR_RESPONSES)
async def get_result(
    job_id: str, request: Request, state: StateDep, client_id: ClientId
) -> Response:
    """The converted image (409 until the job is completed)."""
    return await _download(state, request, client_id, job_id, "result")


@router.get("/jobs/{job_id}/source", responses=ERROR_RESPONSES)
async def get_source(
    job_id: str, request: Request, state: StateDep, client_id: ClientId
) -> Response:
    """The uploaded original."""
    return await _download(state, request, client_id, job_id, "source")


@router.delete("/jobs/{job_id}", status_code=204, responses=ERROR_RESPONSES)
async def delete_job(job_id: str, state: StateDep, client_id: ClientId) -> Response:
    """Cancel a queued/processing job (it ends `canceled`), or delete a finished one;
    its stored images are deleted either way."""
    uid = _parse_id(job_id)

    def remove() -> None:
        job = _own_job(state, uid, client_id)
        store = state.stores.of(job.storage)
        with transaction(state.sessions) as tx:
            if JobStatus(job.status).is_terminal:
                job_store.delete_job(tx, store, uid)
                deleted = True
            else:
                job = job_store.cancel_job(tx, store, job)
                deleted = JobStatus(job.status) is not JobStatus.CANCELED
                if deleted:  # finished in the meantime
                    job_store.delete_job(tx, store, uid)
        if deleted:
            state.forget_job(uid)
        else:
            observe_terminal(job, by_worker=False)
            state.cache_job(job)

    await run_in_threadpool(remove)
    return Response(status_code=204)
