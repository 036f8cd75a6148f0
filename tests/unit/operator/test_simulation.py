"""The autoscaling benchmark measures the operator that ships.

bench/autoscale/sim.py calls imgconv_operator.scaling's functions in the order the Reconciler
does. Here the real Reconciler runs on the same simulated cluster (its Kubernetes API, queue and
Celery control played by the simulation) and must scale exactly as the simulator's own loop does.
"""

from __future__ import annotations

import asyncio
import datetime
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import pytest

from bench.autoscale.__main__ import ours, traces
from bench.autoscale.sim import Autoscaler, Cluster, Result, Trace, cost_aware_rank, our_policy, run
from imgconv_operator import scaling
from imgconv_operator.reconcile import AutoscalerState, Connections, Reconciler
from imgconv_operator.scaling import Decision, Reason, ScaleDownPlan, ScalerMemory, SourceReading
from imgconv_operator.spec import DELETION_COST_ANNOTATION, parse_spec

EPOCH = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC).timestamp()


def trace(name: str, duration: float) -> Trace:
    """One of the benchmark's traces, cut short."""
    return replace(next(t for t in traces() if t.name == name), duration=duration)


def spec_for(t: Trace, drain: bool) -> dict[str, Any]:
    """The WorkerAutoscaler that bench.autoscale's `ours` stands for."""
    rabbitmq: dict[str, Any] = {"managementUrl": "http://rabbitmq:15672", "amqpUrl": "amqp://r"}
    if drain:
        rabbitmq["drain"] = {"celeryNodeName": "{pod}"}
    return {
        "targetRef": {"name": "worker"},
        "source": {"rabbitmq": rabbitmq},
        "concurrencyPerReplica": t.concurrency,
        "targetUtilization": 0.8,
        "minReplicas": 1,
        "maxReplicas": t.max_replicas,
        "idleReplicas": 0,
        "targetDrainSeconds": 30,
        "pollIntervalSeconds": 5,
        "scaleUp": {"stabilizationWindowSeconds": 0, "maxStep": 10, "maxStepPercent": 100},
        "scaleDown": {
            "stabilizationWindowSeconds": 60,
            "maxStep": 0,
            "maxStepPercent": 100,
            "cooldownSeconds": 60,
        },
    }


