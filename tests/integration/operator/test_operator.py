"""The operator under kopf against kmock, reading queue depth from the real RabbitMQ."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import amqp
import pytest

from tests.integration.operator.celery_probe import app as probe_app
from tests.support.kube_emulator import (
    AUTOSCALERS,
    NAMESPACE,
    WORKER_LABELS,
    ApiServer,
    Broker,
    Cluster,
    autoscaler,
    deployment,
    eventually,
    rabbit_source,
    start_probe_worker,
)

pytestmark = [pytest.mark.integration, pytest.mark.asyncio, pytest.mark.kmock(cls=ApiServer)]

DEPLOYMENTS = "apps/v1/deployments"
COST = "controller.kubernetes.io/pod-deletion-cost"


class ReplicaSetStub:
    """Plays the ReplicaSet controller kmock lacks: keeps pod count = replicas.

    Victims are chosen the way Kubernetes ranks them among running, ready pods: lower
    pod-deletion-cost first, then the newest first.
    """

    def __init__(self, cluster: Cluster, name: str, ips: Callable[[int], str]) -> None:
        self.cluster, self.name, self.ips = cluster, name, ips
        self.pods: list[str] = []
        self.deleted: list[str] = []
        self._created = 0

    def _pod(self, index: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": f"{self.name}-{index}",
                "namespace": NAMESPACE,
                "labels": {**WORKER_LABELS, "imgconv.io/deployment": self.name},
                "creationTimestamp": f"2026-01-01T00:00:{index:02d}Z",
            },
            "status": {"phase": "Running", "podIP": self.ips(index)},
        }

    def cost(self, pod: str) -> int:
        """The pod's deletion cost annotation (0 when unset, as in Kubernetes)."""
        meta = self.cluster.get("v1/pods", pod)["metadata"]
        return int((meta.get("annotations") or {}).get(COST, "0"))

    def sync(self) -> None:
        """One controller pass."""
        want = self.cluster.replicas(self.name)
        while len(self.pods) < want:
            pod = self._pod(self._created)
            self._created += 1
            self.cluster.seed("v1/pods", pod)
            self.pods.append(pod["metadata"]["name"])
        if len(self.pods) > want:
            ranked = sorted(self.pods, key=lambda p: (self.cost(p), -self.pods.index(p)))
            for victim in ranked[: len(self.pods) - want]:
                self.cluster.mock.objects["v1/pods", NAMESPACE, victim].delete()
                self.pods.remove(victim)
                self.deleted.append(victim)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[ReplicaSetStub]:
        """Run the controller loop in the background."""

        async def loop() -> None:
            while True:
                self.sync()
                await asyncio.sleep(0.05)

        task = asyncio.create_task(loop())
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_backlog_scales_up_then_drains_idle_pods_first_and_reaches_zero(
    cluster: Cluster, broker: Callable[[], Broker], operator: dict[str, Any]
) -> None:
    q = broker()
    q.publish(7)
    q.wait_visible(7)  # else the operator rightly sees an empty queue and scales to zero
    cluster.seed(DEPLOYMENTS, deployment("worker", 1))
    # The youngest pod will hold the running task (its IP is where our consumer connects
    # from), so the ReplicaSet's default newest-first order would kill exactly that one.
    stub = ReplicaSetStub(cluster, "worker", lambda i: "127.0.0.1" if i == 6 else f"10.0.0.{i}")
    async with stub.running():
        await cluster.create(
            AUTOSCALERS, autoscaler("wa", "worker", rabbit_source(q.queue), idleReplicas=0)
        )
        # 7 ready, service time unknown yet: one worker per message (concurrency 1, util 1.0).
        await eventually(lambda: cluster.replicas("worker") == 7, what="scale-up to 7")
        await eventually(lambda: cluster.status("wa").get("backlog") == 7, what="status backlog")
        status = cluster.status("wa")
        assert status["desiredReplicas"] == 7
        assert status["active"] is True
        assert cluster.condition("wa", "Ready")["status"] == "True"
        assert cluster.condition("wa", "Active")["status"] == "True"
        await eventually(
            lambda: any(e["reason"] == "ScaledUp" for e in cluster.events("wa")), what="event"
        )
        ups = [e for e in cluster.events("wa") if e["reason"] == "ScaledUp"]
        assert ups[0]["message"].startswith("1 -> 7")

        # A worker takes one task and keeps it running; the rest of the queue goes away.
        await eventually(lambda: len(stub.pods) == 7, what="7 pods")
        q.hold_one()
        q.drain_ready()
        await eventually(lambda: cluster.replicas("worker") == 1, within=30, what="drain to 1")
        await eventually(lambda: len(stub.pods) == 1, what="ReplicaSet removed 6 pods")
        assert stub.pods == ["worker-6"], "the busy pod must survive the scale-down"
        assert cluster.cost("worker-6") > 0
        assert all(cluster.cost(p) < 0 for p in stub.deleted)
        # Costs were written before the replica count went down.
        calls = cluster.calls()
        first_cost = min(i for i, (m, p, _) in enumerate(calls) if m == "PATCH" and "/pods/" in p)
        first_down = next(
            i
            for i, (m, p, _) in enumerate(calls)
            if m == "PATCH" and p.endswith("/scale") and i > first_cost
        )
        assert first_cost < first_down
        assert cluster.status("wa")["busyPods"] == 1

        # Never below one replica while the task was in flight, then zero once it finished.
        q.ack_held()
        await eventually(lambda: cluster.replicas("worker") == 0, within=30, what="scale to 0")
    counts = [d["spec"]["replicas"] for d in cluster.history(DEPLOYMENTS, "worker")]
    assert counts.index(0) == len(counts) - 1, f"went to zero too early: {counts}"

    def downs() -> list[str]:
        return [e["message"] for e in cluster.events("wa") if e["reason"] == "ScaledDown"]

    # kopf posts events from a queue of its own: they may land a moment after the patch.
    await eventually(lambda: any(m.startswith("1 -> 0") for m in downs()), what="1 -> 0 event")
    assert any(m.startswith("7 -> 1") for m in downs()), (downs(), counts)

    # The operator's own endpoints: Prometheus metrics and kopf's liveness probe.
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{operator['metrics']}/metrics") as resp:
            text = await resp.text()
        async with session.get(f"http://127.0.0.1:{operator['liveness']}/healthz") as resp:
            health = json.loads(await resp.text())
    labels = f'autoscaler="wa",direction="up",namespace="{NAMESPACE}",reason="Backlog"'
    assert f"imgconv_autoscaler_decisions_total{{{labels}}}" in text
    assert 'imgconv_autoscaler_desired_replicas{autoscaler="wa",namespace="imgconv"} 0.0' in text
    assert "imgconv_autoscaler_reconcile_duration_seconds_count" in text
    assert health["autoscalers"] == 1


