"""Celery tasks: thin adapters from messages to `imgconv_core.conversion`."""

from __future__ import annotations

import logging
import uuid
from functools import lru_cache

import redis
from celery import Task, shared_task
from celery.exceptions import Ignore, SoftTimeLimitExceeded
from sqlalchemy.exc import DBAPIError, OperationalError

from imgconv_core.conversion import (
    TIMED_OUT,
    ConversionReport,
    Outcome,
    WorkerContext,
    finish_failed,
    give_back,
    run_conversion,
)
from imgconv_core.db.session import make_engine, make_session_factory
from imgconv_core.errors import StorageUnavailable
from imgconv_core.jobs import CONVERT_TASK
from imgconv_core.processing import current_claimant
from imgconv_core.settings import get_settings
from imgconv_core.storage import make_stores
from imgconv_worker import metrics, tracing

log = logging.getLogger(__name__)

TRANSIENT = (OperationalError, DBAPIError, redis.ConnectionError, StorageUnavailable)


@lru_cache(maxsize=1)
def worker_context() -> WorkerContext:
    """Per-process connections, created lazily in each forked child (never shared across fork)."""
    settings = get_settings()
    engine = make_engine(settings, pool_size=2)
    return tracing.instrument_context(
        WorkerContext(
            settings=settings,
            sessions=make_session_factory(engine),
            stores=make_stores(settings),
            redis=redis.Redis.from_url(
                settings.redis_url, socket_timeout=2, socket_connect_timeout=2
            ),
            interruptions=(SoftTimeLimitExceeded,),
        )
    )


@shared_task(name=CONVERT_TASK, bind=True, max_retries=None)  # type: ignore[untyped-decorator]
def convert(self: Task, job_id: str) -> str:
    """Convert one job (messages carry only the job id)."""
    ctx = worker_context()
    job_uuid = uuid.UUID(job_id)
    try:
        with metrics.track_conversion() as track:
            report: ConversionReport = run_conversion(ctx, job_uuid)
            track(report)
    except SoftTimeLimitExceeded:
        finish_failed(
            ctx,
            job_uuid,
            current_claimant(),
            TIMED_OUT,
            f"the conversion took longer than {ctx.settings.task_soft_time_limit} s",
        )
        raise Ignore() from None
    except TRANSIENT as exc:
        retries: int = self.request.retries
        if retries >= ctx.settings.transient_retry_limit:
            log.error("job %s: giving up after %d transient errors: %s", job_id, retries, exc)
            if isinstance(exc, StorageUnavailable):
                # The database answers, so the job can end now, with a code that says why.
                finish_failed(
                    ctx,
                    job_uuid,
                    current_claimant(),
                    exc.code,
                    f"the image store was unreachable for {retries + 1} attempts",
                )
                raise Ignore() from None
            # Leave the claim: the sweeper re-queues or fails it when the lease ends.
            raise
        try:
            give_back(ctx, job_uuid)
        except TRANSIENT:
            log.warning("job %s: could not release the claim; the lease will", job_id)
        raise self.retry(exc=exc, countdown=min(2**retries, 30)) from exc
    if report.outcome is Outcome.DEFERRED:
        # A live worker holds it; look again when its lease ends (it usually finishes first).
        raise self.retry(countdown=max(1.0, report.retry_in))
    if report.outcome is Outcome.DROPPED:
        raise Ignore()
    return report.outcome.value
