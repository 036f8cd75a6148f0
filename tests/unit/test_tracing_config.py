"""When traces are on (only when the standard OTEL_* variables ask), and how a stored trace
context becomes the parent of later spans."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from imgconv_core.telemetry.tracing import (
    _without_orphan_client_spans,
    continued_trace,
    current_traceparent,
    tracing_enabled,
)


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),
        ({"OTEL_SERVICE_NAME": "x"}, False),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_TRACES_EXPORTER": "none"}, False),
    ],
)
def test_traces_are_off_unless_asked_for(env: dict[str, str], enabled: bool) -> None:
    assert tracing_enabled(env) is enabled


def test_without_a_span_there_is_no_traceparent() -> None:
    assert current_traceparent() is None


def test_a_stored_traceparent_parents_later_spans_and_orphan_client_spans_are_dropped() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=_without_orphan_client_spans(TracerProvider().sampler))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("upload", kind=trace.SpanKind.SERVER) as upload:
        stored = current_traceparent()
    assert stored is not None
    with tracer.start_as_current_span("sweep query", kind=trace.SpanKind.CLIENT):
        pass  # no parent: dropped
    with (
        continued_trace(stored),
        tracer.start_as_current_span("publish", kind=trace.SpanKind.PRODUCER),
        tracer.start_as_current_span("query", kind=trace.SpanKind.CLIENT),
    ):
        pass  # the query has a parent: kept
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"upload", "publish", "query"}
    context = upload.get_span_context()
    assert spans["publish"].context.trace_id == context.trace_id
    assert spans["publish"].parent is not None
    assert spans["publish"].parent.span_id == context.span_id
    assert spans["query"].parent is not None
    assert spans["query"].parent.span_id == spans["publish"].context.span_id