async def test_unreachable_broker_falls_back_and_never_scales_down(
    cluster: Cluster, operator: dict[str, Any]
) -> None:
    cluster.seed(DEPLOYMENTS, deployment("hold", 5))
    cluster.seed(DEPLOYMENTS, deployment("fixed", 1))
    nowhere = rabbit_source("conversions", management_url="http://127.0.0.1:9")  # refused
    common = {"minReplicas": 0, "idleReplicas": 0, "scaleDown": {"stabilizationWindowSeconds": 0}}
    await cluster.create(
        AUTOSCALERS,
        autoscaler("hold", "hold", nowhere, fallback={"failureThreshold": 2}, **common),
    )
    await cluster.create(
        AUTOSCALERS,
        autoscaler(
            "fixed", "fixed", nowhere, fallback={"failureThreshold": 2, "replicas": 3}, **common
        ),
    )
    await eventually(lambda: cluster.replicas("fixed") == 3, what="fallback count applied")
    await eventually(
        lambda: cluster.condition("hold", "Fallback").get("status") == "True", what="Fallback"
    )
    await eventually(lambda: cluster.status("hold").get("sourceFailures", 0) >= 4, what="retries")
    assert cluster.replicas("hold") == 5
    assert {d["spec"]["replicas"] for d in cluster.history(DEPLOYMENTS, "hold")} == {5}
    await eventually(lambda: bool(cluster.events("hold")), what="the SourceError event")
    warnings = [e for e in cluster.events("hold") if e["type"] == "Warning"]
    assert [e["reason"] for e in warnings] == ["SourceError"]  # once, on the transition


