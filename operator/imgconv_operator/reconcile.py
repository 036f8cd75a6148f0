"""One reconcile of one WorkerAutoscaler: read, decide, mark pods, scale, report.

The decision itself is in scaling.py; this module is the glue between it and the world.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from imgconv_operator import metrics
from imgconv_operator.drain import CeleryControl, WorkerControl, node_name
from imgconv_operator.kube import JsonObject, KubeError, NotFoundError
from imgconv_operator.scaling import (
    BUSY_DELETION_COST_PER_TASK,
    IDLE_DELETION_COST,
    PROOF_SPAN_SECONDS,
    CounterReading,
    Decision,
    Direction,
    PodLoad,
    QueueSample,
    Reason,
    ScaleDownPlan,
    ScalerMemory,
    decide,
    decide_on_error,
    estimate_rates,
    plan_scale_down,
    recommend,
)
from imgconv_operator.sources import (
    QueueSource,
    RabbitMQSource,
    RedisListSource,
    SourceError,
    SourceReading,
)
from imgconv_operator.spec import (
    DELETION_COST_ANNOTATION,
    AutoscalerSpec,
    RabbitMQSourceSpec,
    RedisSourceSpec,
    SpecError,
    parse_spec,
    paused_replicas,
)

log = logging.getLogger(__name__)

RATE_WINDOW_SECONDS = 30.0  # rates over 30 s smooth the broker's 5 s statistics ticks

EventSink = Callable[[str, str, str], None]  # (type, reason, message)


class KubeApi(Protocol):
    """The API calls a reconcile makes (kube.KubeClient in production, fakes in unit tests)."""

    async def get_deployment(self, namespace: str, name: str) -> JsonObject: ...
    async def scale_deployment(self, namespace: str, name: str, replicas: int) -> None: ...
    async def list_pods(
        self, namespace: str, match_labels: Mapping[str, str]
    ) -> list[JsonObject]: ...
    async def annotate_pod(
        self, namespace: str, name: str, annotations: Mapping[str, str]
    ) -> None: ...
    async def list_hpas(self, namespace: str) -> list[JsonObject]: ...
    async def read_secret(self, namespace: str, name: str) -> dict[str, str]: ...


def build_source(
    src: RabbitMQSourceSpec | RedisSourceSpec, username: str, password: str | None
) -> QueueSource:
    """The real source for a spec (RabbitMQ without a Secret uses guest/guest)."""
    if isinstance(src, RabbitMQSourceSpec):
        return RabbitMQSource(
            src.management_url, src.vhost, src.queue, username, password or "guest", src.amqp_url
        )
    return RedisListSource(src.url, src.list_key, password)


def build_control(src: RabbitMQSourceSpec, username: str, password: str | None) -> WorkerControl:
    """Celery remote control over the source's AMQP URL (same broker credentials)."""
    return CeleryControl(src.amqp_url or "", src.vhost, username, password or "guest")


@dataclass
class AutoscalerRuntime:
    """What one autoscaler keeps in memory between reconciles."""

    memory: ScalerMemory = field(default_factory=ScalerMemory)
    counters: tuple[CounterReading, ...] = ()
    failures: int = 0
    source: QueueSource | None = None
    source_spec: object = None
    conditions: dict[str, JsonObject] = field(default_factory=dict)
    last_scale_time: str | None = None
    original_replicas: int | None = None
    # Recent readings (time, reading): a pod is proven idle only if it was idle in one at least
    # PROOF_SPAN_SECONDS old too, with no delivery since (see scaling.provably_idle).
    readings: list[tuple[float, SourceReading]] = field(default_factory=list)
    make_source: Callable[[RabbitMQSourceSpec | RedisSourceSpec, str, str | None], QueueSource] = (
        build_source
    )
    # Draining (source.rabbitmq.drain): the control channel, and the pods stopped for removal
    # that must consume again if they are still there at the next reconcile.
    control: WorkerControl | None = None
    make_control: Callable[[RabbitMQSourceSpec, str, str | None], WorkerControl] = build_control
    drained: set[str] = field(default_factory=set)

    async def close_source(self) -> None:
        """Drop the source connection (it is rebuilt, with fresh credentials, next time)."""
        try:
            if self.source is not None:
                await self.source.close()
        finally:
            self.source = None
            control, self.control = self.control, None
            if control is not None:
                await control.close()


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


