"""Job persistence used by the API: clients, uploads, lookups, keyset pages, cancel/delete."""

from __future__ import annotations

import base64
import binascii
import logging
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, cast

from sqlalchemy import Select, delete, func, insert, select, text, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from imgconv_core import status_cache
from imgconv_core.db.models import Client, IdempotencyKey, Job
from imgconv_core.errors import InvalidRequest, StorageUnavailable
from imgconv_core.jobs import JobError, JobStatus, JobView, job_links
from imgconv_core.processing import moved_to
from imgconv_core.storage import BlobStore, blob_key
from imgconv_core.tokens import IssuedToken

log = logging.getLogger(__name__)

# For one test only (the orphan sweep's): the process exits right after writing an upload's
# objects, before its rows commit, as a crash there would.
_EXIT_AFTER_OBJECT_PUT = os.environ.get("IMGCONV_TEST_EXIT_AFTER_OBJECT_PUT") == "1"


class JobRecord(Protocol):
    """What `job_view` reads: a Job, or a row of the columns in `VIEW_COLUMNS`."""

    id: uuid.UUID
    status: str
    filename: str
    source_format: str
    target_format: str
    options: dict[str, Any]
    source_bytes: int
    result_bytes: int | None
    width: int | None
    height: int | None
    source_width: int
    source_height: int
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    error_code: str | None
    error_message: str | None


VIEW_COLUMNS = [getattr(Job, name) for name in JobRecord.__annotations__]


class StoredJob(JobRecord, Protocol):
    """A job as the API caches it: its view plus the owner and version (a Job, or a row)."""

    client_id: uuid.UUID
    version: int


STORED_COLUMNS = [*VIEW_COLUMNS, Job.client_id, Job.version]


def job_view(job: JobRecord) -> JobView:
    """The public representation of a job row."""
    error = None
    if job.error_code is not None:
        error = JobError(code=job.error_code, message=job.error_message or "")
    return JobView(
        id=job.id,
        status=JobStatus(job.status),
        filename=job.filename,
        source_format=job.source_format,
        target_format=job.target_format,
        options=job.options,
        source_bytes=job.source_bytes,
        result_bytes=job.result_bytes,
        width=job.width,
        height=job.height,
        source_width=job.source_width,
        source_height=job.source_height,
        attempts=job.attempts,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        error=error,
        links=job_links(job.id),
    )


def cache_entry(job: StoredJob) -> bytes:
    """The job's status cache entry: its view, owner and version, encoded once."""
    return status_cache.encode_entry(job.client_id, job_view(job), job.version)


def create_client(tx: Session, issued: IssuedToken) -> None:
    """Record a new anonymous client (only its token's hash)."""
    tx.add(Client(id=issued.client_id, token_hash=issued.token_hash))


@dataclass(frozen=True)
class NewJob:
    """A validated upload, ready to be stored."""

    filename: str
    data: bytes
    source_format: str
    source_mime: str
    width: int
    height: int
    target_format: str
    options: dict[str, Any]
    id: uuid.UUID


# Built once: a plain Core INSERT keeps its compiled form cached (the ORM unit of work costs
# twice the CPU on the upload path). Several files go in one multi-row statement.
_INSERT_JOBS = insert(Job).returning(*STORED_COLUMNS, sort_by_parameter_order=True)
_INSERT_IDEMPOTENCY_KEY = insert(IdempotencyKey)


def insert_jobs(
    tx: Session,
    store: BlobStore,
    client_id: uuid.UUID,
    new_jobs: Sequence[NewJob],
    idempotency: tuple[str, str] | None = None,
    traceparent: str | None = None,
) -> list[StoredJob]:
    """Store the jobs and their source images, all or nothing. A transactional store writes in
    the caller's transaction; any other gets the objects first, before any row exists, so a
    committed job always has its image (a crash in between leaves objects the sweep removes).
    `traceparent` is the upload's trace context (None when tracing is off)."""
    if not store.transactional:
        # No statement has run yet: the session holds no connection while the objects upload.
        _put_sources(tx, store, new_jobs)
        if _EXIT_AFTER_OBJECT_PUT:
            os._exit(70)
    try:
        rows = _insert_rows(tx, store, client_id, new_jobs, idempotency, traceparent)
    except IntegrityError:
        if not store.transactional:  # e.g. an Idempotency-Key race: nothing refers to them
            _forget_sources(tx, store, new_jobs)
        raise
    if store.transactional:
        # Rows before blobs here: a constraint error aborts before the big writes.
        _put_sources(tx, store, new_jobs)
    return rows


def _put_sources(tx: Session, store: BlobStore, new_jobs: Sequence[NewJob]) -> None:
    for new in new_jobs:
        store.put(tx, blob_key(new.id, "source"), new.data, new.source_mime)


def _forget_sources(tx: Session, store: BlobStore, new_jobs: Sequence[NewJob]) -> None:
    try:
        store.delete(tx, [blob_key(new.id, "source") for new in new_jobs])
    except StorageUnavailable:
        log.warning("could not delete the objects of a rejected upload; the sweep will")


