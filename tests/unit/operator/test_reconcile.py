"""One reconcile with a fake API and a fake queue: the glue around the decision."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

import pytest

from imgconv_operator.handlers import rivals
from imgconv_operator.kube import NotFoundError
from imgconv_operator.reconcile import AutoscalerState, Connections, Reconciler
from imgconv_operator.scaling import SourceReading
from imgconv_operator.sources import SourceError

NS = "imgconv"
COST = "controller.kubernetes.io/pod-deletion-cost"
SPEC: dict[str, Any] = {
    "targetRef": {"name": "worker"},
    "source": {"rabbitmq": {"managementUrl": "http://rabbit:15672", "queue": "conversions"}},
    "minReplicas": 1,
    "idleReplicas": 0,
    "maxReplicas": 10,
    "targetUtilization": 1.0,
    "scaleDown": {"stabilizationWindowSeconds": 10},
}


class FakeKube:
    """Deployments, pods and HPAs in memory; every call recorded in order."""

    def __init__(self, replicas: int | None = 3, ips: tuple[str, ...] = ()) -> None:
        self.replicas = replicas
        self.hpas: list[dict[str, Any]] = []
        self.pods: list[dict[str, Any]] = [
            {
                "metadata": {"name": f"w-{i}", "annotations": {}},
                "status": {"phase": "Running", "podIP": ip},
            }
            for i, ip in enumerate(ips)
        ]
        self.calls: list[tuple[str, Any]] = []
        self.vanished: set[str] = set()  # pods deleted after the listing

    async def get_deployment(self, namespace: str, name: str) -> dict[str, Any]:
        if self.replicas is None:
            raise NotFoundError(404, name)
        return {"spec": {"replicas": self.replicas, "selector": {"matchLabels": {"app": "w"}}}}

    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None:
        self.calls.append(("scale", replicas))
        self.replicas = replicas

    async def list_pods(
        self, namespace: str, match_labels: Mapping[str, str]
    ) -> list[dict[str, Any]]:
        self.calls.append(("list_pods", dict(match_labels)))
        return self.pods

    async def annotate_pod(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        if name in self.vanished:
            raise NotFoundError(404, name)
        self.calls.append(("annotate", (name, annotations[COST])))
        for pod in self.pods:
            if pod["metadata"]["name"] == name:
                pod["metadata"]["annotations"].update(annotations)

    async def list_hpas(self, namespace: str) -> list[dict[str, Any]]:
        return self.hpas

    async def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        return {"username": "u", "password": "p"}


class FakeSource:
    """Returns the reading it is given, or raises when `error` is set."""

    def __init__(self, reading: SourceReading) -> None:
        self.reading = reading
        self.error: str | None = None

    async def read(self) -> SourceReading:
        if self.error:
            raise SourceError(self.error)
        return self.reading

    async def close(self) -> None:
        return None


class Harness:
    """A reconciler wired to fakes, with events collected."""

    def __init__(self, kube: FakeKube, reading: SourceReading, spec: dict[str, Any] = SPEC) -> None:
        self.kube, self.spec = kube, spec
        self.source = FakeSource(reading)
        self.connections = Connections(make_source=lambda *_: self.source)
        self.state = AutoscalerState()
        self.events: list[tuple[str, str, str]] = []
        self.status: dict[str, Any] = {}

    async def tick(
        self, now: float, annotations: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        rec = Reconciler(self.kube, NS, "wa", self.connections)
        result = await rec.run(self.state, self.spec, annotations or {}, 1, now)
        self.state, self.status = result.state, result.status
        self.events.extend(result.events)
        return self.status

    def condition(self, kind: str) -> dict[str, Any]:
        return next(c for c in self.status["conditions"] if c["type"] == kind)


@pytest.mark.asyncio
async def test_scale_down_marks_idle_pods_cheap_before_lowering_replicas() -> None:
    kube = FakeKube(3, ips=("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    kube.pods[0]["metadata"]["annotations"][COST] = "-100"  # already right: no second patch
    # Every pod consumes (a channel each, as the management API lists them); one holds a task.
    by_host = {"10.0.0.1": 0, "10.0.0.2": 1, "10.0.0.3": 0}
    delivered = {"10.0.0.1": 3, "10.0.0.2": 4, "10.0.0.3": 3}
    h = Harness(
        kube, SourceReading(0, 1, 3, in_flight_by_host=by_host, deliveries_by_host=delivered)
    )
    for now in (0.0, 5.0, 10.0):
        await h.tick(now)
    assert kube.replicas == 1
    annotations = [args for call, args in kube.calls if call == "annotate"]
    assert sorted(annotations) == [("w-1", "100"), ("w-2", "-100")]
    assert [c for c, _ in kube.calls].index("scale") > [c for c, _ in kube.calls].index("annotate")
    assert h.status["busyPods"] == 1
    assert h.status["reason"] == "InFlight"
    assert h.events[-1][:2] == ("Normal", "ScaledDown")


@pytest.mark.asyncio
async def test_a_pod_gone_since_the_listing_does_not_stop_the_scale_down() -> None:
    kube = FakeKube(3, ips=("10.0.0.1", "10.0.0.2", "10.0.0.3"))
    kube.vanished = {"w-0"}
    ips = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    reading = SourceReading(
        0, 0, 2, in_flight_by_host=dict.fromkeys(ips, 0), deliveries_by_host=dict.fromkeys(ips, 1)
    )
    h = Harness(kube, reading)
    for now in (0.0, 5.0, 10.0):
        await h.tick(now)
    assert kube.replicas == 0
    assert ("annotate", ("w-0", "-100")) not in kube.calls


@pytest.mark.asyncio
async def test_without_per_pod_information_nothing_goes_while_work_is_in_flight() -> None:
    # The Redis source has no per-consumer data; neither has RabbitMQ behind NAT.
    # Also when the channels do not yet account for every unacked message of the queue.
    for by_host in (None, {"192.168.99.1": 1}, {}):
        kube = FakeKube(4, ips=("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"))
        h = Harness(kube, SourceReading(0, 1, 4, in_flight_by_host=by_host))
        for now in range(0, 120, 5):
            await h.tick(float(now))
        assert kube.replicas == 4
        assert h.status["busyPods"] is None
        assert not [c for c, _ in kube.calls if c in {"scale", "annotate"}]


@pytest.mark.asyncio
async def test_source_errors_fall_back_without_scaling_down_then_recover() -> None:
    kube = FakeKube(6)
    h = Harness(kube, SourceReading(0, 0, 0, in_flight_by_host={}))
    h.source.error = "connection refused"
    for now in range(0, 60, 5):
        await h.tick(float(now))
    assert kube.replicas == 6
    assert h.condition("Fallback")["status"] == "True"
    assert [e[1] for e in h.events] == ["SourceError"]
    h.source.error = None
    await h.tick(100.0)
    assert h.condition("Fallback")["status"] == "False"
    assert h.status["sourceFailures"] == 0
    assert kube.replicas == 6  # a fresh window is needed before any scale-down


@pytest.mark.asyncio
async def test_bad_spec_and_missing_target_make_ready_false_with_one_warning() -> None:
    kube = FakeKube(None)
    h = Harness(kube, SourceReading(5, 0, 0))
    await h.tick(0.0)
    await h.tick(5.0)
    assert h.condition("Ready")["reason"] == "TargetNotFound"
    assert [e[1] for e in h.events] == ["TargetNotFound"]
    h.spec = {**SPEC, "minReplicas": 5, "maxReplicas": 2}
    await h.tick(10.0)
    assert h.condition("Ready")["reason"] == "InvalidSpec"


@pytest.mark.asyncio
async def test_hpa_on_the_same_deployment_stops_the_autoscaler() -> None:
    kube = FakeKube(1)
    kube.hpas = [
        {
            "metadata": {"name": "old"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "worker"}},
        }
    ]
    h = Harness(kube, SourceReading(50, 0, 0))
    await h.tick(0.0)
    assert kube.replicas == 1
    assert h.condition("Ready")["reason"] == "HPAConflict"


@pytest.mark.asyncio
async def test_a_younger_rival_on_the_same_deployment_does_not_act() -> None:
    kube = FakeKube(1)
    h = Harness(kube, SourceReading(50, 0, 0))
    rec = Reconciler(kube, NS, "wa", h.connections)
    result = await rec.run(h.state, SPEC, {}, 1, 0.0, rivals=["older"])
    assert kube.replicas == 1
    conditions = {c["type"]: c for c in result.status["conditions"]}
    assert conditions["Ready"]["reason"] == "TargetConflict"
    assert "older" in conditions["Ready"]["message"]


def test_rivals_are_the_older_autoscalers_of_the_same_target() -> None:
    index = {
        ("imgconv", "worker"): [("2026-01-02T00:00:00Z", "b"), ("2026-01-01T00:00:00Z", "c")],
        ("imgconv", "other"): [("2026-01-01T00:00:00Z", "z")],
    }
    spec = {"targetRef": {"name": "worker"}}
    assert rivals(index, "imgconv", "b", spec) == ["c"]  # type: ignore[arg-type]
    assert rivals(index, "imgconv", "c", spec) == []  # type: ignore[arg-type]


@pytest.mark.asyncio
async def test_pause_annotations() -> None:
    kube = FakeKube(1)
    h = Harness(kube, SourceReading(50, 0, 0))
    await h.tick(0.0, {"imgconv.io/paused": "true"})
    assert kube.replicas == 1
    await h.tick(5.0, {"imgconv.io/paused-replicas": "3"})
    assert kube.replicas == 3
    assert h.condition("Paused")["status"] == "True"
    await h.tick(10.0)
    assert h.condition("Paused")["status"] == "False"
    assert kube.replicas == 10  # 50 ready, unpaused: up to maxReplicas


class SequenceSource(FakeSource):
    """Returns queued readings first, then the standing one; counts reads."""

    def __init__(self, reading: SourceReading) -> None:
        super().__init__(reading)
        self.queued: list[SourceReading] = []
        self.reads = 0

    async def read(self) -> SourceReading:
        self.reads += 1
        return self.queued.pop(0) if self.queued else await super().read()


@pytest.mark.asyncio
async def test_scale_down_rereads_the_queue_and_keeps_a_pod_that_just_took_a_task() -> None:
    ips = ("10.0.0.1", "10.0.0.2", "10.0.0.3")
    kube = FakeKube(3, ips=ips)
    idle = SourceReading(
        0, 0, 3, in_flight_by_host=dict.fromkeys(ips, 0), deliveries_by_host=dict.fromkeys(ips, 4)
    )
    h = Harness(kube, idle)
    source = SequenceSource(idle)
    h.source = source
    for now in (0.0, 5.0):
        await h.tick(now)
    assert kube.replicas == 3  # the window (10 s) is not covered yet
    # At 10 s the decision's reading says all idle, but the re-read right before the patch
    # shows that 10.0.0.3 took a task (and 10.0.0.2 took and finished one since 5 s).
    taken = SourceReading(
        0,
        1,
        3,
        in_flight_by_host={"10.0.0.1": 0, "10.0.0.2": 0, "10.0.0.3": 1},
        deliveries_by_host={"10.0.0.1": 4, "10.0.0.2": 5, "10.0.0.3": 5},
    )
    source.queued = [idle, taken]
    reads = source.reads
    await h.tick(10.0)
    assert source.reads == reads + 2  # the decision's reading, then the fresh re-read
    assert kube.replicas == 2  # only the one proven-idle pod goes
    costs = dict(args for call, args in kube.calls if call == "annotate")
    assert costs == {"w-0": "-100", "w-1": "100", "w-2": "100"}
    calls = [c for c, _ in kube.calls]
    assert calls.index("scale") > max(i for i, c in enumerate(calls) if c == "annotate")
    assert h.status["reason"] == "NotProvenIdle"


@pytest.mark.asyncio
async def test_no_scale_down_when_the_reread_proves_no_pod_idle() -> None:
    ips = ("10.0.0.1", "10.0.0.2")
    kube = FakeKube(2, ips=ips)
    idle = SourceReading(
        0, 0, 2, in_flight_by_host=dict.fromkeys(ips, 0), deliveries_by_host=dict.fromkeys(ips, 1)
    )
    h = Harness(kube, idle)
    source = SequenceSource(idle)
    h.source = source
    for now in (0.0, 5.0):
        await h.tick(now)
    busier = SourceReading(
        0, 0, 2, in_flight_by_host=dict.fromkeys(ips, 0), deliveries_by_host=dict.fromkeys(ips, 2)
    )
    source.queued = [idle, busier]  # both pods took and finished a task since the last poll
    await h.tick(10.0)
    assert kube.replicas == 2
    assert "scale" not in [c for c, _ in kube.calls]
    assert h.status["reason"] == "NotProvenIdle"
    source.reading = busier
    for now in (15.0, 20.0):  # the readings 10 s back still show fewer deliveries
        await h.tick(now)
        assert kube.replicas == 2
    await h.tick(25.0)  # no delivery over a whole proof span: now they go, no cooldown pending
    assert kube.replicas == 0


class FakeControl:
    """Celery remote control of fake workers: who holds what, who answers, what was asked."""

    def __init__(self, holding: dict[str, int], silent: Collection[str] = ()) -> None:
        self.holding, self.silent = holding, set(silent)
        self.consuming: dict[str, bool] = {}
        self.calls: list[tuple[str, list[str]]] = []

    async def cancel(self, queue: str, workers: list[str]) -> set[str]:
        self.calls.append(("cancel", sorted(workers)))
        answered = {w for w in workers if w not in self.silent}
        self.consuming.update(dict.fromkeys(answered, False))
        return answered

    async def held(self, workers: list[str]) -> dict[str, int]:
        self.calls.append(("held", sorted(workers)))
        return {w: self.holding.get(w, 0) for w in workers if w not in self.silent}

    async def resume(self, queue: str, workers: list[str]) -> set[str]:
        self.calls.append(("resume", sorted(workers)))
        self.consuming.update(dict.fromkeys(workers, True))
        return set(workers)

    async def close(self) -> None:
        return None


DRAIN_SPEC: dict[str, Any] = {
    **SPEC,
    "source": {
        "rabbitmq": {
            "managementUrl": "http://rabbit:15672",
            "amqpUrl": "amqp://rabbit:5672",
            "queue": "conversions",
            "drain": {"celeryNodeName": "celery@{pod}"},
        }
    },
}


@pytest.mark.asyncio
async def test_drain_stops_the_victims_and_keeps_one_that_took_a_task_after_the_statistics() -> (
    None
):
    ips = ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4")
    kube = FakeKube(4, ips=ips)
    for i, pod in enumerate(kube.pods):  # w-3 is the newest: the ReplicaSet's first choice
        pod["metadata"]["creationTimestamp"] = f"2026-01-01T00:00:0{i}Z"
    idle = SourceReading(
        0, 0, 4, in_flight_by_host=dict.fromkeys(ips, 0), deliveries_by_host=dict.fromkeys(ips, 2)
    )
    # The statistics say all four are idle, but w-3 took a task a moment ago (only the worker
    # itself knows), and w-2 does not answer.
    control = FakeControl({"celery@w-3": 1}, silent={"celery@w-2"})
    h = Harness(kube, idle, spec=DRAIN_SPEC)
    h.connections.make_control = lambda *_: control
    for now in (0.0, 5.0, 10.0):
        await h.tick(now)
    # Down to 0 wanted: all four are victims, w-3 (holding) and w-2 (silent) stay and consume.
    assert control.calls[0] == ("cancel", ["celery@w-0", "celery@w-1", "celery@w-2", "celery@w-3"])
    assert control.calls[1] == ("held", ["celery@w-0", "celery@w-1", "celery@w-3"])
    assert control.calls[2] == ("resume", ["celery@w-2", "celery@w-3"])
    assert kube.replicas == 2
    costs = dict(args for call, args in kube.calls if call == "annotate")
    assert costs == {"w-0": "-100", "w-1": "-100", "w-2": "100", "w-3": "100"}
    assert control.consuming == {
        "celery@w-0": False,
        "celery@w-1": False,
        "celery@w-2": True,
        "celery@w-3": True,
    }
    # The ReplicaSet removed w-0 and w-1; had it kept one, it would consume again next time.
    kube.pods = [p for p in kube.pods if p["metadata"]["name"] != "w-0"]
    control.holding = {"celery@w-3": 1}
    await h.tick(15.0)
    assert ("resume", ["celery@w-1"]) in control.calls


@pytest.mark.asyncio
async def test_a_failing_control_channel_removes_no_running_pod() -> None:
    ips = ("10.0.0.1", "10.0.0.2")
    kube = FakeKube(2, ips=ips)
    idle = SourceReading(
        0, 0, 2, in_flight_by_host=dict.fromkeys(ips, 0), deliveries_by_host=dict.fromkeys(ips, 2)
    )

    class Broken(FakeControl):
        async def held(self, workers: list[str]) -> dict[str, int]:
            raise ConnectionError("broker gone")

    control = Broken({})
    h = Harness(kube, idle, spec=DRAIN_SPEC)
    h.connections.make_control = lambda *_: control
    for now in (0.0, 5.0, 10.0):
        await h.tick(now)
    assert kube.replicas == 2
    assert ("resume", ["celery@w-0", "celery@w-1"]) in control.calls
    assert h.status["reason"] == "NotProvenIdle"


@pytest.mark.asyncio
async def test_the_idleness_proof_spans_two_statistics_intervals_even_when_polling_fast() -> None:
    # Polling every second: comparing with the previous poll would span 1 s, inside which the
    # broker's statistics (5 s channel emission + 5 s collection) may not have moved at all.
    ips = ("10.0.0.1",)
    kube = FakeKube(1, ips=ips)
    spec = {**SPEC, "pollIntervalSeconds": 1}
    before = SourceReading(0, 0, 1, in_flight_by_host={ips[0]: 0}, deliveries_by_host={ips[0]: 1})
    after = SourceReading(0, 0, 1, in_flight_by_host={ips[0]: 0}, deliveries_by_host={ips[0]: 2})
    h = Harness(kube, before, spec=spec)
    for now in range(0, 15):
        h.source.reading = before if now < 5 else after  # took and finished a task at 5 s
        await h.tick(float(now))
        assert kube.replicas == 1, f"removed at {now} s"
    await h.tick(15.0)  # the reading from 5 s on is 10 s old: no delivery since
    assert kube.replicas == 0


@pytest.mark.asyncio
async def test_with_drain_the_workers_answer_not_the_statistics_history() -> None:
    # Busy a moment ago by the statistics (deliveries moving): without drain this pod could not
    # be proven idle for 10 s; with drain the worker is stopped and asked, and it holds nothing.
    ips = ("10.0.0.1", "10.0.0.2")
    kube = FakeKube(2, ips=ips)
    control = FakeControl({})
    h = Harness(kube, SourceReading(0, 0, 2), spec=DRAIN_SPEC)
    h.connections.make_control = lambda *_: control
    for now in (0.0, 5.0, 10.0):
        deliveries = int(now)  # a task taken and finished between every two polls
        h.source.reading = SourceReading(
            0,
            0,
            2,
            in_flight_by_host=dict.fromkeys(ips, 0),
            deliveries_by_host=dict.fromkeys(ips, deliveries),
        )
        await h.tick(now)
    assert control.calls[:2] == [
        ("cancel", ["celery@w-0", "celery@w-1"]),
        ("held", ["celery@w-0", "celery@w-1"]),
    ]
    assert kube.replicas == 0