class Reconciler:
    """Reconciles one WorkerAutoscaler per call to `run`."""

    def __init__(
        self,
        kube: KubeApi,
        namespace: str,
        name: str,
        runtime: AutoscalerRuntime,
        emit: EventSink,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.runtime = runtime
        self.emit = emit
        self._costs_now: dict[str, str | None] = {}
        self._plan_costs: dict[str, int] = {}
        self._reading_before: SourceReading | None = None

    # -- conditions and events ------------------------------------------------------------

    def _condition(self, kind: str, status: bool, reason: str, message: str = "") -> bool:
        """Set a condition; True when it changed (so events fire on transitions only)."""
        value = "True" if status else "False"
        old = self.runtime.conditions.get(kind)
        if old and old["status"] == value and old["reason"] == reason:
            old["message"] = message
            return False
        self.runtime.conditions[kind] = {
            "type": kind,
            "status": value,
            "reason": reason,
            "message": message,
            "lastTransitionTime": _now_iso(),
        }
        return True

    def _status(self, generation: int | None, **fields: Any) -> JsonObject:
        status: JsonObject = {
            "observedGeneration": generation,
            "sourceFailures": self.runtime.failures,
            "lastScaleTime": self.runtime.last_scale_time,
            "originalReplicas": self.runtime.original_replicas,
            "conditions": [
                self.runtime.conditions[k]
                for k in ("Ready", "Active", "Fallback", "Paused")
                if k in self.runtime.conditions
            ],
        }
        status.update(fields)
        return status

    def _not_ready(self, generation: int | None, reason: str, message: str) -> JsonObject:
        if self._condition("Ready", False, reason, message):
            self.emit("Warning", reason, message)
        return self._status(generation, reason=reason)

    # -- the reconcile ---------------------------------------------------------------------

    async def run(
        self,
        raw_spec: Mapping[str, Any],
        annotations: Mapping[str, str],
        generation: int | None,
        now: float,
        rivals: list[str] | None = None,
    ) -> tuple[JsonObject, float]:
        """Reconcile once; return the status to write and seconds until the next run.

        `rivals` are older WorkerAutoscalers that target the same Deployment: the oldest wins.
        """
        try:
            spec = parse_spec(raw_spec)
        except SpecError as exc:
            return self._not_ready(generation, "InvalidSpec", str(exc)), 30.0
        interval = spec.poll_interval_seconds
        if rivals:
            msg = f"WorkerAutoscaler {rivals[0]!r} already scales {spec.target!r}; not acting"
            return self._not_ready(generation, "TargetConflict", msg), interval
        try:
            deployment = await self.kube.get_deployment(self.namespace, spec.target)
        except NotFoundError:
            msg = f"Deployment {spec.target!r} not found"
            return self._not_ready(generation, "TargetNotFound", msg), interval
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        if self.runtime.original_replicas is None:
            self.runtime.original_replicas = current
        metrics.CURRENT_REPLICAS.labels(self.namespace, self.name).set(current)

        conflict = await self._hpa_conflict(spec.target)
        if conflict:
            msg = f"HorizontalPodAutoscaler {conflict!r} already scales {spec.target!r}; not acting"
            status = self._not_ready(generation, "HPAConflict", msg)
            status.update(currentReplicas=current, desiredReplicas=current)
            return status, interval

        paused, fixed = paused_replicas(annotations)
        if paused:
            return await self._paused(spec, generation, current, fixed), interval
        self._condition("Paused", False, "NotPaused")

        try:
            sample, _ = await self._observe(spec, deployment, current, now)
        except SourceError as exc:
            return await self._on_source_error(spec, generation, current, str(exc)), interval

        await self._resume_leftovers(spec, deployment)
        decision = decide(spec.policy, sample, current, self.runtime.memory, now)
        if decision.direction is Direction.DOWN:
            try:
                decision = await self._recheck(spec, deployment, decision)
            except SourceError as exc:
                return await self._on_source_error(spec, generation, current, str(exc)), interval
        self.runtime.memory = decision.memory
        await self._apply(spec, decision, sample)
        metrics.DECISIONS.labels(
            self.namespace, self.name, decision.direction.value, decision.reason.value
        ).inc()
        metrics.DESIRED_REPLICAS.labels(self.namespace, self.name).set(decision.desired)
        if decision.desired != current:
            metrics.CURRENT_REPLICAS.labels(self.namespace, self.name).set(decision.desired)

        self._condition("Ready", True, "Reconciled", f"reading {self._source_name(spec)}")
        self._condition("Fallback", False, "SourceHealthy")
        active_reason = "Active" if decision.active else decision.reason.value
        self._condition("Active", decision.active, active_reason)
        status = self._status(
            generation,
            ready=sample.ready,
            unacked=sample.unacked,
            backlog=sample.work,
            consumers=sample.consumers,
            arrivalRate=_round(sample.arrival_rate),
            drainRate=_round(sample.drain_rate),
            busyPods=sample.busy_pods,
            desiredReplicas=decision.desired,
            currentReplicas=decision.desired,
            recommendedReplicas=decision.recommendation,
            active=decision.active,
            reason=decision.reason.value,
        )
        return status, interval

    async def _hpa_conflict(self, target: str) -> str | None:
        for hpa in await self.kube.list_hpas(self.namespace):
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("kind") == "Deployment" and ref.get("name") == target:
                return str((hpa.get("metadata") or {}).get("name"))
        return None

    async def _paused(
        self, spec: AutoscalerSpec, generation: int | None, current: int, fixed: int | None
    ) -> JsonObject:
        self.runtime.memory = ScalerMemory()  # after a pause, a scale-down needs a fresh window
        self.runtime.readings = []
        message = "paused by annotation" + (f" at {fixed} replicas" if fixed is not None else "")
        if self._condition("Paused", True, "PausedByAnnotation", message):
            self.emit("Normal", "Paused", message)
        desired = current
        if fixed is not None and fixed != current:
            await self.kube.scale_deployment(self.namespace, spec.target, fixed)
            self._scaled(current, fixed, Reason.PAUSED, message)
            desired = fixed
        self._condition("Ready", True, "Reconciled")
        return self._status(
            generation, desiredReplicas=desired, currentReplicas=desired, reason=Reason.PAUSED.value
        )

    async def _on_source_error(
        self, spec: AutoscalerSpec, generation: int | None, current: int, error: str
    ) -> JsonObject:
        runtime = self.runtime
        runtime.failures += 1
        runtime.memory = ScalerMemory()  # an outage breaks the window: start it over after
        runtime.readings = []
        await runtime.close_source()
        metrics.SOURCE_ERRORS.labels(self.namespace, self.name).inc()
        log.warning(
            "%s/%s: source read failed (%d): %s", self.namespace, self.name, runtime.failures, error
        )
        in_fallback = runtime.failures >= spec.fallback.failure_threshold
        desired = decide_on_error(
            spec.fallback, spec.policy.max_replicas, current, runtime.failures
        )
        why = "SourceError" if in_fallback else "Retrying"
        if self._condition("Fallback", in_fallback, why, error) and in_fallback:
            self.emit(
                "Warning",
                "SourceError",
                f"fallback after {runtime.failures} failed reads: {error}",
            )
        if desired > current:
            await self.kube.scale_deployment(self.namespace, spec.target, desired)
            self._scaled(current, desired, Reason.FALLBACK, error)
        metrics.DECISIONS.labels(
            self.namespace,
            self.name,
            (Direction.UP if desired > current else Direction.NONE).value,
            Reason.FALLBACK.value,
        ).inc()
        metrics.DESIRED_REPLICAS.labels(self.namespace, self.name).set(desired)
        self._condition("Ready", True, "Reconciled", "running on the fallback policy")
        return self._status(
            generation,
            desiredReplicas=desired,
            currentReplicas=desired,
            reason=Reason.FALLBACK.value,
        )

    def _source_name(self, spec: AutoscalerSpec) -> str:
        src = spec.source
        if isinstance(src, RabbitMQSourceSpec):
            return f"rabbitmq queue {src.queue!r} vhost {src.vhost!r}"
        return f"redis list {src.list_key!r}"

    async def _source(self, spec: AutoscalerSpec) -> QueueSource:
        runtime = self.runtime
        if runtime.source is not None and runtime.source_spec == spec.source:
            return runtime.source
        await runtime.close_source()
        src = spec.source
        username, password = "guest", None
        try:
            user_ref = src.username if isinstance(src, RabbitMQSourceSpec) else None
            if user_ref is not None:
                username = (await self.kube.read_secret(self.namespace, user_ref.name))[
                    user_ref.key
                ]
            if src.password is not None:
                secret = await self.kube.read_secret(self.namespace, src.password.name)
                password = secret[src.password.key]
        except (KubeError, KeyError) as exc:
            raise SourceError(f"cannot read the source's credentials Secret: {exc!r}") from exc
        source = runtime.make_source(src, username, password)
        runtime.source, runtime.source_spec = source, spec.source
        if isinstance(src, RabbitMQSourceSpec) and src.drain_node_name is not None:
            runtime.control = runtime.make_control(src, username, password)
        return source

    async def _recheck(
        self, spec: AutoscalerSpec, deployment: JsonObject, decision: Decision
    ) -> Decision:
        """Right before a scale-down: read the queue again (fresh, not the reading the decision
        used), and lower replicas only by as many pods as are proven idle (plan_scale_down)."""
        previous = self._reading_before
        fresh = await (await self._source(spec)).read()
        live = await self._live_pods(deployment)
        loads = self._loads(live, fresh)
        src = spec.source
        drain = (
            self.runtime.control is not None
            and isinstance(src, RabbitMQSourceSpec)
            and src.drain_node_name is not None
        )
        before: dict[str, PodLoad] | None = None  # drain: the workers give the proof
        if not drain:
            old = self._loads(live, previous, record=False) if previous else []
            before = {p.name: p for p in old}
        plan = plan_scale_down(decision.desired, decision.current, loads, before, fresh.ready)
        if drain and isinstance(src, RabbitMQSourceSpec) and plan.replicas < decision.current:
            plan = await self._drain(src, plan, live, decision.current)
        self._plan_costs = plan.costs
        if plan.replicas >= decision.current:
            # Nothing proven idle: no scale-down, and no cooldown started by one that did not
            # happen; the window's recommendations are kept, so it is tried again next poll.
            kept = self.runtime.memory
            memory = replace(
                decision.memory,
                last_scale_down=kept.last_scale_down,
                idle_pod_seconds=kept.idle_pod_seconds,
            )
            return replace(
                decision, desired=decision.current, reason=Reason.NOT_PROVEN_IDLE, memory=memory
            )
        if plan.replicas > decision.desired:
            return replace(decision, desired=plan.replicas, reason=Reason.NOT_PROVEN_IDLE)
        return decision

    async def _drain(
        self, src: RabbitMQSourceSpec, plan: ScaleDownPlan, live: list[JsonObject], current: int
    ) -> ScaleDownPlan:
        """Stop exactly the pods the ReplicaSet will remove, and keep only those holding nothing.

        The victims are the proven-idle pods in the ReplicaSet's own order (not running first,
        then newest). Running ones are told to stop consuming; once they confirm, the broker
        delivers nothing more to them, so what they report holding is final. Those holding
        anything, or not answering, consume again and stay; only the rest are marked cheap.
        """
        control, template = self.runtime.control, src.drain_node_name or "{pod}"
        assert control is not None
        by_name = {str((p.get("metadata") or {}).get("name")): p for p in live}

        def running(name: str) -> bool:
            return ((by_name.get(name) or {}).get("status") or {}).get("phase") == "Running"

        def created(name: str) -> str:
            return str(((by_name.get(name) or {}).get("metadata") or {}).get("creationTimestamp"))

        count = len(plan.costs) - plan.replicas
        newest_first = sorted(plan.removable, key=lambda n: (created(n), n), reverse=True)
        victims = sorted(newest_first, key=running)[: max(count, 0)]  # stable: not running first
        workers = {node_name(template, pod): pod for pod in victims if running(pod)}
        idle: set[str] = set()
        try:
            stopped = await control.cancel(src.queue, list(workers))
            held = await control.held(sorted(stopped))
            idle = {w for w in stopped if held.get(w) == 0}
        except Exception as exc:  # the control channel failing must never remove a pod
            log.warning("%s/%s: drain failed: %r", self.namespace, self.name, exc)
        back = [w for w in workers if w not in idle]
        if back:
            try:
                await control.resume(src.queue, back)
            except Exception as exc:
                log.warning("%s/%s: could not resume %s: %r", self.namespace, self.name, back, exc)
        gone = {v for v in victims if not running(v)} | {workers[w] for w in idle}
        self.runtime.drained = {workers[w] for w in idle}
        costs = {
            name: IDLE_DELETION_COST if name in gone else max(cost, BUSY_DELETION_COST_PER_TASK)
            for name, cost in plan.costs.items()
        }
        replicas = min(current, max(plan.replicas, len(costs) - len(gone)))
        return ScaleDownPlan(replicas, costs, frozenset(gone))

    async def _resume_leftovers(self, spec: AutoscalerSpec, deployment: JsonObject) -> None:
        """Pods drained for a scale-down that did not remove them consume again."""
        runtime = self.runtime
        src = spec.source
        if not runtime.drained:
            return
        drained, runtime.drained = runtime.drained, set()
        if runtime.control is None or not isinstance(src, RabbitMQSourceSpec):
            return
        alive = {
            str((p.get("metadata") or {}).get("name")) for p in await self._live_pods(deployment)
        }
        leftovers = sorted(drained & alive)
        if leftovers:
            template = src.drain_node_name or "{pod}"
            try:
                await runtime.control.resume(src.queue, [node_name(template, p) for p in leftovers])
            except Exception as exc:
                runtime.drained = set(leftovers)  # try again next time
                log.warning(
                    "%s/%s: could not resume %s: %r", self.namespace, self.name, leftovers, exc
                )

    async def _observe(
        self, spec: AutoscalerSpec, deployment: JsonObject, current: int, now: float
    ) -> tuple[QueueSample, list[PodLoad]]:
        source = await self._source(spec)
        reading = await source.read()
        runtime = self.runtime
        runtime.failures = 0
        # The recheck compares with the newest reading at least PROOF_SPAN_SECONDS old.
        cutoff = now - PROOF_SPAN_SECONDS
        old = [(at, r) for at, r in runtime.readings if at <= cutoff]
        self._reading_before = old[-1][1] if old else None
        recent = [(at, r) for at, r in runtime.readings if at > cutoff]
        runtime.readings = [*old[-1:], *recent, (now, reading)]  # what later proofs may need
        arrival = drain = mean_in_flight = None
        if reading.published is not None and reading.acked is not None:
            counters = CounterReading(now, reading.published, reading.acked, reading.unacked)
            rates = estimate_rates(runtime.counters, counters, RATE_WINDOW_SECONDS)
            runtime.counters = rates.history
            arrival, drain, mean_in_flight = rates.arrival, rates.drain, rates.mean_in_flight
        metrics.QUEUE_MESSAGES.labels(self.namespace, self.name, "ready").set(reading.ready)
        metrics.QUEUE_MESSAGES.labels(self.namespace, self.name, "unacked").set(reading.unacked)
        sample = QueueSample(
            ready=reading.ready,
            unacked=reading.unacked,
            consumers=reading.consumers,
            arrival_rate=arrival,
            drain_rate=drain,
            mean_in_flight=mean_in_flight,
        )
        # Pods matter only when the count may go down: who is busy, and who may go.
        pods: list[PodLoad] = []
        if recommend(spec.policy, sample, current)[0] < current:
            pods = await self._pod_loads(deployment, reading)
            busy: int | None = sum(1 for p in pods if p.in_flight is None or p.in_flight > 0)
            if any(p.in_flight is None for p in pods):
                busy = None
            sample = replace(sample, busy_pods=busy)
        return sample, pods

    async def _live_pods(self, deployment: JsonObject) -> list[JsonObject]:
        selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        pods = await self.kube.list_pods(self.namespace, selector)
        return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]

    async def _pod_loads(self, deployment: JsonObject, reading: SourceReading) -> list[PodLoad]:
        return self._loads(await self._live_pods(deployment), reading)

    def _loads(
        self, live: list[JsonObject], reading: SourceReading, *, record: bool = True
    ) -> list[PodLoad]:
        """Per-pod load from one reading (record: remember the pods' current cost annotations)."""
        by_host = reading.in_flight_by_host
        delivered = reading.deliveries_by_host
        ips = {(p.get("status") or {}).get("podIP") for p in live}
        # In-flight work on hosts that are none of our pods (NAT, a sidecar proxy, workers
        # outside the cluster), or more unacked messages in the queue than its channels account
        # for (queue and channel statistics refresh separately), make the per-pod picture
        # unreliable: then every pod counts as possibly busy.
        unknown = (
            by_host is None
            or sum(by_host.values()) < reading.unacked
            or any(n > 0 and h not in ips for h, n in by_host.items())
        )
        loads = []
        if record:
            self._costs_now = {}
        for pod in live:
            meta, status = pod.get("metadata") or {}, pod.get("status") or {}
            annotations = meta.get("annotations") or {}
            if record:
                self._costs_now[str(meta.get("name"))] = annotations.get(DELETION_COST_ANNOTATION)
            ip = status.get("podIP")
            ready = status.get("phase") == "Running"
            deliveries: int | None = None
            if not ip:
                in_flight: int | None = 0  # never started: cannot hold a task
                ready = False
            elif by_host is None and reading.unacked == 0:
                # No per-pod data (Redis), but nothing at all is in flight: every pod is idle,
                # and with no per-pod counter the count stands in as "no delivery seen".
                in_flight, deliveries = 0, 0
            elif unknown or by_host is None:
                in_flight = None
            else:
                in_flight = by_host.get(ip, 0)
                if ip in by_host and delivered is not None:
                    # Only a pod with a consumer channel has a counter; one that is not (yet)
                    # consuming has none, and cannot be proven idle by comparing readings.
                    deliveries = delivered.get(ip, 0)
            loads.append(PodLoad(str(meta.get("name")), in_flight, ready, deliveries))
        return loads

    async def _apply(self, spec: AutoscalerSpec, decision: Decision, sample: QueueSample) -> None:
        if decision.direction is Direction.NONE:
            return
        if decision.direction is Direction.DOWN:
            await self._mark_deletion_costs(self._plan_costs)
        await self.kube.scale_deployment(self.namespace, spec.target, decision.desired)
        detail = (
            f"ready={sample.ready} unacked={sample.unacked}"
            f" recommendation={decision.recommendation}"
        )
        self._scaled(decision.current, decision.desired, decision.reason, detail)

    async def _mark_deletion_costs(self, costs: dict[str, int]) -> None:
        """Proven-idle pods cheap, all others expensive: the ReplicaSet removes only idle ones."""
        for pod_name, cost in costs.items():
            if self._costs_now.get(pod_name) == str(cost):
                continue  # already marked: every pod update is API server load
            try:
                await self.kube.annotate_pod(
                    self.namespace, pod_name, {DELETION_COST_ANNOTATION: str(cost)}
                )
            except NotFoundError:
                continue  # gone since the listing: nothing left to protect or to remove

    def _scaled(self, old: int, new: int, reason: Reason, detail: str) -> None:
        self.runtime.last_scale_time = _now_iso()
        verb = "ScaledUp" if new > old else "ScaledDown"
        self.emit("Normal", verb, f"{old} -> {new} ({reason.value}): {detail}")


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