async def test_hpa_conflict_is_refused_and_pause_annotations_are_respected(
    cluster: Cluster, broker: Callable[[], Broker], operator: dict[str, Any]
) -> None:
    q = broker()
    q.publish(6)
    q.wait_visible(6)
    for name in ("contested", "pinned", "frozen"):
        cluster.seed(DEPLOYMENTS, deployment(name, 1))
    cluster.seed(
        "autoscaling/v2/horizontalpodautoscalers",
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "legacy-hpa", "namespace": NAMESPACE},
            "spec": {
                "scaleTargetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": "contested",
                },
                "minReplicas": 1,
                "maxReplicas": 3,
            },
        },
    )
    src = rabbit_source(q.queue)
    await cluster.create(AUTOSCALERS, autoscaler("contested", "contested", src))
    await cluster.create(
        AUTOSCALERS,
        autoscaler("pinned", "pinned", src, annotations={"imgconv.io/paused-replicas": "2"}),
    )
    await cluster.create(
        AUTOSCALERS, autoscaler("frozen", "frozen", src, annotations={"imgconv.io/paused": "true"})
    )
    await cluster.create(AUTOSCALERS, autoscaler("twin", "pinned", src))  # a second one
    await eventually(lambda: cluster.replicas("pinned") == 2, what="paused-replicas applied")
    await eventually(
        lambda: cluster.condition("contested", "Ready").get("reason") == "HPAConflict",
        what="HPA conflict condition",
    )
    await eventually(
        lambda: cluster.condition("frozen", "Paused").get("status") == "True", what="paused"
    )
    await eventually(
        lambda: cluster.condition("twin", "Ready").get("reason") == "TargetConflict",
        what="the younger of two autoscalers on one Deployment stands down",
    )
    # Give the operator time to (wrongly) act on the 6 messages.
    await asyncio.sleep(6)
    assert cluster.replicas("contested") == 1
    assert cluster.replicas("frozen") == 1
    assert cluster.replicas("pinned") == 2
    assert cluster.condition("contested", "Ready")["status"] == "False"
    assert "legacy-hpa" in cluster.condition("contested", "Ready")["message"]
    assert [e["reason"] for e in cluster.events("contested")] == ["HPAConflict"]
    scale_patches = [p for m, p, _ in cluster.calls() if m == "PATCH" and p.endswith("/scale")]
    assert all("/deployments/pinned/" in p for p in scale_patches)


async def test_live_amqp_count_and_restore_on_delete(
    cluster: Cluster, broker: Callable[[], Broker], operator: dict[str, Any]
) -> None:
    q = broker()
    q.publish(3)
    cluster.seed(DEPLOYMENTS, deployment("worker", 1))
    source = rabbit_source(q.queue, amqpUrl="amqp://127.0.0.1:5672")
    await cluster.create(
        AUTOSCALERS,
        autoscaler("wa", "worker", source, restoreReplicasOnDelete=True, maxReplicas=5),
    )
    await eventually(lambda: cluster.replicas("worker") == 3, what="scale-up to 3")
    q.publish(10)
    await eventually(lambda: cluster.replicas("worker") == 5, what="capped at maxReplicas")
    assert cluster.status("wa")["originalReplicas"] == 1
    await cluster.delete(AUTOSCALERS, "wa")
    await eventually(lambda: cluster.replicas("worker") == 1, what="restored to 1")
    await eventually(
        lambda: "Restored" in [e["reason"] for e in cluster.events("wa")], what="Restored event"
    )


@pytest.fixture
def celery_worker(rabbitmq_management: str) -> Iterator[Callable[[str, str], None]]:
    """Start real Celery workers (solo pool, prefork-like settings) named like pods."""
    started: list[subprocess.Popen[bytes]] = []
    queues: list[str] = []  # declared by the workers (durable, as Celery declares them)

    def start(queue: str, node: str) -> None:
        worker = start_probe_worker(queue, node)
        started.append(worker)
        queues.append(queue)

    yield start
    for worker in started:
        worker.kill()
        worker.wait()
    with amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest") as conn:
        for queue in queues:
            conn.channel().queue_delete(queue)


def consumers(queue: str) -> int:
    """The queue's consumer count right now (passive declare; 0 before it exists)."""
    with amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest") as conn:
        try:
            return int(conn.channel().queue_declare(queue, passive=True)[2])
        except amqp.exceptions.NotFound:
            return 0


