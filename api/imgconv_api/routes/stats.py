"""Aggregate service statistics for the status strip."""

from __future__ import annotations

import logging
import time

from amqp.exceptions import ChannelError
from fastapi import APIRouter
from kombu.exceptions import KombuError
from starlette.concurrency import run_in_threadpool

from imgconv_api.deps import ClientId, StateDep
from imgconv_api.paths import API_PREFIX
from imgconv_api.schemas import Limits, Stats, errors
from imgconv_core.db.job_store import count_by_status
from imgconv_core.images.formats import ImageFormat

# The prefix belongs to the router, so a route's own path is its whole template (metrics labels).
router = APIRouter(prefix=API_PREFIX, tags=["stats"])
log = logging.getLogger(__name__)

STATS_TTL = 2.0


@router.get("/stats", operation_id="getStats", response_model=Stats, responses=errors(401))
async def get_stats(state: StateDep, _client: ClientId) -> Stats:
    """Queue depth, workers online, jobs by status (all clients, aggregates only) and limits."""
    cached = state.stats_cache
    if cached is not None and time.monotonic() - cached[0] < STATS_TTL:
        return cached[1]

    def collect() -> Stats:
        depth: int | None
        workers: int | None
        try:
            depth, workers = state.publisher.queue_depth()
        except (KombuError, ChannelError, OSError) as exc:
            log.warning("broker unavailable for stats: %s", exc)
            depth = workers = None
        with state.services.reads() as tx:
            by_status = count_by_status(tx)
        settings = state.settings
        return Stats(
            queue_depth=depth,
            workers_online=workers,
            jobs_by_status=by_status,
            limits=Limits(
                max_file_bytes=settings.max_file_bytes,
                max_files=settings.max_files,
                max_pixels=settings.max_pixels,
                max_frames=settings.max_frames,
                formats=[f.value for f in ImageFormat],
            ),
        )

    stats = await run_in_threadpool(collect)
    state.stats_cache = (time.monotonic(), stats)
    return stats
