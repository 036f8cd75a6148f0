"""One reconcile of one WorkerAutoscaler: read, decide, mark pods, scale, report.

Every scaling decision is a pure function in scaling.py, and the simulator in bench/autoscale
calls the same ones. This module reads the queue and the pods, calls those functions in order
and acts on what they return. A reconcile returns its outcome (status, the state for the next
reconcile, events) instead of keeping it; only the broker connections, and the workers they
stopped for a scale-down, live on in Connections.
"""

from __future__ import annotations

import datetime
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

from imgconv_operator import metrics
from imgconv_operator.drain import CeleryControl, WorkerControl, node_name
from imgconv_operator.kube import JsonObject, KubeError, NotFoundError
from imgconv_operator.scaling import (
    Decision,
    Direction,
    QueueHistory,
    Reason,
    ScaleDownPlan,
    ScalerMemory,
    SourceReading,
    WorkerPod,
    after_drain,
    busy_pods,
    decide,
    decide_on_error,
    drain_victims,
    drained_leftovers,
    limit_to_plan,
    observe,
    pod_loads,
    recheck,
    recommend,
)
from imgconv_operator.sources import QueueSource, RabbitMQSource, RedisListSource, SourceError
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

INVALID_SPEC_RETRY_SECONDS = 30.0
CONDITION_TYPES = ("Ready", "Active", "Fallback", "Paused")  # their order in the status


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


class Event(NamedTuple):
    """A Kubernetes event to post on the WorkerAutoscaler."""

    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Condition:
    """One status condition of the WorkerAutoscaler."""

    type: str
    status: bool
    reason: str
    message: str
    last_transition_time: str

    def to_json(self) -> JsonObject:
        """The condition as the status subresource holds it."""
        return {
            "type": self.type,
            "status": "True" if self.status else "False",
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
        }


@dataclass(frozen=True)
class AutoscalerState:
    """What one autoscaler carries from one reconcile to the next (the daemon loop keeps it)."""

    memory: ScalerMemory = field(default_factory=ScalerMemory)
    history: QueueHistory = field(default_factory=QueueHistory)
    failures: int = 0  # failed source reads in a row
    conditions: tuple[Condition, ...] = ()
    last_scale_time: str | None = None
    original_replicas: int | None = None

    def with_condition(
        self, kind: str, status: bool, reason: str, message: str = ""
    ) -> tuple[AutoscalerState, bool]:
        """Set a condition; True when it changed (so events fire on transitions only)."""
        old = next((c for c in self.conditions if c.type == kind), None)
        changed = old is None or old.status != status or old.reason != reason
        if old is not None and not changed:
            new = replace(old, message=message)
        else:
            new = Condition(kind, status, reason, message, _now_iso())
        others = tuple(c for c in self.conditions if c.type != kind)
        return replace(self, conditions=(*others, new)), changed

    def restart_window(self) -> AutoscalerState:
        """After an outage or a pause a scale-down needs a fresh window and fresh proofs."""
        return replace(self, memory=ScalerMemory(), history=replace(self.history, readings=()))