async def test_drain_stops_the_real_worker_and_removes_it_only_after_its_task(
    cluster: Cluster,
    celery_worker: Callable[[str, str], None],
    operator: dict[str, Any],
) -> None:
    queue = f"imgconv-test-drain-{uuid.uuid4().hex[:12]}"
    celery_worker(queue, "celery@drainer-0")  # the pod's worker: Celery node celery@{pod}
    await eventually(lambda: consumers(queue) == 1, within=30, what="the worker consuming")
    started = time.monotonic()
    probe_app.send_task("imgconv_probe.hold", args=[8], queue=queue)
    await eventually(lambda: q_ready(queue) == 0, what="task taken")
    cluster.seed(DEPLOYMENTS, deployment("drainer", 1))
    stub = ReplicaSetStub(cluster, "drainer", lambda i: "127.0.0.1")
    source = rabbit_source(
        queue, amqpUrl="amqp://127.0.0.1:5672", drain={"celeryNodeName": "celery@{pod}"}
    )
    async with stub.running():
        await cluster.create(
            AUTOSCALERS, autoscaler("wa", "drainer", source, idleReplicas=0, maxReplicas=3)
        )
        # While the task runs the pod stays, whatever the statistics said at first.
        await eventually(lambda: cluster.status("wa").get("unacked") == 1, what="task seen")
        assert cluster.replicas("drainer") == 1
        assert stub.pods == ["drainer-0"]
        await eventually(lambda: cluster.replicas("drainer") == 0, within=40, what="drained to 0")
        removed_after = time.monotonic() - started
        await eventually(lambda: not stub.pods, what="the ReplicaSet removed the pod")
    # Removed only after the task was acknowledged, and the worker had stopped consuming first.
    assert stub.deleted == ["drainer-0"]
    assert consumers(queue) == 0, "cancel_consumer never reached the worker"
    counts = [d["spec"]["replicas"] for d in cluster.history(DEPLOYMENTS, "drainer")]
    assert counts == [1, 0], counts
    assert removed_after >= 8.0, f"removed {removed_after:.1f} s after an 8 s task started"


def q_ready(queue: str) -> int:
    """The queue's ready count right now (passive declare)."""
    with amqp.Connection(host="127.0.0.1:5672", userid="guest", password="guest") as conn:
        return int(conn.channel().queue_declare(queue, passive=True)[1])


async def test_without_drain_a_pod_that_keeps_taking_tasks_is_never_proven_idle(
    cluster: Cluster, broker: Callable[[], Broker], operator: dict[str, Any]
) -> None:
    # worker-1's consumer (on this machine: 127.0.0.1) takes a task every 2 s and finishes it at
    # once, so the statistics almost never show it busy. The queue looks empty, the window agrees
    # on 0, and the old "idle in the last reading" rule removed it. Its channel's deliveries keep
    # moving, so it is never proven idle; worker-0 has no consumer at all and goes.
    q = broker()
    channel = q.conn.channel()
    channel.basic_qos(0, 1, False)
    channel.basic_consume(
        q.queue, callback=lambda m: channel.basic_ack(m.delivery_tag), no_ack=False
    )
    cluster.seed(DEPLOYMENTS, deployment("busy", 2))
    stub = ReplicaSetStub(cluster, "busy", lambda i: "127.0.0.1" if i == 1 else f"10.0.1.{i}")

    def take_one() -> None:
        q.publish(1)
        with contextlib.suppress(TimeoutError, OSError):
            q.conn.drain_events(timeout=0.5)  # delivered and acked by the callback

    try:
        async with stub.running():
            await cluster.create(
                AUTOSCALERS,
                autoscaler("wa", "busy", rabbit_source(q.queue), minReplicas=1, idleReplicas=0),
            )
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline:
                await asyncio.to_thread(take_one)
                assert "busy-1" in stub.pods, f"removed while taking tasks: {stub.deleted}"
                await asyncio.sleep(1.5)
            assert stub.deleted == ["busy-0"]
            assert cluster.replicas("busy") == 1
            assert cluster.status("wa")["reason"] == "NotProvenIdle"
            # Quiet from now on: proven idle once a whole proof span (10 s) shows no delivery.
            await eventually(lambda: cluster.replicas("busy") == 0, within=40, what="scale to 0")
    finally:
        channel.close()  # cancel our consumer before the queue goes away
