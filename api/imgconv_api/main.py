"""The FastAPI application factory: `uvicorn imgconv_api.main:create_app --factory`."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from imgconv_api.errors import install_error_handlers
from imgconv_api.memory import return_large_buffers
from imgconv_api.metrics import MetricsMiddleware
from imgconv_api.openapi import document_settings
from imgconv_api.polling import PollFastPath
from imgconv_api.routes import health, jobs, stats, tokens
from imgconv_api.state import AppState
from imgconv_api.tracing import instrument_app
from imgconv_core.settings import Settings, get_settings


class ImgconvApp(FastAPI):
    """FastAPI with the poll fast path in front of its whole middleware stack."""

    fast_path: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.fast_path is not None:
            await self.fast_path(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None, *, run_sweeper: bool = True) -> FastAPI:
    """Build the API; connections open in the lifespan, not at import."""
    settings = settings or get_settings()
    return_large_buffers()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = AppState.open(settings, run_sweeper=run_sweeper)
        app.state.imgconv = state
        state.start()
        # Everything loaded so far lives as long as the process: keep it out of GC passes,
        # which otherwise walk it all on every full collection (a p99 latency spike).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await state.close()

    app = ImgconvApp(
        title="imgconv",
        version="1.0.0",
        description="Upload images, poll their conversion jobs, download the results.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for router in (tokens.router, jobs.router, stats.router, health.router):
        app.include_router(router)
    document_settings(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["ETag", "Location", "Retry-After"],
        )
    instrument_app(app)  # traces, when OTEL_* asks for them
    app.add_middleware(MetricsMiddleware)
    # Polls skip every other layer (the fast path keeps its own metrics and error shape).
    app.fast_path = PollFastPath(partial(FastAPI.__call__, app), lambda: app.state.imgconv)
    return app
