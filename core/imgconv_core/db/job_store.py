"""Job persistence used by the API: clients, uploads, lookups, keyset pages, cancel/delete."""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, BinaryIO, Protocol, TypeAlias, runtime_checkable

from sqlalchemy import Select, delete, func, insert, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from imgconv_core import status_cache
from imgconv_core.db.models import Client, IdempotencyKey, Job
from imgconv_core.errors import InvalidRequest, StorageUnavailable
from imgconv_core.jobs import LIVE_STATUSES, JobError, JobStatus, JobView
from imgconv_core.processing import moved_to
from imgconv_core.storage import BlobStore, blob_key
from imgconv_core.tokens import IssuedToken

log = logging.getLogger(__name__)

# For one test only (the orphan sweep's): the process exits right after writing an upload's
# objects, before its rows commit, as a crash there would.
_EXIT_AFTER_OBJECT_PUT = os.environ.get("IMGCONV_TEST_EXIT_AFTER_OBJECT_PUT") == "1"

# A job as read from the database: a `Job`, or a row of `VIEW_COLUMNS` / `STORED_COLUMNS`.
JobRow: TypeAlias = Any

# `JobView` declares the public fields; each is read from the column of the same name, except
# `error`, which is made of two columns.
VIEW_FIELDS = tuple(name for name in JobView.model_fields if name != "error")
VIEW_COLUMNS = [*(getattr(Job, name) for name in VIEW_FIELDS), Job.error_code, Job.error_message]
# What the status cache needs besides the view: the owner and the version (the poll ETag).
STORED_COLUMNS = [*VIEW_COLUMNS, Job.client_id, Job.version]


def job_view(job: JobRow) -> JobView:
    """The public representation of a job row."""
    values = {name: getattr(job, name) for name in VIEW_FIELDS}
    code = job.error_code
    values["error"] = None if code is None else JobError(code=code, message=job.error_message or "")
    return JobView.model_validate(values)


def cache_entry(job: JobRow) -> bytes:
    """The job's status cache entry: its view, owner and version, encoded once."""
    return status_cache.encode_entry(job.client_id, job_view(job), job.version)


def create_client(tx: Session, issued: IssuedToken) -> None:
    """Record a new anonymous client (only its token's hash)."""
    tx.add(Client(id=issued.client_id, token_hash=issued.token_hash))


class SourceFile(Protocol):
    """An uploaded file to store: its size and its bytes (in memory or in a temporary file)."""

    @property
    def size(self) -> int: ...

    def contents(self) -> AbstractContextManager[bytes]:
        """The whole content, for the duration of the `with` block (the process bounds how
        many bytes are read out at once, so this may wait)."""


@runtime_checkable
class StreamableSource(SourceFile, Protocol):
    """A source file that can also be read as a file object (e.g. an upload spilled to disk)."""

    def stream(self) -> AbstractContextManager[BinaryIO]:
        """The content as a file object at its start, for the duration of the `with` block."""


@dataclass(frozen=True)
class BytesSource:
    """A source file already in memory (jobs made by code rather than uploaded)."""

    data: bytes

    @property
    def size(self) -> int:
        """The content's length."""
        return len(self.data)

    @contextmanager
    def contents(self) -> Iterator[bytes]:
        """The content."""
        yield self.data


@dataclass(frozen=True)
class NewJob:
    """A validated upload, ready to be stored."""

    filename: str
    source: SourceFile
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
# A key another upload holds is left alone: it answers no row, and the caller replays that
# upload. The INSERT waits for the other upload's transaction, so it sees its outcome.
_INSERT_IDEMPOTENCY_KEY = (
    pg_insert(IdempotencyKey).on_conflict_do_nothing().returning(IdempotencyKey.key)
)


def insert_jobs(
    tx: Session,
    store: BlobStore,
    client_id: uuid.UUID,
    new_jobs: Sequence[NewJob],
    idempotency: tuple[str, str] | None = None,
    traceparent: str | None = None,
) -> list[JobRow] | None:
    """Store the jobs and their source images, all or nothing; None, with no job stored, if
    another upload holds the `(key, fingerprint)` idempotency. `traceparent` is the upload's
    trace context (None when tracing is off).

    A transactional store writes in the caller's transaction; any other gets the objects first,
    before any row exists, so a committed job always has its image (a crash in between leaves
    objects the sweep removes)."""
    if not store.transactional:
        # No statement has run yet: the session holds no connection while the objects upload.
        _put_sources(tx, store, new_jobs)
        if _EXIT_AFTER_OBJECT_PUT:
            os._exit(70)
    try:
        rows = _insert_rows(tx, store, client_id, new_jobs, idempotency, traceparent)
    except IntegrityError:
        if not store.transactional:  # nothing refers to them
            _forget_sources(tx, store, new_jobs)
        raise
    if rows is None:
        if not store.transactional:
            _forget_sources(tx, store, new_jobs)
        return None
    if store.transactional:
        # Rows before blobs here: a constraint error aborts before the big writes.
        _put_sources(tx, store, new_jobs)
    return rows


def _put_sources(tx: Session, store: BlobStore, new_jobs: Sequence[NewJob]) -> None:
    for new in new_jobs:
        _put_source(tx, store, new)


