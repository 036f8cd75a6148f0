"""The worker's traces (off unless OTEL_* asks, see `imgconv_core.telemetry.tracing`).

Set up in the process that runs tasks, after the fork: each prefork child gets its own tracer
provider, export thread and connections (nothing half-open is inherited); with the solo or
threads pool the main process runs tasks and sets up at start. A task's span continues the
trace in its message headers (the upload's, through whichever publish sent it); its database
queries and status-cache writes are spans inside it. A child flushes its spans before it exits.
"""

from __future__ import annotations

from typing import Any

from celery.signals import worker_init, worker_process_init, worker_process_shutdown

from imgconv_core.conversion import WorkerContext
from imgconv_core.telemetry.tracing import configure_tracing, flush_traces, tracing_active

SERVICE_NAME = "imgconv-worker"


def _start() -> None:
    if configure_tracing(SERVICE_NAME):
        from opentelemetry.instrumentation.celery import CeleryInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor

        CeleryInstrumentor().instrument()  # type: ignore[no-untyped-call]
        PsycopgInstrumentor().instrument()  # before the process's first connection


@worker_init.connect  # type: ignore[untyped-decorator]
def trace_main_process(sender: Any = None, **_: Any) -> None:
    """Solo/threads pool: the main process runs the tasks."""
    pool = str(getattr(sender, "pool_cls", "") or "")
    if "solo" in pool or "thread" in pool:
        _start()


@worker_process_init.connect  # type: ignore[untyped-decorator]
def trace_pool_process(**_: Any) -> None:
    """Prefork: each child sets up its own tracing after the fork."""
    _start()


@worker_process_shutdown.connect  # type: ignore[untyped-decorator]
def flush_pool_process(**_: Any) -> None:
    """A child exits without running atexit handlers: send its last spans first."""
    if tracing_active():
        flush_traces()


def instrument_context(ctx: WorkerContext) -> WorkerContext:
    """Trace the status-cache writes of a process's conversions (when tracing is on; its
    queries are traced by the psycopg instrumentation)."""
    if tracing_active():
        from opentelemetry.instrumentation.redis import RedisInstrumentor

        RedisInstrumentor.instrument_client(ctx.redis)
    return ctx
