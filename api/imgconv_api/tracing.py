"""The API's traces (off unless OTEL_* asks, see `imgconv_core.telemetry.tracing`).

Traced: FastAPI requests (except health checks and /metrics), their database queries (psycopg:
the SQLAlchemy instrumentation does not support SQLAlchemy 2.1 and refuses to load), the
synchronous Redis client (status cache writes), and Celery publishes, each of which continues
the trace of the job's upload. Not traced: polls, which the fast path answers before FastAPI
(a single-span trace per poll would drown everything else), and queries or Redis commands
outside any request (health checks, scrapes, the sweeper's and the outbox's bookkeeping: the
sampler drops client spans without a parent). The relay's and the sweeper's publishes are
traced all the same, under each job's stored context.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from imgconv_core.db.job_store import traceparents
from imgconv_core.telemetry.tracing import configure_tracing, tracing_active

if TYPE_CHECKING:
    from imgconv_api.state import AppState

log = logging.getLogger(__name__)

SERVICE_NAME = "imgconv-api"
UNTRACED_URLS = "healthz,readyz,metrics"

Publish = Callable[[Sequence[uuid.UUID]], list[uuid.UUID]]


class TracedPublish(Protocol):
    """A publisher that takes the jobs' stored trace contexts."""

    def __call__(
        self, job_ids: Sequence[uuid.UUID], traceparents: Mapping[uuid.UUID, str] | None = None
    ) -> list[uuid.UUID]: ...


def instrument_app(app: FastAPI) -> bool:
    """Configure tracing for this process and instrument the app; False when tracing is off."""
    if not configure_tracing(SERVICE_NAME):
        return False
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=UNTRACED_URLS, exclude_spans=["receive", "send"]
    )
    # Publish spans, with the context carried in the message headers.
    CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]
    # Before the pools open their first connection (in the lifespan): psycopg's connect is
    # what gets wrapped, for the sync and the async engine alike.
    PsycopgInstrumentor().instrument()
    return True


def instrument_state(state: AppState) -> None:
    """Instrument the synchronous Redis client (status cache writes; the async one serves
    polls and pub/sub, which stay untraced)."""
    if not tracing_active():
        return
    from opentelemetry.instrumentation.redis import RedisInstrumentor

    RedisInstrumentor.instrument_client(state.services.redis)


def with_stored_traces(publish: TracedPublish, reads: sessionmaker[Session]) -> Publish:
    """`publish` that first looks the jobs' stored trace contexts up (one query per batch, only
    while tracing is on: otherwise `publish` itself)."""
    if not tracing_active():
        return publish

    def publish_traced(job_ids: Sequence[uuid.UUID]) -> list[uuid.UUID]:
        try:
            with reads() as tx:
                stored = traceparents(tx, job_ids)
        except Exception as exc:  # publishing matters more than its trace
            log.warning("trace contexts unavailable, publishing without: %s", exc)
            stored = {}
        return publish(job_ids, stored)

    return publish_traced
