"""OpenTelemetry traces: off unless the standard OTEL_* variables ask for them.

On when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`), or an OTLP endpoint is
given (`OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=
true` or `OTEL_TRACES_EXPORTER=none` keep it off. Everything else (service name, resource
attributes, sampler, batch timings, OTLP headers and timeouts) is read by the SDK itself from
the standard variables. The OTLP exporter speaks HTTP/protobuf.

A job's trace context is a W3C `traceparent` string: taken from the upload request, stored with
the job, and put back around every publish of its message, so the worker's task span joins the
upload's trace however late the message is sent.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import context, propagate, trace

log = logging.getLogger(__name__)

_configured: list[bool] = []


def tracing_enabled(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the OTEL_* variables ask for traces (they are off by default)."""
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def configure_tracing(service_name: str) -> bool:
    """Install the SDK's tracer provider with the exporters the environment names (once per
    process; call it after a fork, in the process that makes the spans). False when off."""
    if not tracing_enabled():
        return False
    if _configured:
        return True
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    # The sampler OTEL_TRACES_SAMPLER names (the SDK reads it), wrapped.
    configured = TracerProvider(shutdown_on_exit=False).sampler
    provider = TracerProvider(
        resource=Resource.create(attributes), sampler=_without_orphan_client_spans(configured)
    )
    names = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() or "otlp"
    for name in (n.strip() for n in names.split(",")):
        if name in ("otlp", "otlp_proto_http"):
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get(
                "OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"
            )
            if protocol != "http/protobuf":
                log.warning("OTLP protocol %r is not installed; using http/protobuf", protocol)
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name != "none":
            log.warning("unknown OTEL_TRACES_EXPORTER %r ignored", name)
    trace.set_tracer_provider(provider)
    _configured.append(True)
    return True


def _without_orphan_client_spans(configured: Any) -> Any:
    """`configured`, except that a client span with no parent (a query or Redis command of a
    health check, a scrape, the sweeper, the outbox's bookkeeping) starts no trace: such
    one-span traces every few seconds would bury the ones from uploads."""
    from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult

    class NoOrphanClientSpans(Sampler):
        def should_sample(
            self,
            parent_context: context.Context | None,
            trace_id: int,
            name: str,
            kind: trace.SpanKind | None = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            parent = trace.get_current_span(parent_context).get_span_context()
            if kind is trace.SpanKind.CLIENT and not parent.is_valid:
                return SamplingResult(Decision.DROP)
            result: SamplingResult = configured.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
            return result

        def get_description(self) -> str:
            return f"NoOrphanClientSpans{{{configured.get_description()}}}"

    return NoOrphanClientSpans()


def tracing_active() -> bool:
    """Whether this process configured tracing."""
    return bool(_configured)


def flush_traces(timeout_millis: int = 5000) -> None:
    """Send the spans still buffered (before a process exits without atexit handlers)."""
    provider = trace.get_tracer_provider()
    force_flush = getattr(provider, "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_millis)


def current_traceparent() -> str | None:
    """The W3C traceparent of the active span (None when there is none: tracing is off)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def continued_trace(traceparent: str | None) -> Iterator[None]:
    """Make the span of a stored `traceparent` the parent of the spans made inside (a fresh
    context: whatever suppressed instrumentation around it does not carry over)."""
    if not traceparent:
        yield
        return
    token = context.attach(
        propagate.extract({"traceparent": traceparent}, context=context.Context())
    )
    try:
        yield
    finally:
        context.detach(token)


def tracer(name: str) -> trace.Tracer:
    """A tracer (a no-op one until tracing is configured, so spans in core cost next to nothing
    when off)."""
    return trace.get_tracer(name)
