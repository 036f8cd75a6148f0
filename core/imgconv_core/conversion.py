"""The conversion of one job, end to end: claim, load, convert, store, publish status.

Celery-free so it can be tested directly; the worker's task maps the outcome to Celery actions.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from enum import StrEnum

import redis
from sqlalchemy.orm import Session, sessionmaker

from imgconv_core import status_cache
from imgconv_core.db.job_store import cache_entry
from imgconv_core.db.models import Job
from imgconv_core.db.session import transaction
from imgconv_core.errors import ImgconvError
from imgconv_core.images.convert import ConversionOptions, convert_image
from imgconv_core.images.formats import parse_target_format
from imgconv_core.images.inspect import ImageLimits
from imgconv_core.processing import (
    ClaimOutcome,
    Result,
    claim_job,
    complete_job,
    current_claimant,
    fail_job,
    release_job,
)
from imgconv_core.settings import Settings
from imgconv_core.storage import BlobStores, blob_key
from imgconv_core.telemetry.metrics import observe_terminal
from imgconv_core.telemetry.tracing import tracer

log = logging.getLogger(__name__)

TIMED_OUT = "timed_out"
TRACER = tracer(__name__)
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class WorkerContext:
    """What a conversion needs; built once per worker process (after fork)."""

    settings: Settings
    sessions: sessionmaker[Session]
    stores: BlobStores
    redis: redis.Redis
    # Raised into a conversion from outside (the worker's soft time limit): passed through,
    # never taken for a failure of the conversion itself.
    interruptions: tuple[type[BaseException], ...] = ()


class Outcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    DROPPED = "dropped"  # duplicate of a finished/canceled job, or canceled while converting
    DEFERRED = "deferred"  # another live worker holds the job


@dataclass(frozen=True)
class ConversionReport:
    outcome: Outcome
    retry_in: float = 0.0
    error_code: str | None = None
    source_format: str | None = None
    target_format: str | None = None


def publish_status(ctx: WorkerContext, job: Job) -> None:
    """Write a job's new status through to Redis; the DB stays right if Redis is down."""
    try:
        status_cache.write_entry(
            ctx.redis, job.id, cache_entry(job), job.version, ctx.settings.status_cache_ttl_seconds
        )
    except redis.RedisError as exc:
        log.warning("status cache write failed for job %s: %s", job.id, exc)


def options_of(job: Job) -> ConversionOptions:
    """The conversion options stored with a job."""
    opts = job.options
    return ConversionOptions(
        target=parse_target_format(job.target_format),
        quality=opts.get("quality"),
        max_width=opts.get("max_width"),
        max_height=opts.get("max_height"),
        strip_metadata=bool(opts.get("strip_metadata", True)),
    )


def run_conversion(ctx: WorkerContext, job_id: uuid.UUID) -> ConversionReport:
    """Convert one job; safe to call again for the same job (duplicates are dropped)."""
    me = current_claimant()
    settings = ctx.settings
    with transaction(ctx.sessions) as tx:
        claim = claim_job(
            tx,
            job_id,
            me,
            lease=settings.task_hard_time_limit + 30,
            max_attempts=settings.max_attempts,
        )
    if claim.outcome is ClaimOutcome.GONE:
        return ConversionReport(Outcome.DROPPED)
    if claim.outcome is ClaimOutcome.BUSY:
        return ConversionReport(Outcome.DEFERRED, retry_in=claim.retry_in)
    job = claim.job
    assert job is not None
    publish_status(ctx, job)
    if claim.outcome is ClaimOutcome.EXHAUSTED:
        observe_terminal(job, by_worker=False)
        return ConversionReport(
            Outcome.FAILED,
            error_code=job.error_code,
            source_format=job.source_format,
            target_format=job.target_format,
        )
    store = ctx.stores.of(job.storage)
    # Read after the claim committed: the row lock is not held while the bytes travel.
    # Unreachable storage raises StorageUnavailable: the task retries it as transient.
    with ctx.sessions() as tx:
        source = store.get(tx, blob_key(job_id, "source"))
    if source is None:  # canceled between claim and read
        return finish_failed(ctx, job_id, me, "source_missing", "the source image is gone", job)
    try:
        with TRACER.start_as_current_span("imgconv.convert_image"):
            converted = convert_image(
                source.data,
                options_of(job),
                ImageLimits(max_pixels=settings.max_pixels, max_frames=settings.max_frames),
            )
    except ImgconvError as exc:
        return finish_failed(ctx, job_id, me, exc.code, exc.message, job)
    except ctx.interruptions:
        raise
    except Exception:
        # Bad input is a domain error above; anything else is a bug (ours or a library's).
        # End the job now, traceback logged, rather than retry it each time the lease ends.
        log.exception("job %s: the conversion raised an unexpected error", job_id)
        return finish_failed(
            ctx, job_id, me, INTERNAL_ERROR, "an internal error stopped the conversion", job
        )
    result = Result(converted.data, converted.mime_type, converted.width, converted.height)
    with TRACER.start_as_current_span("imgconv.store_result"), transaction(ctx.sessions) as tx:
        done = complete_job(tx, store, job_id, me, result)
    if done is None:
        return ConversionReport(Outcome.DROPPED)
    observe_terminal(done, by_worker=True)
    publish_status(ctx, done)
    return ConversionReport(
        Outcome.COMPLETED, source_format=job.source_format, target_format=job.target_format
    )


def finish_failed(
    ctx: WorkerContext,
    job_id: uuid.UUID,
    me: str | None,
    code: str,
    message: str,
    job: Job | None = None,
) -> ConversionReport:
    """End a job `failed` with a clear, path-free message."""
    with transaction(ctx.sessions) as tx:
        failed = fail_job(tx, job_id, me, code, message)
    if failed is None:
        return ConversionReport(Outcome.DROPPED)
    observe_terminal(failed, by_worker=True)
    publish_status(ctx, failed)
    return ConversionReport(
        Outcome.FAILED,
        error_code=code,
        source_format=job.source_format if job else None,
        target_format=job.target_format if job else None,
    )


def give_back(ctx: WorkerContext, job_id: uuid.UUID) -> None:
    """Return a claimed job to `queued` before a transient error is retried."""
    with transaction(ctx.sessions) as tx:
        job = release_job(tx, job_id, current_claimant())
    if job is not None:
        publish_status(ctx, job)
