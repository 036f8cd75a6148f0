"""What a client does with its jobs: accept an upload, cancel a job, remove it, look it up,
download its images; and the token that makes a client.

Each service is one transaction that reads what it changes under a lock (or a conditional
INSERT), so a worker finishing the job at the same moment is either before or after it, never
in between. The API's routes are thin adapters over these, as the worker's task is over
`conversion.py`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import redis
from psycopg.errors import ForeignKeyViolation
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from imgconv_core import status_cache
from imgconv_core.db import job_store
from imgconv_core.db.job_store import JobRow
from imgconv_core.db.models import Job
from imgconv_core.db.session import transaction
from imgconv_core.errors import (
    IdempotencyConflict,
    ImageGone,
    JobNotCompleted,
    JobNotFound,
    Unauthorized,
    UploadGone,
)
from imgconv_core.images.formats import EXTENSIONS
from imgconv_core.images.inspect import ImageLimits
from imgconv_core.job_ids import job_id_belongs, new_job_id
from imgconv_core.jobs import JobStatus
from imgconv_core.settings import Settings
from imgconv_core.storage import BlobReader, BlobRole, BlobStores, blob_key
from imgconv_core.storage.s3 import S3BlobStore
from imgconv_core.telemetry.metrics import observe_terminal
from imgconv_core.tokens import issue_token as new_token
from imgconv_core.uploads import Upload, parse_conversion_request, prepare_jobs, upload_fingerprint

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServiceContext:
    """What the services need; built once per API process."""

    settings: Settings
    sessions: sessionmaker[Session]
    reads: sessionmaker[Session]  # autocommit: one round trip per single-statement read
    stores: BlobStores  # `current` takes new images; a job's own (`of(job.storage)`) has its
    redis: redis.Redis
    secret: bytes
    # Hands ids of committed jobs to whatever publishes them (never blocks; the sweeper
    # publishes what it misses).
    enqueue: Callable[[Sequence[uuid.UUID]], None]


@dataclass(frozen=True)
class AcceptedUpload:
    jobs: list[JobRow]
    bodies: list[bytes]  # each job's JSON as polls answer it (without links)
    created: bool  # False: a replay of an earlier upload with the same Idempotency-Key


def accept_upload(
    ctx: ServiceContext,
    client_id: uuid.UUID,
    upload: Upload,
    idempotency_key: str | None,
    traceparent: str | None = None,
) -> AcceptedUpload:
    """Validate an upload and store its jobs (all or nothing), then hand them to the outbox;
    with an Idempotency-Key, a repeat of the same upload answers the jobs of the first.
    `traceparent` is the upload's trace context, stored with its jobs (None: tracing is off)."""
    request = parse_conversion_request(upload.fields)
    idempotency = None
    if idempotency_key:
        idempotency = (idempotency_key, upload_fingerprint(request, upload.files))
        if (earlier := _earlier_upload(ctx, client_id, idempotency)) is not None:
            return AcceptedUpload(earlier, [_body(job) for job in earlier], created=False)
    settings = ctx.settings
    new_jobs = prepare_jobs(
        request,
        upload.files,
        ImageLimits.from_settings(settings),
        lambda: new_job_id(ctx.secret, client_id),
    )
    try:
        with transaction(ctx.sessions) as tx:
            jobs = job_store.insert_jobs(
                tx, ctx.stores.current, client_id, new_jobs, idempotency, traceparent
            )
    except IntegrityError as exc:
        # Jobs and idempotency keys reference their client: its row is gone (data reset).
        if isinstance(exc.orig, ForeignKeyViolation):
            raise Unauthorized("this token's client no longer exists; get a new token") from exc
        raise
    if jobs is None:
        # The same key won a race with us (its upload committed first): we are its retry.
        assert idempotency is not None
        earlier = _earlier_upload(ctx, client_id, idempotency)
        if earlier is None:  # retention removed the key since it beat us
            raise UploadGone(
                "the upload made with this Idempotency-Key expired; send it again with a new key"
            )
        return AcceptedUpload(earlier, [_body(job) for job in earlier], created=False)
    # Committed: now it may be published (by the relay; if the broker is down or this process
    # dies first, the sweeper publishes it).
    ctx.enqueue([job.id for job in jobs])
    return AcceptedUpload(jobs, [_cache(ctx, job) for job in jobs], created=True)


def _earlier_upload(
    ctx: ServiceContext, client_id: uuid.UUID, idempotency: tuple[str, str]
) -> list[JobRow] | None:
    key, fingerprint = idempotency
    with ctx.reads() as tx:
        earlier = job_store.find_idempotent_upload(tx, client_id, key)
    if earlier is None:
        return None
    if earlier.fingerprint != fingerprint:
        raise IdempotencyConflict("this Idempotency-Key was used for a different upload")
    if len(earlier.jobs) < earlier.job_count:
        raise UploadGone(
            "the jobs of the upload made with this Idempotency-Key were deleted; "
            "send it again with a new key",
            details={"jobs": earlier.job_count, "still_stored": len(earlier.jobs)},
        )
    return earlier.jobs


