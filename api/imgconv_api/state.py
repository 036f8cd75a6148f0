"""Everything the API process holds open, created in the app's lifespan (no import-time globals)."""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field

import redis
import redis.asyncio as aioredis
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import Session, sessionmaker

from imgconv_api.job_events import JobEventHub
from imgconv_api.metrics import Backlog, PollMetrics
from imgconv_api.outbox_relay import OutboxRelay
from imgconv_api.publisher import CeleryPublisher
from imgconv_api.rate_limits import RateLimits
from imgconv_api.tracing import instrument_state, with_stored_traces
from imgconv_core import status_cache
from imgconv_core.db.job_store import StoredJob, cache_entry
from imgconv_core.db.session import make_async_engine, make_engine, make_session_factory
from imgconv_core.settings import Settings
from imgconv_core.storage import BlobStores, make_stores
from imgconv_core.sweeper import Sweeper

log = logging.getLogger(__name__)


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    reads: sessionmaker[Session]  # autocommit: one round trip per single-statement read
    async_reads: AsyncEngine  # autocommit, in the event loop: reads that need no thread
    stores: BlobStores  # `stores.current` takes new images; a job's own holds its images
    redis_async: aioredis.Redis
    redis_sync: redis.Redis
    publisher: CeleryPublisher
    rate_limits: RateLimits
    events: JobEventHub
    secret: bytes
    outbox: OutboxRelay
    poll_metrics: PollMetrics
    backlog: Backlog
    sweeper: Sweeper | None = None
    sweeper_thread: threading.Thread | None = None
    stats_cache: dict[str, object] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, *, run_sweeper: bool) -> AppState:
        """Connect pools (lazily: nothing here blocks if a service is down)."""
        engine = make_engine(settings)
        sessions = make_session_factory(engine)
        reads = make_session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))
        async_reads = make_async_engine(settings).execution_options(isolation_level="AUTOCOMMIT")
        stores = make_stores(settings)
        url = settings.redis_url
        async_redis = aioredis.Redis.from_url(
            url, max_connections=200, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        sync_redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        # Pub/sub blocks waiting for messages: no read timeout on that connection.
        events_redis = aioredis.Redis.from_url(url, socket_connect_timeout=1.0)
        publisher = CeleryPublisher(settings)
        # With tracing on, each publish continues the trace of the job's upload.
        publish = with_stored_traces(publisher.publish, reads)
        state = cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            reads=reads,
            async_reads=async_reads,
            stores=stores,
            redis_async=async_redis,
            redis_sync=sync_redis,
            publisher=publisher,
            rate_limits=RateLimits(settings),
            events=JobEventHub(events_redis),
            secret=settings.secret_key.get_secret_value().encode(),
            outbox=OutboxRelay(sessions, publish),
            poll_metrics=PollMetrics(
                async_redis,
                enabled=settings.poll_metrics,
                remember_seconds=settings.status_cache_ttl_seconds,
            ),
            backlog=Backlog(reads, publisher, settings.broker_management_url, settings.broker_url),
        )
        instrument_state(state)
        if run_sweeper:
            state.sweeper = Sweeper(
                settings,
                sessions,
                stores,
                sync_redis,
                publish,
                queue_depth=lambda: publisher.queue_depth()[0],
            )
            state.sweeper_thread = threading.Thread(
                target=state.sweeper.run_forever, name="sweeper", daemon=True
            )
        return state

    def start(self) -> None:
        """Start background work (needs a running event loop)."""
        self.events.start()
        self.outbox.start()
        if self.sweeper_thread is not None:
            self.sweeper_thread.start()

    async def close(self) -> None:
        """Stop background work and close pools."""
        if self.sweeper is not None:
            self.sweeper.stop()
        await self.events.stop()
        self.outbox.close()
        await self.redis_async.aclose()
        self.redis_sync.close()
        self.publisher.close()
        self.engine.dispose()
        await self.async_reads.dispose()

    def cache_job(self, job: StoredJob) -> bytes:
        """Write a job's status through to Redis (sync; call from a worker thread); returns
        the job's JSON, the same bytes a poll answers with."""
        entry = cache_entry(job)
        try:
            status_cache.write_entry(
                self.redis_sync, job.id, entry, job.version, self.settings.status_cache_ttl_seconds
            )
        except redis.RedisError as exc:
            log.warning("status cache write failed for job %s: %s", job.id, exc)
        return status_cache.entry_body(entry)

    def forget_job(self, job_id: uuid.UUID) -> None:
        """Drop a deleted job from the cache (sync)."""
        try:
            status_cache.forget_job(self.redis_sync, job_id)
        except redis.RedisError as exc:
            log.warning("status cache delete failed for job %s: %s", job_id, exc)
