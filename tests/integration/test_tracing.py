"""Traces across real processes: the API and a prefork worker export OTLP/HTTP to a collector in
the test; one trace runs from the upload request through the publish (by the outbox relay, or
by the sweeper after the message was lost) to the worker's task and the result's storage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import amqp
import pytest

from tests.support.client import ApiClient
from tests.support.images import photo
from tests.support.observability import Span, TraceCollector, dump, trace_collector, wait_for
from tests.support.services import (
    AMQP_HOST,
    AMQP_PORT,
    REDIS_DB,
    Stack,
    destroy_stack,
    make_stack,
    running,
    start_api,
    start_worker,
)

pytestmark = pytest.mark.integration

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP span kinds


@pytest.fixture(scope="module")
def collector() -> Iterator[TraceCollector]:
    with trace_collector() as collector:
        yield collector


@pytest.fixture(scope="module")
def stack(log_dir: Path, collector: TraceCollector) -> Iterator[Stack]:
    stack = make_stack(log_dir, redis_db=REDIS_DB - 2)
    stack.overrides.update(
        {
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            # The sweeper re-publishes a lost message after a second.
            "IMGCONV_ORPHAN_AFTER_SECONDS": "1",
        }
    )
    yield stack
    destroy_stack(stack)


def trace_of(collector: TraceCollector, trace_id: str) -> list[Span]:
    return [span for span in collector.received() if span.trace_id == trace_id]


def upload_span(collector: TraceCollector, job_id: str) -> Span:
    """The server span of the upload that created `job_id` (found through its publish)."""
    publishes = [
        s
        for s in collector.received()
        if s.kind == PRODUCER and s.attributes.get("messaging.message.id") == job_id
    ]
    assert publishes, "no publish span for the job"
    spans = {s.span_id: s for s in trace_of(collector, publishes[0].trace_id)}
    span = publishes[0]
    while span.parent_id in spans:
        span = spans[span.parent_id]
    return span


def chain(spans: list[Span], leaf: Span) -> list[str]:
    """Names from `leaf` up to the root, following parent links."""
    by_id = {s.span_id: s for s in spans}
    names = [f"{leaf.service}:{leaf.name}"]
    while leaf.parent_id:
        parent = by_id.get(leaf.parent_id)
        assert parent is not None, f"{leaf.name}'s parent {leaf.parent_id} never arrived"
        names.append(f"{parent.service}:{parent.name}")
        leaf = parent
    return names


def test_one_trace_from_upload_to_stored_result(stack: Stack, collector: TraceCollector) -> None:
    api, url = start_api(stack)
    with running(api), running(start_worker(stack, concurrency=2)):
        client = ApiClient(url)
        job = client.upload_ok([("t.png", photo(40, 30, "PNG"))], format="webp")[0]
        assert client.wait_terminal(job["id"])["status"] == "completed"

        def stored() -> bool:
            return any(s.name == "imgconv.store_result" for s in collector.received())

        wait_for(stored, 30, f"the worker's spans never arrived: {dump(collector.received())}")
    root = upload_span(collector, job["id"])
    assert (root.service, root.kind, root.name) == ("imgconv-api", SERVER, "POST /api/v1/jobs")
    assert root.parent_id == ""
    spans = trace_of(collector, root.trace_id)
    assert {s.service for s in spans} == {"imgconv-api", "imgconv-worker"}
    store = next(s for s in spans if s.name == "imgconv.store_result")
    assert chain(spans, store) == [
        "imgconv-worker:imgconv.store_result",
        "imgconv-worker:run/imgconv.convert",
        "imgconv-api:apply_async/imgconv.convert",
        "imgconv-api:POST /api/v1/jobs",
    ]
    # The result's INSERT is a database span inside the storage span.
    by_id = {s.span_id: s for s in spans}
    inserts = [s for s in spans if s.name.startswith("INSERT") and s.service == "imgconv-worker"]
    assert any(by_id.get(s.parent_id) is store for s in inserts), dump(
        [(s.service, s.name, s.parent_id == store.span_id) for s in spans]
    )
    run = next(s for s in spans if s.name == "run/imgconv.convert")
    assert run.kind == CONSUMER
    # Status-cache writes (Redis) belong to the trace: the upload's, in the request, and the
    # worker's (processing, then completed), in its task run.
    redis_spans = [s for s in spans if s.attributes.get("db.system") == "redis"]
    for inside in ("imgconv-api:POST /api/v1/jobs", "imgconv-worker:run/imgconv.convert"):
        service = inside.split(":", 1)[0]
        assert any(s.service == service and inside in chain(spans, s) for s in redis_spans), dump(
            [(s.service, s.name, s.attributes) for s in spans]
        )
    # The upload's own queries belong to the request too.
    assert any(s.name.startswith("INSERT") and s.service == "imgconv-api" for s in spans)
    # Polls are not traced (the fast path answers them before FastAPI), nor the queries of
    # health checks and the sweeper (which ran every second meanwhile): no orphan client span.
    assert not any(s.name.startswith("GET /api/v1/jobs/") for s in collector.received())
    orphans = [s for s in collector.received() if s.kind == CLIENT and not s.parent_id]
    assert orphans == [], dump(orphans)


def test_the_sweepers_republish_continues_the_uploads_trace(
    stack: Stack, collector: TraceCollector
) -> None:
    """No worker: the relay publishes, the message is lost (purged), the sweeper publishes it
    again; the worker started afterwards runs it in the upload's trace."""
    api, url = start_api(stack)
    with running(api):
        client = ApiClient(url)
        job = client.upload_ok([("s.png", photo(20, 20, "PNG"))], format="png")[0]
        wait_for(
            lambda: any(
                s.kind == PRODUCER and s.attributes.get("messaging.message.id") == job["id"]
                for s in collector.received()
            ),
            20,
            "the relay's publish span never arrived",
        )
        conn = amqp.Connection(host=f"{AMQP_HOST}:{AMQP_PORT}", virtual_host=stack.vhost)
        conn.connect()
        try:
            assert conn.channel().queue_purge("conversions") == 1
        finally:
            conn.close()

        def republished() -> bool:
            publishes = [
                s
                for s in collector.received()
                if s.kind == PRODUCER and s.attributes.get("messaging.message.id") == job["id"]
            ]
            return len(publishes) >= 2

        wait_for(republished, 30, "the sweeper did not re-publish the lost message")
        with running(start_worker(stack, concurrency=1)):
            assert client.wait_terminal(job["id"])["status"] == "completed"
            wait_for(
                lambda: any(
                    s.name == "run/imgconv.convert"
                    and s.attributes.get("messaging.message.id") == job["id"]
                    for s in collector.received()
                ),
                30,
                "the worker's run span never arrived",
            )
    root = upload_span(collector, job["id"])
    spans = trace_of(collector, root.trace_id)
    publishes = [s for s in spans if s.kind == PRODUCER]
    assert len(publishes) >= 2, dump(publishes)  # the relay, then the sweeper (maybe again)
    assert all(p.parent_id == root.span_id for p in publishes)
    run = next(s for s in spans if s.name == "run/imgconv.convert")
    assert run.parent_id in {p.span_id for p in publishes}