@dataclass(frozen=True)
class Reconciled:
    """The outcome of one reconcile."""

    status: JsonObject  # for the WorkerAutoscaler's status subresource
    next_in: float  # seconds until the next reconcile
    state: AutoscalerState  # to pass to the next reconcile
    events: tuple[Event, ...] = ()


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
class Connections:
    """One autoscaler's broker connections, kept open from one reconcile to the next.

    `drained` are the workers its control channel stopped for a scale-down: a promise to those
    workers rather than decision state, so it outlives a reconcile that fails half-way; the next
    reconcile makes them consume again if the ReplicaSet left them.
    """

    make_source: Callable[[RabbitMQSourceSpec | RedisSourceSpec, str, str | None], QueueSource] = (
        build_source
    )
    make_control: Callable[[RabbitMQSourceSpec, str, str | None], WorkerControl] = build_control
    source: QueueSource | None = None
    source_spec: object = None
    control: WorkerControl | None = None  # only with source.rabbitmq.drain
    drained: frozenset[str] = frozenset()

    async def close(self) -> None:
        """Drop the connections (they are rebuilt, with fresh credentials, next time)."""
        try:
            if self.source is not None:
                await self.source.close()
        finally:
            self.source = None
            control, self.control = self.control, None
            if control is not None:
                await control.close()

    async def source_for(self, kube: KubeApi, namespace: str, spec: AutoscalerSpec) -> QueueSource:
        """The open source for the spec's source, (re)built when the spec changed."""
        if self.source is not None and self.source_spec == spec.source:
            return self.source
        await self.close()
        src = spec.source
        username, password = "guest", None
        try:
            user_ref = src.username if isinstance(src, RabbitMQSourceSpec) else None
            if user_ref is not None:
                username = (await kube.read_secret(namespace, user_ref.name))[user_ref.key]
            if src.password is not None:
                secret = await kube.read_secret(namespace, src.password.name)
                password = secret[src.password.key]
        except (KubeError, KeyError) as exc:
            raise SourceError(f"cannot read the source's credentials Secret: {exc!r}") from exc
        self.source, self.source_spec = self.make_source(src, username, password), spec.source
        if isinstance(src, RabbitMQSourceSpec) and src.drain_node_name is not None:
            self.control = self.make_control(src, username, password)
        return self.source


def older_rivals(entries: Iterable[tuple[str, str]], name: str) -> list[str]:
    """Autoscalers of the same target older than `name`, from (creation time, name) entries.

    The oldest (creation time, then name) acts; the others report TargetConflict.
    """
    ordered = sorted(entries)
    mine = next((entry for entry in ordered if entry[1] == name), None)
    if mine is None:
        return []  # not indexed yet: the next loop will know
    return [entry[1] for entry in ordered if entry < mine]


def worker_pods(live: list[JsonObject]) -> list[WorkerPod]:
    """Pods as the Kubernetes API lists them, as scaling.py sees them."""
    pods = []
    for pod in live:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        pods.append(
            WorkerPod(
                name=str(meta.get("name")),
                ip=status.get("podIP") or None,
                running=status.get("phase") == "Running",
                created_at=_timestamp(meta.get("creationTimestamp")),
            )
        )
    return pods


def _timestamp(value: Any) -> float:
    try:
        return datetime.datetime.fromisoformat(str(value)).timestamp()
    except ValueError:
        return math.inf  # unknown: the ReplicaSet's "newest first" puts it first too


def _costs_to_write(costs: Mapping[str, int], live: list[JsonObject]) -> dict[str, int]:
    """Only the costs a pod does not carry yet: every pod update is API server load."""
    marked = {
        str((p.get("metadata") or {}).get("name")): (
            ((p.get("metadata") or {}).get("annotations") or {}).get(DELETION_COST_ANNOTATION)
        )
        for p in live
    }
    return {name: cost for name, cost in costs.items() if marked.get(name) != str(cost)}


def _now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _status(state: AutoscalerState, generation: int | None, **fields: Any) -> JsonObject:
    status: JsonObject = {
        "observedGeneration": generation,
        "sourceFailures": state.failures,
        "lastScaleTime": state.last_scale_time,
        "originalReplicas": state.original_replicas,
        "conditions": [
            c.to_json() for kind in CONDITION_TYPES for c in state.conditions if c.type == kind
        ],
    }
    status.update(fields)
    return status