def _put_source(tx: Session, store: BlobStore, new: NewJob) -> None:
    key = blob_key(new.id, "source")
    if store.streams_files and isinstance(new.source, StreamableSource):
        # The store reads the file in pieces: its bytes never sit in memory whole.
        with new.source.stream() as file:
            store.put(tx, key, file, new.source_mime)
        return
    # One file's bytes in memory at a time, released with this frame.
    with new.source.contents() as data:
        store.put(tx, key, data, new.source_mime)


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
) -> list[JobRow] | None:
    conn = tx.connection()
    if idempotency is not None:
        key, fingerprint = idempotency
        taken = conn.execute(
            _INSERT_IDEMPOTENCY_KEY,
            {
                "client_id": client_id,
                "key": key,
                "fingerprint": fingerprint,
                "job_ids": [new.id for new in new_jobs],
            },
        ).first()
        if taken is None:
            return None
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
                "source_bytes": new.source.size,
                "source_width": new.width,
                "source_height": new.height,
                "attempts": 0,
                "storage": store.backend.value,
                "traceparent": traceparent,
            }
            for new in new_jobs
        ],
    ).all()
    return list(rows)


@dataclass(frozen=True)
class EarlierUpload:
    """An upload made with an Idempotency-Key: what it was bound to and its jobs still stored."""

    fingerprint: str
    job_count: int
    jobs: list[JobRow]


def find_idempotent_upload(tx: Session, client_id: uuid.UUID, key: str) -> EarlierUpload | None:
    """The earlier upload with this Idempotency-Key, if any."""
    row = tx.get(IdempotencyKey, (client_id, key))
    if row is None:
        return None
    rows = tx.execute(select(*STORED_COLUMNS).where(Job.id.in_(row.job_ids))).all()
    by_id = {job.id: job for job in rows}
    jobs = [by_id[i] for i in row.job_ids if i in by_id]
    return EarlierUpload(row.fingerprint, len(row.job_ids), jobs)


def traceparents(tx: Session, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The stored trace contexts of these jobs (those that have one)."""
    rows = tx.execute(
        select(Job.id, Job.traceparent).where(Job.id.in_(job_ids), Job.traceparent.is_not(None))
    ).all()
    return {job_id: str(traceparent) for job_id, traceparent in rows}


def get_job(tx: Session, job_id: uuid.UUID) -> Job | None:
    """A job by id, whoever owns it."""
    return tx.get(Job, job_id)


def lock_job(tx: Session, job_id: uuid.UUID) -> Job | None:
    """A job by id, its row locked until the transaction ends (a worker's change waits)."""
    return tx.scalars(
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()


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


# A cursor is `<created_at in microseconds since 1970>-<job id in hex>`: every string of that
# shape is a valid cursor (the OpenAPI document gives the pattern), none needs decoding tricks.
CURSOR_PATTERN = r"^[0-9]{1,17}-[0-9a-f]{32}$"
_CURSOR = re.compile(CURSOR_PATTERN)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(job: JobRow) -> str:
    """A keyset cursor pointing after `job`."""
    return f"{(job.created_at - _EPOCH) // _MICROSECOND}-{job.id.hex}"


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The (created_at, id) key of a cursor; InvalidRequest if it is not one."""
    if not _CURSOR.fullmatch(cursor):
        raise InvalidRequest("cursor is not valid; use next_cursor from a previous page")
    micros, job_id = cursor.split("-")
    return _EPOCH + int(micros) * _MICROSECOND, uuid.UUID(hex=job_id)


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


def page_of(rows: Sequence[JobRow], limit: int) -> tuple[list[JobRow], str | None]:
    """The jobs of a page and the cursor of the next one (None on the last page)."""
    jobs = list(rows)
    next_cursor = encode_cursor(jobs[limit - 1]) if len(jobs) > limit else None
    return jobs[:limit], next_cursor


def cancel_job(tx: Session, store: BlobStore, job: Job) -> Job:
    """Cancel a job locked by `lock_job` and delete its images; a finished job is left as it
    is. The job row stays, `canceled`."""
    if JobStatus(job.status).is_terminal:
        return job
    canceled = tx.scalars(
        update(Job)
        .where(Job.id == job.id, Job.status.in_(LIVE_STATUSES))
        .values(moved_to(JobStatus.CANCELED))
        .returning(Job)
        .execution_options(populate_existing=True)
    ).one()
    store.delete(tx, [blob_key(job.id, "source"), blob_key(job.id, "result")])
    return canceled


def delete_job(tx: Session, store: BlobStore, job_id: uuid.UUID) -> None:
    """Delete a job and its images (a worker converting it finds it gone and stores nothing)."""
    store.delete(tx, [blob_key(job_id, "source"), blob_key(job_id, "result")])
    tx.execute(delete(Job).where(Job.id == job_id))


def count_by_status(tx: Session) -> dict[str, int]:
    """Number of jobs in each status, across all clients (aggregates only)."""
    counts = {status.value: 0 for status in JobStatus}
    rows = tx.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    for status, count in rows:
        counts[status] = int(count)
    return counts


def jobs_changed_since(
    tx: Session, since: datetime, *, after: uuid.UUID | None = None, limit: int = 5000
) -> list[JobRow]:
    """Jobs changed at or after `since` (with `after`: past the job `after` changed at
    `since`), oldest change first, with their `updated_at`: the cache healer's work, as plain
    rows, not ORM objects."""
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
    return list(rows)
