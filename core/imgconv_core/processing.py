"""What a worker does with a job, as transactions: claim, finish, fail, re-queue, sweep.

A job is claimed by one worker process at a time (`claimed_by` = "<host>:<pid>", with a lease).
A duplicate or redelivered message for a claimed job either takes over (the holder is provably
dead, or its lease ran out), is deferred until the lease ends, or is dropped (job finished).
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.orm import Session

from imgconv_core.db.models import IdempotencyKey, Job
from imgconv_core.errors import StorageUnavailable
from imgconv_core.jobs import JobStatus
from imgconv_core.processes import pid_alive
from imgconv_core.settings import StorageBackend
from imgconv_core.storage import BlobStore, BlobStores, blob_key, job_keys

WORKER_LOST = "worker_lost"


def current_claimant() -> str:
    """This process's identity in `jobs.claimed_by`."""
    return f"{socket.gethostname()}:{os.getpid()}"


def holder_is_dead(claimed_by: str, me: str) -> bool:
    """Whether a claim provably belongs to a dead process (or to this one, from an earlier try).

    Only claims made on this host can be checked; elsewhere the lease decides.
    """
    if claimed_by == me:
        # One task at a time per process: our own claim is from a run that already ended.
        return True
    host, _, pid = claimed_by.rpartition(":")
    if host != me.rpartition(":")[0] or not pid.isdigit():
        return False
    return not pid_alive(int(pid))


class ClaimOutcome(StrEnum):
    CLAIMED = "claimed"
    GONE = "gone"  # finished, canceled or deleted: drop the message
    BUSY = "busy"  # a live worker holds it: try again when its lease ends
    EXHAUSTED = "exhausted"  # too many attempts: the job was failed


@dataclass(frozen=True)
class Claim:
    outcome: ClaimOutcome
    job: Job | None = None
    retry_in: float = 0.0


def claim_job(tx: Session, job_id: uuid.UUID, me: str, *, lease: float, max_attempts: int) -> Claim:
    """Try to take a job for processing (see the module docstring)."""
    job = tx.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None or JobStatus(job.status).is_terminal:
        return Claim(ClaimOutcome.GONE, job)
    now = tx.scalar(select(func.now()))
    assert now is not None
    if job.status == JobStatus.PROCESSING.value and job.claimed_by is not None:
        expired = job.lease_expires_at is None or job.lease_expires_at <= now
        if not expired and not holder_is_dead(job.claimed_by, me):
            assert job.lease_expires_at is not None
            return Claim(ClaimOutcome.BUSY, job, (job.lease_expires_at - now).total_seconds())
    if job.attempts >= max_attempts:
        failed = _fail(
            tx,
            job,
            WORKER_LOST,
            f"the conversion was interrupted {job.attempts} times (worker crashed or timed out)",
        )
        return Claim(ClaimOutcome.EXHAUSTED, failed)
    job.status = JobStatus.PROCESSING.value
    job.attempts += 1
    job.version += 1
    job.claimed_by = me
    job.started_at = now
    job.lease_expires_at = now + timedelta(seconds=lease)
    job.updated_at = now
    job.error_code = None
    job.error_message = None
    tx.flush()
    return Claim(ClaimOutcome.CLAIMED, job)


@dataclass(frozen=True)
class Result:
    data: bytes
    mime_type: str
    width: int
    height: int


def complete_job(
    tx: Session, store: BlobStore, job_id: uuid.UUID, me: str, result: Result
) -> Job | None:
    """Store the result and mark the job completed, unless it was canceled or taken over.

    `store` is the job's own. A non-transactional one gets the object first, so a completed
    job always has its result; if the job turns out canceled, failed or gone, that object is
    deleted again (one key per job: a retry or a duplicate overwrites, never adds a second)."""
    key = blob_key(job_id, "result")
    if not store.transactional:
        store.put(tx, key, result.data, result.mime_type)
    job = tx.scalars(
        update(Job)
        .where(
            Job.id == job_id,
            Job.status == JobStatus.PROCESSING.value,
            Job.claimed_by == me,
        )
        .values(
            moved_to(
                JobStatus.COMPLETED,
                result_bytes=len(result.data),
                width=result.width,
                height=result.height,
            )
        )
        .returning(Job)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if job is not None:
        if store.transactional:
            store.put(tx, key, result.data, result.mime_type)
    elif not store.transactional:
        status = tx.scalar(select(Job.status).where(Job.id == job_id))
        # Queued or another worker's: its next result overwrites this one (deleting it now
        # could remove the other worker's just-written object before it completes).
        if status is None or status in (JobStatus.CANCELED.value, JobStatus.FAILED.value):
            store.delete(tx, [key])
    return job


def _fail(tx: Session, job: Job, code: str, message: str) -> Job:
    job.status = JobStatus.FAILED.value
    job.version += 1
    job.error_code = code
    job.error_message = message
    job.claimed_by = None
    job.lease_expires_at = None
    job.finished_at = job.updated_at = datetime.now(UTC)
    tx.flush()
    return job


def fail_job(tx: Session, job_id: uuid.UUID, me: str | None, code: str, message: str) -> Job | None:
    """Mark a job failed (if `me` is given, only while this process still holds it)."""
    job = tx.scalars(select(Job).where(Job.id == job_id).with_for_update()).one_or_none()
    if job is None or JobStatus(job.status).is_terminal:
        return None
    if me is not None and job.claimed_by != me:
        return None
    return _fail(tx, job, code, message)


def moved_to(status: JobStatus, **columns: Any) -> dict[str, Any]:
    """UPDATE values that move a job to `status`: a new version (the poll ETag), nobody's claim,
    and `finished_at` when the status is terminal; `columns` add to them."""
    values: dict[str, Any] = {
        "status": status.value,
        "version": Job.version + 1,
        "updated_at": func.now(),
        "claimed_by": None,
        "lease_expires_at": None,
    }
    if status.is_terminal:
        values["finished_at"] = func.now()
    return values | columns


def release_job(tx: Session, job_id: uuid.UUID, me: str) -> Job | None:
    """Give a claimed job back to the queue (before a retry of a transient error). The claim
    does not count as an attempt: attempts bound crashes, the task's retry limit bounds these."""
    return tx.scalars(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.PROCESSING.value, Job.claimed_by == me)
        .values(moved_to(JobStatus.QUEUED, attempts=Job.attempts - 1))
        .returning(Job)
        .execution_options(populate_existing=True)
    ).one_or_none()


