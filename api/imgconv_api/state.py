"""Everything the API process holds open, created in the app's lifespan (no import-time globals)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import redis
import redis.asyncio as aioredis
from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from imgconv_api.job_events import JobEventHub
from imgconv_api.metrics import Backlog, PollMetrics
from imgconv_api.outbox_relay import OutboxRelay
from imgconv_api.publisher import CeleryPublisher
from imgconv_api.rate_limits import RateLimits
from imgconv_api.schemas import Stats
from imgconv_api.tracing import instrument_state, with_stored_traces
from imgconv_api.uploads import UploadBudget
from imgconv_core.db.session import make_async_engine, make_engine, make_session_factory
from imgconv_core.services import ServiceContext
from imgconv_core.settings import Settings
from imgconv_core.storage import make_stores
from imgconv_core.sweeper import Sweeper


@dataclass
class Background:
    """What runs beside the requests and what `AppState.close` releases."""

    engine: Engine
    outbox: OutboxRelay
    sweeper: Sweeper | None
    sweeper_thread: threading.Thread | None


@dataclass
class AppState:
    """What requests use: the core services' context, and what the HTTP side adds to it."""

    settings: Settings
    services: ServiceContext
    redis: aioredis.Redis  # polls and readiness, in the event loop
    async_reads: AsyncEngine  # autocommit, in the event loop: reads that need no thread
    events: JobEventHub  # wakes long polls
    rate_limits: RateLimits
    upload_budget: UploadBudget
    publisher: CeleryPublisher  # stats and readiness
    poll_metrics: PollMetrics
    backlog: Backlog  # the queue backlog gauges of /metrics
    background: Background
    stats_cache: tuple[float, Stats] | None = None  # (when read, what was read)

    @classmethod
    def open(cls, settings: Settings, *, run_sweeper: bool) -> AppState:
        """Connect pools (lazily: nothing here blocks if a service is down)."""
        engine = make_engine(settings)
        sessions = make_session_factory(engine)
        reads = make_session_factory(engine.execution_options(isolation_level="AUTOCOMMIT"))
        stores = make_stores(settings)
        url = settings.redis_url
        sync_redis = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        publisher = CeleryPublisher(settings)
        # With tracing on, each publish continues the trace of the job's upload.
        publish = with_stored_traces(publisher.publish, reads)
        outbox = OutboxRelay(sessions, publish)
        services = ServiceContext(
            settings=settings,
            sessions=sessions,
            reads=reads,
            stores=stores,
            redis=sync_redis,
            secret=settings.secret_key.get_secret_value().encode(),
            enqueue=outbox.add,
        )
        sweeper = sweeper_thread = None
        if run_sweeper:
            sweeper = Sweeper(
                settings,
                sessions,
                stores,
                sync_redis,
                publish,
                queue_depth=lambda: publisher.queue_depth()[0],
            )
            sweeper_thread = threading.Thread(
                target=sweeper.run_forever, name="sweeper", daemon=True
            )
        async_redis = aioredis.Redis.from_url(
            url, max_connections=200, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        state = cls(
            settings=settings,
            services=services,
            redis=async_redis,
            async_reads=make_async_engine(settings).execution_options(isolation_level="AUTOCOMMIT"),
            # Pub/sub blocks waiting for messages: no read timeout on that connection.
            events=JobEventHub(aioredis.Redis.from_url(url, socket_connect_timeout=1.0)),
            rate_limits=RateLimits(settings),
            upload_budget=UploadBudget(
                settings.upload_budget_bytes,
                settings.upload_memory_bytes,
                settings.upload_storing_wait_seconds,
            ),
            publisher=publisher,
            poll_metrics=PollMetrics(
                async_redis,
                enabled=settings.poll_metrics,
                remember_seconds=settings.status_cache_ttl_seconds,
            ),
            backlog=Backlog(reads, publisher, settings.broker_management_url, settings.broker_url),
            background=Background(engine, outbox, sweeper, sweeper_thread),
        )
        instrument_state(state)
        return state

    def start(self) -> None:
        """Start background work (needs a running event loop)."""
        self.events.start()
        self.background.outbox.start()
        if self.background.sweeper_thread is not None:
            self.background.sweeper_thread.start()

    async def close(self) -> None:
        """Stop background work and close pools."""
        background = self.background
        if background.sweeper is not None:
            background.sweeper.stop()
        await self.events.stop()
        background.outbox.close()
        await self.redis.aclose()
        self.services.redis.close()
        self.publisher.close()
        background.engine.dispose()
        await self.async_reads.dispose()
