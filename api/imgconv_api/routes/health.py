"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from imgconv_api.deps import StateDep
from imgconv_api.schemas import Health, Readiness
from imgconv_core.telemetry.metrics import BuildInfo, exposition

router = APIRouter(tags=["health"])

CHECK_TIMEOUT = 3.0


@router.get("/healthz", operation_id="healthz", response_model=Health)
async def healthz() -> Health:
    """The process is alive (no dependency checks)."""
    return Health(status="ok")


@router.get(
    "/readyz",
    operation_id="readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Something it needs is down"}},
)
async def readyz(state: StateDep) -> JSONResponse:
    """Ready when Postgres, Redis, the broker and the image store answer; 503 naming what is
    down otherwise."""

    def database() -> None:
        with state.services.reads() as tx:
            tx.execute(text("SELECT 1"))

    async def redis_check() -> None:
        await state.redis.ping()

    async def run(check: Callable[[], None]) -> None:
        await run_in_threadpool(check)

    checks = {
        "database": run(database),
        "redis": redis_check(),
        "broker": run(state.publisher.ping),
        "storage": run(state.services.stores.current.check),
    }
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            await asyncio.wait_for(check, CHECK_TIMEOUT)
            results[name] = "ok"
        except Exception as exc:
            results[name] = f"unavailable: {type(exc).__name__}"
    ready = all(value == "ok" for value in results.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": results},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", include_in_schema=False)
async def metrics(state: StateDep) -> Response:
    """Prometheus text exposition (every process's, with PROMETHEUS_MULTIPROC_DIR)."""
    body = await run_in_threadpool(exposition, [API_BUILD, state.backlog])
    return Response(body, media_type=CONTENT_TYPE_LATEST)


API_BUILD = BuildInfo("api")