def own_job(ctx: ServiceContext, client_id: uuid.UUID, job_id: uuid.UUID) -> Job:
    """A job of this client (another client's job is indistinguishable from none)."""
    if not job_id_belongs(ctx.secret, client_id, job_id):
        raise JobNotFound("no such job")
    with ctx.reads() as tx:
        job = job_store.get_job(tx, job_id)
    if job is None or job.client_id != client_id:
        raise JobNotFound("no such job")
    return job


def _locked_own_job(
    ctx: ServiceContext, tx: Session, client_id: uuid.UUID, job_id: uuid.UUID
) -> Job:
    if not job_id_belongs(ctx.secret, client_id, job_id):
        raise JobNotFound("no such job")
    job = job_store.lock_job(tx, job_id)
    if job is None or job.client_id != client_id:
        raise JobNotFound("no such job")
    return job


def cancel_job(ctx: ServiceContext, client_id: uuid.UUID, job_id: uuid.UUID) -> bytes:
    """Cancel a queued or processing job (its images are deleted, the job stays `canceled`);
    a finished job stays as it is. Returns the job's JSON (without links)."""
    with transaction(ctx.sessions) as tx:
        job = _locked_own_job(ctx, tx, client_id, job_id)
        was_live = not JobStatus(job.status).is_terminal
        job = job_store.cancel_job(tx, ctx.stores.of(job.storage), job)
    if was_live:
        observe_terminal(job, by_worker=False)
    return _cache(ctx, job)


def remove_job(ctx: ServiceContext, client_id: uuid.UUID, job_id: uuid.UUID) -> None:
    """Delete a job and its images, whatever its state (a conversion in progress is dropped)."""
    with transaction(ctx.sessions) as tx:
        job = _locked_own_job(ctx, tx, client_id, job_id)
        # A store out of reach (StorageUnavailable) rolls this back: the job stays.
        job_store.delete_job(tx, ctx.stores.of(job.storage), job_id)
    try:
        status_cache.forget_jobs(ctx.redis, [job_id], ctx.settings.status_cache_ttl_seconds)
    except redis.RedisError as exc:
        log.warning("status cache delete failed for job %s: %s", job_id, exc)


def _body(job: JobRow) -> bytes:
    return job_store.job_view(job).model_dump_json().encode()


def _cache(ctx: ServiceContext, job: JobRow) -> bytes:
    """Write a job's status through to Redis; returns its JSON, the bytes polls answer with."""
    entry = job_store.cache_entry(job)
    try:
        status_cache.write_entry(
            ctx.redis, job.id, entry, job.version, ctx.settings.status_cache_ttl_seconds
        )
    except redis.RedisError as exc:
        log.warning("status cache write failed for job %s: %s", job.id, exc)
    return status_cache.entry_body(entry)


@dataclass(frozen=True)
class Download:
    """A job's image as a download answers it: nothing (the client's copy is current), an open
    reader to send (the caller closes it), or a presigned URL to send the client to."""

    etag: str  # the same for the life of the image: it never changes once stored
    filename: str
    reader: BlobReader | None = None
    url: str | None = None


def download_name(job: Job, role: BlobRole) -> str:
    """The original name for the source; the same stem with the target's extension for a result."""
    if role == "source":
        return job.filename
    stem = job.filename.rsplit(".", 1)[0] if "." in job.filename else job.filename
    return f"{stem}.{EXTENSIONS.get(job.target_format, job.target_format)}"


def open_download(
    ctx: ServiceContext,
    client_id: uuid.UUID,
    job_id: uuid.UUID,
    role: BlobRole,
    known_etag: str | None = None,
) -> Download:
    """A job's source or result image. A result exists once the job is completed; a canceled
    job's images are deleted. When `known_etag` is the image's ETag nothing is opened."""
    job = own_job(ctx, client_id, job_id)
    if role == "result" and job.status != JobStatus.COMPLETED.value:
        raise JobNotCompleted(
            f"the job is {job.status}; the result exists once it is completed",
            details={"status": job.status},
        )
    # Checked after ownership and completion, so a stale ETag cannot hide a 404 or 409.
    download = Download(etag=f'"{job_id}-{role}"', filename=download_name(job, role))
    if known_etag == download.etag:
        return download
    store = ctx.stores.of(job.storage)
    key = blob_key(job_id, role)
    if isinstance(store, S3BlobStore) and ctx.settings.s3_presigned_downloads:
        # Presigning does not look at the object: the job's state says whether it exists.
        if job.status == JobStatus.CANCELED.value:
            raise ImageGone(f"the {role} image was deleted")
        return replace(download, url=store.presigned_url(key))
    with ctx.reads() as tx:
        reader = store.open(tx, key)
    if reader is None:
        raise ImageGone(f"the {role} image was deleted")
    return replace(download, reader=reader)


def issue_token(ctx: ServiceContext) -> str:
    """A new anonymous client and its bearer token (the database keeps only its hash)."""
    issued = new_token(ctx.secret)
    with transaction(ctx.sessions) as tx:
        job_store.create_client(tx, issued)
    return issued.token