def requeue_expired(tx: Session, *, max_attempts: int) -> tuple[list[Job], list[Job]]:
    """Jobs whose worker vanished (lease over): re-queued, or failed after too many attempts."""
    stuck = tx.scalars(
        select(Job)
        .where(Job.status == JobStatus.PROCESSING.value, Job.lease_expires_at < func.now())
        .with_for_update(skip_locked=True)
    ).all()
    requeued, failed = [], []
    for job in stuck:
        if job.attempts >= max_attempts:
            failed.append(
                _fail(
                    tx,
                    job,
                    WORKER_LOST,
                    f"the conversion was interrupted {job.attempts} times "
                    "(worker crashed or timed out)",
                )
            )
            continue
        job.status = JobStatus.QUEUED.value
        job.version += 1
        job.claimed_by = None
        job.lease_expires_at = None
        job.enqueued_at = None  # the outbox publishes it again
        job.updated_at = datetime.now(UTC)
        requeued.append(job)
    tx.flush()
    return requeued, failed


def unpublished_jobs(tx: Session, *, older_than: float, limit: int = 500) -> list[uuid.UUID]:
    """Queued jobs whose message the broker never confirmed (the outbox)."""
    cutoff = func.now() - timedelta(seconds=older_than)
    return list(
        tx.scalars(
            select(Job.id)
            .where(
                Job.status == JobStatus.QUEUED.value,
                Job.enqueued_at.is_(None),
                Job.updated_at < cutoff,
            )
            .order_by(Job.created_at)
            .limit(limit)
        ).all()
    )


def orphaned_jobs(tx: Session, *, enqueued_before: float, limit: int = 500) -> list[uuid.UUID]:
    """Queued jobs published longer ago than `enqueued_before` seconds (call it only when the
    broker's queue is empty: then their messages were lost, e.g. a purged or recreated queue)."""
    cutoff = func.now() - timedelta(seconds=enqueued_before)
    return list(
        tx.scalars(
            select(Job.id)
            .where(Job.status == JobStatus.QUEUED.value, Job.enqueued_at < cutoff)
            .order_by(Job.created_at)
            .limit(limit)
        ).all()
    )


@dataclass(frozen=True)
class ExpiredBatch:
    deleted: list[uuid.UUID]  # jobs deleted with their images
    looked_at: int  # jobs past retention in the batch (fewer than asked: none is left)
    unreachable: frozenset[StorageBackend]  # stores whose jobs were kept for a later pass


def expire_jobs(
    tx: Session,
    stores: BlobStores,
    *,
    retention: timedelta,
    limit: int = 500,
    skip: Collection[StorageBackend] = (),
) -> ExpiredBatch:
    """Delete jobs (and their images, wherever each job's are) created longer ago than the
    retention period, and as many Idempotency-Keys that old: a retry after that long is a new
    upload. Jobs in a store that is unreachable (or in `skip`) keep their rows, so their
    images are deleted by a later call rather than left behind."""
    cutoff = func.now() - retention
    old_keys = (
        select(IdempotencyKey.client_id, IdempotencyKey.key)
        .where(IdempotencyKey.created_at < cutoff)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    tx.execute(
        delete(IdempotencyKey).where(
            tuple_(IdempotencyKey.client_id, IdempotencyKey.key).in_(old_keys)
        )
    )
    query = select(Job.id, Job.storage).where(Job.created_at < cutoff)
    if skip:
        query = query.where(Job.storage.not_in([backend.value for backend in skip]))
    rows = tx.execute(
        query.order_by(Job.created_at).limit(limit).with_for_update(skip_locked=True)
    ).all()
    by_backend: dict[StorageBackend, list[uuid.UUID]] = {}
    for job_id, backend in rows:
        by_backend.setdefault(StorageBackend(backend), []).append(job_id)
    deleted: list[uuid.UUID] = []
    unreachable: set[StorageBackend] = set()
    for backend, ids in by_backend.items():
        try:
            stores.of(backend).delete(tx, job_keys(ids))
        except StorageUnavailable:
            unreachable.add(backend)
            continue
        deleted += ids
    if deleted:
        tx.execute(delete(Job).where(Job.id.in_(deleted)))
    return ExpiredBatch(deleted, len(rows), frozenset(unreachable))