class SimulatedWorld:
    """The Kubernetes API, the queue and the Celery workers, played by the simulated cluster."""

    def __init__(self) -> None:
        self.cluster: Cluster | None = None
        self.costs: dict[str, int] = {}  # pod-deletion-cost annotations

    def _cluster(self) -> Cluster:
        assert self.cluster is not None
        return self.cluster

    # KubeApi
    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        selector = {"matchLabels": {"app": "worker"}}
        return {"spec": {"replicas": self._cluster().replicas, "selector": selector}}

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self._cluster().scale_to(replicas)

    async def list_pods(
        self, namespace: str, match_labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        cluster = self._cluster()
        pods = []
        for pod in cluster.active():
            created = datetime.datetime.fromtimestamp(EPOCH + pod.created, datetime.UTC)
            annotations = {}
            if pod.name in self.costs:
                annotations[DELETION_COST_ANNOTATION] = str(self.costs[pod.name])
            phase = "Running" if pod.ready(cluster.now) else "Pending"
            pods.append(
                {
                    "metadata": {
                        "name": pod.name,
                        "creationTimestamp": created.isoformat(),
                        "annotations": annotations,
                    },
                    "status": {"phase": phase, "podIP": pod.ip},
                }
            )
        return pods

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self.costs[name] = int(annotations[DELETION_COST_ANNOTATION])
        self._cluster().rank = cost_aware_rank(self.costs)

    async def list_hpas(self, namespace: str) -> list[dict[str, Any]]:
        return []

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        raise AssertionError("no Secret is configured")

    # QueueSource
    async def read(self) -> SourceReading:
        return self._cluster().read_queue()

    async def close(self) -> None:
        return None

    # WorkerControl (node name template "{pod}": the worker is named like its pod)
    async def cancel(self, queue: str, workers: list[str]) -> set[str]:
        for worker in workers:
            self._cluster().pod(worker).consuming = False
        return set(workers)

    async def held(self, workers: list[str]) -> dict[str, int]:
        return {worker: self._cluster().pod(worker).busy() for worker in workers}

    async def resume(self, queue: str, workers: list[str]) -> set[str]:
        for worker in workers:
            self._cluster().pod(worker).consuming = True
        return set(workers)


class ReconcilerAutoscaler(Autoscaler):
    """The shipped Reconciler, polling the simulated cluster."""

    def __init__(self, spec: dict[str, Any], phase: float, loop: asyncio.AbstractEventLoop) -> None:
        self.spec, self.next, self.loop = spec, phase, loop
        self.world = SimulatedWorld()
        self.connections = Connections(
            make_source=lambda *_: self.world, make_control=lambda *_: self.world
        )
        self.state = AutoscalerState()
        self.reasons: list[str] = []

    def tick(self, cluster: Cluster) -> None:
        """Reconcile when due, as the operator's daemon loop does every pollIntervalSeconds."""
        if cluster.now < self.next:
            return
        self.world.cluster = cluster
        reconciler = Reconciler(self.world, "imgconv", "sim", self.connections)
        result = self.loop.run_until_complete(
            reconciler.run(self.state, self.spec, {}, 1, cluster.now)
        )
        self.state, self.next = result.state, self.next + result.next_in
        self.reasons.append(result.status["reason"])


def run_reconciler(t: Trace, drain: bool, seed: int) -> tuple[Result, list[str]]:
    """The simulation with the Reconciler in place of the simulator's own loop."""
    loop = asyncio.new_event_loop()
    made: list[ReconcilerAutoscaler] = []

    def make(rng: Any) -> Autoscaler:
        made.append(ReconcilerAutoscaler(spec_for(t, drain), rng.uniform(0, 5), loop))
        return made[-1]

    try:
        return run(t, make, seed), made[0].reasons
    finally:
        loop.close()


def test_the_spec_stands_for_the_policy_the_benchmark_simulates() -> None:
    for t in traces():
        for drain in (True, False):
            spec = parse_spec(spec_for(t, drain))
            assert spec.policy == our_policy(t)
            assert spec.poll_interval_seconds == 5.0


@pytest.mark.parametrize("drain", [True, False], ids=["drain", "no-drain"])
@pytest.mark.parametrize(
    ("name", "duration"),
    [("step", 1800.0), ("burst", 1800.0), ("spike-then-silence", 2400.0), ("diurnal", 3600.0)],
)
def test_the_simulator_scales_exactly_like_the_shipped_reconciler(
    name: str, duration: float, drain: bool
) -> None:
    t = trace(name, duration)
    reasons: list[str] = []
    for seed in (0, 1):
        by_reconciler, seen = run_reconciler(t, drain, seed)
        assert run(t, ours(t, drain=drain), seed) == by_reconciler
        assert by_reconciler.scale_changes >= 2
        reasons += seen
    if name == "step":
        # The runs went through the paths where the simulator's copy had drifted: scale-downs
        # the re-read did not allow, and cooldowns between scale-downs.
        assert Reason.NOT_PROVEN_IDLE in reasons
        assert Reason.COOLDOWN in reasons


def test_a_copy_that_drifts_from_the_shipped_functions_is_caught(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The drift issue 14 found: after a re-read that proved no pod idle, the simulator's copy
    # of the glue dropped the idle pod-seconds the cooldown had saved up. The simulator calls
    # scaling.limit_to_plan through the module, the Reconciler its own import of it.
    shipped = scaling.limit_to_plan

    def forgetful(decision: Decision, plan: ScaleDownPlan, before: ScalerMemory) -> Decision:
        settled = shipped(decision, plan, before)
        memory = replace(settled.memory, idle_pod_seconds=decision.memory.idle_pod_seconds)
        return replace(settled, memory=memory)

    t = trace("step", 1800.0)
    seed = 1  # one whose run meets that path (seed 0 happens not to)
    by_reconciler = run_reconciler(t, True, seed)[0]
    assert run(t, ours(t, drain=True), seed) == by_reconciler
    monkeypatch.setattr(scaling, "limit_to_plan", forgetful)
    assert run(t, ours(t, drain=True), seed) != by_reconciler


def counting(name: str, calls: dict[str, int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Count the calls to one of scaling's functions."""
    shipped: Callable[..., Any] = getattr(scaling, name)

    def count(*args: Any, **kwargs: Any) -> Any:
        calls[name] = calls.get(name, 0) + 1
        return shipped(*args, **kwargs)

    monkeypatch.setattr(scaling, name, count)


def test_the_simulator_calls_the_shipped_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    names = [
        "observe",
        "recommend",
        "pod_loads",
        "busy_pods",
        "decide",
        "recheck",
        "drain_victims",
        "after_drain",
        "limit_to_plan",
        "drained_leftovers",
    ]
    calls: dict[str, int] = {}
    for name in names:
        counting(name, calls, monkeypatch)
    t = trace("step", 1800.0)
    run(t, ours(t, drain=True), 0)
    assert sorted(calls) == sorted(names)


def test_a_change_to_the_shipped_decision_changes_the_simulation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    t = trace("burst", 900.0)
    before = run(t, ours(t), 0)
    assert before.scale_changes >= 2  # up for the burst, and down again

    def never_lower(
        policy: scaling.ScalingPolicy,
        sample: scaling.QueueSample,
        current: int,
        memory: ScalerMemory,
        now: float,
    ) -> Decision:
        decision = shipped(policy, sample, current, memory, now)
        return decision if decision.desired >= current else replace(decision, desired=current)

    shipped = scaling.decide
    monkeypatch.setattr(scaling, "decide", never_lower)
    after = run(t, ours(t), 0)
    assert after.scale_changes < before.scale_changes
    assert after.replica_seconds > before.replica_seconds