def _insert_rows(
    tx: Session,
    store: BlobStore,
    client_id: uuid.UUID,
    new_jobs: Sequence[NewJob],
    idempotency: tuple[str, str] | None,
    traceparent: str | None,
) -> list[StoredJob]:
    conn = tx.connection()
    if idempotency is not None:
        key, fingerprint = idempotency
        conn.execute(
            _INSERT_IDEMPOTENCY_KEY,
            {
                "client_id": client_id,
                "key": key,
                "fingerprint": fingerprint,
                "job_ids": [new.id for new in new_jobs],
            },
        )
    rows = conn.execute(
        _INSERT_JOBS,
        [
            {
                "id": new.id,
                "client_id": client_id,
                "status": JobStatus.QUEUED.value,
                "version": 1,
                "filename": new.filename,
                "source_format": new.source_format,
                "source_mime": new.source_mime,
                "target_format": new.target_format,
                "options": new.options,
                "source_bytes": len(new.data),
                "source_width": new.width,
                "source_height": new.height,
                "attempts": 0,
                "storage": store.backend.value,
                "traceparent": traceparent,
            }
            for new in new_jobs
        ],
    ).all()
    return cast(list[StoredJob], rows)


def find_idempotent_upload(
    tx: Session, client_id: uuid.UUID, key: str
) -> tuple[str, list[StoredJob]] | None:
    """The fingerprint and jobs of an earlier upload with this Idempotency-Key, if any."""
    row = tx.get(IdempotencyKey, (client_id, key))
    if row is None:
        return None
    rows = tx.execute(select(*STORED_COLUMNS).where(Job.id.in_(row.job_ids))).all()
    by_id = {job.id: cast(StoredJob, job) for job in rows}
    return row.fingerprint, [by_id[i] for i in row.job_ids if i in by_id]


def traceparents(tx: Session, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The stored trace contexts of these jobs (those that have one)."""
    rows = tx.execute(
        select(Job.id, Job.traceparent).where(Job.id.in_(job_ids), Job.traceparent.is_not(None))
    ).all()
    return {job_id: str(traceparent) for job_id, traceparent in rows}


def get_job(tx: Session, job_id: uuid.UUID) -> Job | None:
    """A job by id, whoever owns it."""
    return tx.get(Job, job_id)


def mark_enqueued(tx: Session, job_ids: Sequence[uuid.UUID], *, again: bool = False) -> None:
    """Record that the broker accepted these jobs' messages (the outbox is done with them);
    `again` also moves the mark of jobs published before (a re-publish of lost messages)."""
    # Losing this mark in a crash only makes the sweeper publish again (a duplicate the
    # claim drops), so it need not wait for the WAL flush.
    tx.execute(text("SET LOCAL synchronous_commit TO OFF"))
    query = update(Job).where(Job.id.in_(job_ids))
    if not again:
        query = query.where(Job.enqueued_at.is_(None))
    tx.execute(query.values(enqueued_at=func.now()))


def encode_cursor(job: JobRecord) -> str:
    """An opaque keyset cursor pointing after `job`."""
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) key of a cursor; InvalidRequest if it is not one of ours."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, job_id = raw.split("|")
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidRequest("cursor is not valid; use next_cursor from a previous page") from exc


def list_query(
    client_id: uuid.UUID,
    *,
    limit: int,
    cursor: str | None = None,
    status: JobStatus | None = None,
) -> Select[Any]:
    """A page of a client's jobs, newest first (keyset pagination, no OFFSET): the query for
    `limit` + 1 rows, so that `page_of` can tell whether there is a next page."""
    # Plain rows of the needed columns: no ORM identity map on the hottest read.
    query = select(*VIEW_COLUMNS).where(Job.client_id == client_id)
    if status is not None:
        query = query.where(Job.status == status.value)
    if cursor is not None:
        created, job_id = decode_cursor(cursor)
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(created, job_id))
    return query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)


def page_of(rows: Sequence[Any], limit: int) -> tuple[list[JobRecord], str | None]:
    """The jobs of a page and the cursor of the next one (None on the last page)."""
    jobs = cast(list[JobRecord], list(rows))
    next_cursor = encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
    return jobs[:limit], next_cursor


def cancel_job(tx: Session, store: BlobStore, job: Job) -> Job:
    """Cancel a queued/processing job and delete its images; the job row stays, `canceled`."""
    row = tx.execute(
        update(Job)
        .where(Job.id == job.id, Job.status.in_([JobStatus.QUEUED, JobStatus.PROCESSING]))
        .values(moved_to(JobStatus.CANCELED))
        .returning(Job)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()
    store.delete(tx, [blob_key(job.id, "source"), blob_key(job.id, "result")])
    if row is None:  # it finished meanwhile: the caller deletes it as a terminal job
        tx.refresh(job)
        return job
    return row


def delete_job(tx: Session, store: BlobStore, job_id: uuid.UUID) -> None:
    """Delete a finished job and its images."""
    store.delete(tx, [blob_key(job_id, "source"), blob_key(job_id, "result")])
    tx.execute(delete(Job).where(Job.id == job_id))


def count_by_status(tx: Session) -> dict[str, int]:
    """Number of jobs in each status, across all clients (aggregates only)."""
    counts = {status.value: 0 for status in JobStatus}
    rows = tx.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    for status, count in rows:
        counts[status] = int(count)
    return counts


class ChangedJob(StoredJob, Protocol):
    """A stored job with the time of its last change (the cache healer's cursor)."""

    updated_at: datetime


def jobs_changed_since(
    tx: Session, since: datetime, *, after: uuid.UUID | None = None, limit: int = 5000
) -> list[ChangedJob]:
    """Jobs changed at or after `since` (with `after`: past the job `after` changed at
    `since`), oldest change first: the cache healer's work, as plain rows, not ORM objects."""
    changed = (
        Job.updated_at >= since
        if after is None
        else tuple_(Job.updated_at, Job.id) > tuple_(since, after)
    )
    rows = tx.execute(
        select(*STORED_COLUMNS, Job.updated_at)
        .where(changed)
        .order_by(Job.updated_at, Job.id)
        .limit(limit)
    ).all()
    return cast(list[ChangedJob], rows)