def _scaled(
    state: AutoscalerState, old: int, new: int, reason: Reason, detail: str
) -> tuple[AutoscalerState, Event]:
    verb = "ScaledUp" if new > old else "ScaledDown"
    event = Event("Normal", verb, f"{old} -> {new} ({reason.value}): {detail}")
    return replace(state, last_scale_time=_now_iso()), event


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class Reconciler:
    """Reconciles one WorkerAutoscaler per call to `run`; holds only what every run shares."""

    def __init__(self, kube: KubeApi, namespace: str, name: str, connections: Connections) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.connections = connections

    async def run(
        self,
        state: AutoscalerState,
        raw_spec: Mapping[str, Any],
        annotations: Mapping[str, str],
        generation: int | None,
        now: float,
        rivals: list[str] | None = None,
    ) -> Reconciled:
        """Reconcile once, starting from `state` (what the previous reconcile returned).

        `rivals` are older WorkerAutoscalers that target the same Deployment: the oldest wins.
        """
        try:
            spec = parse_spec(raw_spec)
        except SpecError as exc:
            return _not_ready(
                state, generation, INVALID_SPEC_RETRY_SECONDS, "InvalidSpec", str(exc)
            )
        interval = spec.poll_interval_seconds
        if rivals:
            msg = f"WorkerAutoscaler {rivals[0]!r} already scales {spec.target!r}; not acting"
            return _not_ready(state, generation, interval, "TargetConflict", msg)
        try:
            deployment = await self.kube.get_deployment(self.namespace, spec.target)
        except NotFoundError:
            msg = f"Deployment {spec.target!r} not found"
            return _not_ready(state, generation, interval, "TargetNotFound", msg)
        current = int((deployment.get("spec") or {}).get("replicas", 1))
        if state.original_replicas is None:
            state = replace(state, original_replicas=current)
        metrics.CURRENT_REPLICAS.labels(self.namespace, self.name).set(current)

        conflict = await self._hpa_conflict(spec.target)
        if conflict:
            msg = f"HorizontalPodAutoscaler {conflict!r} already scales {spec.target!r}; not acting"
            return _not_ready(
                state,
                generation,
                interval,
                "HPAConflict",
                msg,
                currentReplicas=current,
                desiredReplicas=current,
            )

        paused, fixed = paused_replicas(annotations)
        if paused:
            return await self._paused(state, spec, generation, current, fixed)
        state, _ = state.with_condition("Paused", False, "NotPaused")
        return await self._autoscale(state, spec, deployment, generation, current, now)

    async def _autoscale(
        self,
        state: AutoscalerState,
        spec: AutoscalerSpec,
        deployment: JsonObject,
        generation: int | None,
        current: int,
        now: float,
    ) -> Reconciled:
        try:
            source = await self.connections.source_for(self.kube, self.namespace, spec)
            reading = await source.read()
        except SourceError as exc:
            return await self._on_source_error(state, spec, generation, current, str(exc))
        observation = observe(state.history, reading, now)
        state = replace(state, failures=0, history=observation.history)
        metrics.QUEUE_MESSAGES.labels(self.namespace, self.name, "ready").set(reading.ready)
        metrics.QUEUE_MESSAGES.labels(self.namespace, self.name, "unacked").set(reading.unacked)
        sample = observation.sample
        if recommend(spec.policy, sample, current)[0] < current:
            # Pods matter only when the count may go down: who is busy, and who may go.
            pods = worker_pods(await self._live_pods(deployment))
            sample = replace(sample, busy_pods=busy_pods(pod_loads(pods, reading)))

        await self._resume_leftovers(spec, deployment)
        decision = decide(spec.policy, sample, current, state.memory, now)
        costs: dict[str, int] = {}
        if decision.direction is Direction.DOWN:
            try:
                decision, costs = await self._recheck(
                    spec, source, deployment, decision, observation.before, state.memory
                )
            except SourceError as exc:
                return await self._on_source_error(state, spec, generation, current, str(exc))
        state = replace(state, memory=decision.memory)
        events: list[Event] = []
        if decision.direction is not Direction.NONE:
            if decision.direction is Direction.DOWN:
                await self._mark_deletion_costs(costs)
            await self.kube.scale_deployment(self.namespace, spec.target, decision.desired)
            detail = (
                f"ready={sample.ready} unacked={sample.unacked}"
                f" recommendation={decision.recommendation}"
            )
            state, event = _scaled(state, current, decision.desired, decision.reason, detail)
            events.append(event)
        metrics.DECISIONS.labels(
            self.namespace, self.name, decision.direction.value, decision.reason.value
        ).inc()
        metrics.DESIRED_REPLICAS.labels(self.namespace, self.name).set(decision.desired)
        if decision.desired != current:
            metrics.CURRENT_REPLICAS.labels(self.namespace, self.name).set(decision.desired)

        reading_from = f"reading {_source_name(spec)}"
        state, _ = state.with_condition("Ready", True, "Reconciled", reading_from)
        state, _ = state.with_condition("Fallback", False, "SourceHealthy")
        active_reason = "Active" if decision.active else decision.reason.value
        state, _ = state.with_condition("Active", decision.active, active_reason)
        status = _status(
            state,
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
        return Reconciled(status, spec.poll_interval_seconds, state, tuple(events))

    async def _hpa_conflict(self, target: str) -> str | None:
        for hpa in await self.kube.list_hpas(self.namespace):
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("kind") == "Deployment" and ref.get("name") == target:
                return str((hpa.get("metadata") or {}).get("name"))
        return None

    async def _paused(
        self,
        state: AutoscalerState,
        spec: AutoscalerSpec,
        generation: int | None,
        current: int,
        fixed: int | None,
    ) -> Reconciled:
        state = state.restart_window()  # after a pause, a scale-down needs a fresh window
        message = "paused by annotation" + (f" at {fixed} replicas" if fixed is not None else "")
        state, changed = state.with_condition("Paused", True, "PausedByAnnotation", message)
        events = [Event("Normal", "Paused", message)] if changed else []
        desired = current
        if fixed is not None and fixed != current:
            await self.kube.scale_deployment(self.namespace, spec.target, fixed)
            state, event = _scaled(state, current, fixed, Reason.PAUSED, message)
            events.append(event)
            desired = fixed
        state, _ = state.with_condition("Ready", True, "Reconciled")
        status = _status(
            state,
            generation,
            desiredReplicas=desired,
            currentReplicas=desired,
            reason=Reason.PAUSED.value,
        )
        return Reconciled(status, spec.poll_interval_seconds, state, tuple(events))

    async def _on_source_error(
        self,
        state: AutoscalerState,
        spec: AutoscalerSpec,
        generation: int | None,
        current: int,
        error: str,
    ) -> Reconciled:
        # An outage breaks the window: start it over after.
        state = replace(state.restart_window(), failures=state.failures + 1)
        await self.connections.close()
        metrics.SOURCE_ERRORS.labels(self.namespace, self.name).inc()
        log.warning(
            "%s/%s: source read failed (%d): %s", self.namespace, self.name, state.failures, error
        )
        in_fallback = state.failures >= spec.fallback.failure_threshold
        desired = decide_on_error(spec.fallback, spec.policy.max_replicas, current, state.failures)
        why = "SourceError" if in_fallback else "Retrying"
        state, changed = state.with_condition("Fallback", in_fallback, why, error)
        events = []
        if changed and in_fallback:
            message = f"fallback after {state.failures} failed reads: {error}"
            events.append(Event("Warning", "SourceError", message))
        if desired > current:
            await self.kube.scale_deployment(self.namespace, spec.target, desired)
            state, event = _scaled(state, current, desired, Reason.FALLBACK, error)
            events.append(event)
        metrics.DECISIONS.labels(
            self.namespace,
            self.name,
            (Direction.UP if desired > current else Direction.NONE).value,
            Reason.FALLBACK.value,
        ).inc()
        metrics.DESIRED_REPLICAS.labels(self.namespace, self.name).set(desired)
        fallback = "running on the fallback policy"
        state, _ = state.with_condition("Ready", True, "Reconciled", fallback)
        status = _status(
            state,
            generation,
            desiredReplicas=desired,
            currentReplicas=desired,
            reason=Reason.FALLBACK.value,
        )
        return Reconciled(status, spec.poll_interval_seconds, state, tuple(events))

    async def _recheck(
        self,
        spec: AutoscalerSpec,
        source: QueueSource,
        deployment: JsonObject,
        decision: Decision,
        before: SourceReading | None,
        memory: ScalerMemory,
    ) -> tuple[Decision, dict[str, int]]:
        """Right before a scale-down: read the queue again (fresh, not the reading the decision
        used) and lower replicas only by as many pods as are proven idle (scaling.recheck).

        Returns the decision as far as the proof allows and the pod-deletion costs to write.
        """
        fresh = await source.read()
        live = await self._live_pods(deployment)
        pods = worker_pods(live)
        src = spec.source
        drain = (
            src
            if isinstance(src, RabbitMQSourceSpec)
            and src.drain_node_name is not None
            and self.connections.control is not None
            else None
        )
        plan = recheck(decision, pods, fresh, before, drain=drain is not None)
        if drain is not None and plan.replicas < decision.current:
            plan = await self._drain(drain, plan, pods, decision.current)
        return limit_to_plan(decision, plan, memory), _costs_to_write(plan.costs, live)

    async def _drain(
        self, src: RabbitMQSourceSpec, plan: ScaleDownPlan, pods: list[WorkerPod], current: int
    ) -> ScaleDownPlan:
        """Stop exactly the pods the ReplicaSet will remove, and keep only those holding nothing.

        The victims come from scaling.drain_victims. Running ones are told to stop consuming;
        once they confirm, the broker delivers nothing more to them, so what they report
        holding is final. Those holding anything, or not answering, consume again and stay;
        scaling.after_drain marks only the rest cheap.
        """
        control = self.connections.control
        assert control is not None
        template = src.drain_node_name or "{pod}"
        victims = drain_victims(plan, pods)
        workers = {node_name(template, v.name): v.name for v in victims if v.running}
        idle: set[str] = set()
        try:
            stopped = await control.cancel(src.queue, list(workers))
            held = await control.held(sorted(stopped))
            idle = {workers[w] for w in stopped if w in workers and held.get(w) == 0}
        except Exception as exc:  # the control channel failing must never remove a pod
            log.warning("%s/%s: drain failed: %r", self.namespace, self.name, exc)
        back = [worker for worker, pod in workers.items() if pod not in idle]
        if back:
            try:
                await control.resume(src.queue, back)
            except Exception as exc:
                log.warning("%s/%s: could not resume %s: %r", self.namespace, self.name, back, exc)
        self.connections.drained = frozenset(idle)
        return after_drain(plan, victims, idle, current)

    async def _resume_leftovers(self, spec: AutoscalerSpec, deployment: JsonObject) -> None:
        """Pods drained for a scale-down that did not remove them consume again."""
        connections, src = self.connections, spec.source
        if not connections.drained:
            return
        drained, connections.drained = connections.drained, frozenset()
        if connections.control is None or not isinstance(src, RabbitMQSourceSpec):
            return
        leftovers = drained_leftovers(drained, worker_pods(await self._live_pods(deployment)))
        if leftovers:
            template = src.drain_node_name or "{pod}"
            try:
                workers = [node_name(template, pod) for pod in leftovers]
                await connections.control.resume(src.queue, workers)
            except Exception as exc:
                connections.drained = frozenset(leftovers)  # try again next time
                log.warning(
                    "%s/%s: could not resume %s: %r", self.namespace, self.name, leftovers, exc
                )

    async def _live_pods(self, deployment: JsonObject) -> list[JsonObject]:
        selector = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
        pods = await self.kube.list_pods(self.namespace, selector)
        return [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]

    async def _mark_deletion_costs(self, costs: dict[str, int]) -> None:
        """Proven-idle pods cheap, all others expensive: the ReplicaSet removes only idle ones."""
        for pod_name, cost in costs.items():
            try:
                await self.kube.annotate_pod(
                    self.namespace, pod_name, {DELETION_COST_ANNOTATION: str(cost)}
                )
            except NotFoundError:
                continue  # gone since the listing: nothing left to protect or to remove


def _not_ready(
    state: AutoscalerState,
    generation: int | None,
    interval: float,
    reason: str,
    message: str,
    **fields: Any,
) -> Reconciled:
    state, changed = state.with_condition("Ready", False, reason, message)
    events = (Event("Warning", reason, message),) if changed else ()
    return Reconciled(_status(state, generation, reason=reason, **fields), interval, state, events)


def _source_name(spec: AutoscalerSpec) -> str:
    src = spec.source
    if isinstance(src, RabbitMQSourceSpec):
        return f"rabbitmq queue {src.queue!r} vhost {src.vhost!r}"
    return f"redis list {src.list_key!r}"
