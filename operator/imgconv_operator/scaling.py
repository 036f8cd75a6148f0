"""Pure scaling decisions: no I/O, no clock, no Kubernetes; every result follows from the inputs."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum


class Direction(StrEnum):
    """Which way a decision moves the replica count."""

    UP = "up"
    DOWN = "down"
    NONE = "none"


class Reason(StrEnum):
    """Why a decision came out the way it did (used in events, status and metric labels)."""

    BACKLOG = "Backlog"  # service time unknown: one slot per outstanding message
    THROUGHPUT = "Throughput"  # arrivals + backlog drained within targetDrainSeconds
    IN_FLIGHT = "InFlight"  # held up by tasks that are running right now
    NO_WORK = "NoWork"  # nothing ready, nothing in flight: go to the idle level
    BELOW_ACTIVATION = "BelowActivation"  # a little work while idle: one replica, not minReplicas
    WITHIN_TOLERANCE = "WithinTolerance"  # demand within tolerance of the current capacity
    NO_BACKLOG = "NoBacklog"  # more wanted, but nothing waits: the workers keep up
    STABILIZING = "Stabilizing"  # scale-down wanted, but the window does not agree yet
    STEP_LIMITED = "StepLimited"  # moved, but by at most the step limit
    ABOVE_MAX = "AboveMax"  # current count above maxReplicas: corrected at once
    COOLDOWN = "Cooldown"  # scaled down recently: batch pods that free up one by one
    QUIET = "Quiet"  # nothing ready, nothing published for the rate window: idle pods go now
    NOT_PROVEN_IDLE = "NotProvenIdle"  # the fresh re-read before a scale-down found no idle pod
    STEADY = "Steady"  # nothing to change
    FALLBACK = "Fallback"  # queue unreadable: hold (or the fixed fallback count, never lower)
    PAUSED = "Paused"  # imgconv.io/paused or imgconv.io/paused-replicas


@dataclass(frozen=True)
class StepPolicy:
    """How fast one direction may move: stabilization window and the largest step per decision."""

    stabilization_seconds: float
    max_step: int = 0  # pods per decision; the larger of this and max_step_percent wins
    max_step_percent: int = 100  # of the current count; both 0 means unlimited
    # After a move this way the next one waits this long, or less when several pods wait: only
    # until the pods it would remove have sat idle this many pod-seconds in all.
    cooldown_seconds: float = 0.0

    def limit(self, current: int) -> int | None:
        """Largest change allowed from `current` in one decision (None: unlimited)."""
        if self.max_step <= 0 and self.max_step_percent <= 0:
            return None
        by_percent = math.ceil(current * self.max_step_percent / 100)
        return max(self.max_step, by_percent, 1)


@dataclass(frozen=True)
class ScalingPolicy:
    """The WorkerAutoscaler spec, as far as the decision needs it."""

    concurrency_per_replica: int = 1
    target_utilization: float = 0.8
    min_replicas: int = 1
    max_replicas: int = 10
    idle_replicas: int | None = None  # replicas with no work at all; None means min_replicas
    activation_backlog: int = 0
    target_drain_seconds: float = 30.0
    tolerance: float = 0.1
    scale_up: StepPolicy = field(default_factory=lambda: StepPolicy(0.0, 10, 100))
    scale_down: StepPolicy = field(default_factory=lambda: StepPolicy(60.0, 0, 100, 60.0))

    @property
    def idle_level(self) -> int:
        """Replica count when there is no work at all."""
        return self.min_replicas if self.idle_replicas is None else self.idle_replicas


@dataclass(frozen=True)
class QueueSample:
    """One reading of the queue: counts plus optional rates and per-pod busyness."""

    ready: int
    unacked: int
    consumers: int = 0
    arrival_rate: float | None = None  # messages/s published into the queue
    drain_rate: float | None = None  # messages/s acknowledged (tasks finished)
    mean_in_flight: float | None = None  # unacked averaged over the same window as the rates
    busy_pods: int | None = None  # pods holding unacked messages; None: not known per pod

    @property
    def work(self) -> int:
        """Messages waiting or being worked on."""
        return self.ready + self.unacked


@dataclass(frozen=True)
class Recommendation:
    """An unstabilized recommendation at a point in time."""

    at: float
    replicas: int


@dataclass(frozen=True)
class ScalerMemory:
    """What the decision remembers between calls: recent recommendations, and since when."""

    recommendations: tuple[Recommendation, ...] = ()
    since: float | None = None
    last_scale_down: float | None = None
    idle_pod_seconds: float = 0.0  # removable pods x seconds held back since the last scale-down

    def remember(self, at: float, replicas: int, keep_seconds: float) -> ScalerMemory:
        """Add a recommendation and forget those older than `keep_seconds`."""
        kept = tuple(r for r in self.recommendations if r.at >= at - keep_seconds)
        since = at if self.since is None else self.since
        return replace(self, recommendations=(*kept, Recommendation(at, replicas)), since=since)

    def window(self, now: float, seconds: float) -> list[int]:
        """Recommendations made within the last `seconds` (including now)."""
        return [r.replicas for r in self.recommendations if r.at >= now - seconds]

    def covers(self, now: float, seconds: float) -> bool:
        """True when we have been observing for at least `seconds`."""
        return self.since is not None and now - self.since >= seconds


@dataclass(frozen=True)
class Decision:
    """The outcome of one decision."""

    desired: int
    current: int
    recommendation: int  # before stabilization and step limits
    reason: Reason
    active: bool
    memory: ScalerMemory

    @property
    def direction(self) -> Direction:
        """UP, DOWN or NONE relative to the current count."""
        if self.desired > self.current:
            return Direction.UP
        if self.desired < self.current:
            return Direction.DOWN
        return Direction.NONE


def estimate_service_seconds(sample: QueueSample) -> float | None:
    """Mean seconds a task holds a slot, by Little's law (in flight / completions per second)."""
    in_flight = sample.mean_in_flight if sample.mean_in_flight is not None else sample.unacked
    if sample.drain_rate is None or sample.drain_rate <= 0 or in_flight <= 0 or sample.unacked <= 0:
        return None
    return in_flight / sample.drain_rate


def recommend(policy: ScalingPolicy, sample: QueueSample, current: int) -> tuple[int, Reason, bool]:
    """Replica count the queue calls for right now, within bounds: (replicas, reason, active)."""
    idle = policy.idle_level
    if sample.work == 0:
        return min(idle, policy.max_replicas), Reason.NO_WORK, False
    if sample.work <= policy.activation_backlog and current <= idle:
        # Some work while idle but below activation: one replica serves it, nothing starves.
        return min(max(idle, 1), policy.max_replicas), Reason.BELOW_ACTIVATION, False

    per_replica = policy.concurrency_per_replica * policy.target_utilization
    service = estimate_service_seconds(sample)
    if service is None:
        slots = float(sample.work)
        reason = Reason.BACKLOG if sample.ready else Reason.IN_FLIGHT
    else:
        arrivals = sample.arrival_rate if sample.arrival_rate is not None else sample.drain_rate
        needed_rate = (arrivals or 0.0) + sample.ready / policy.target_drain_seconds
        slots = needed_rate * service
        reason = Reason.THROUGHPUT
    if not math.isfinite(slots):  # a drain rate near zero says nothing useful
        slots, reason = float(sample.work), Reason.BACKLOG
    if slots < sample.unacked:
        slots = float(sample.unacked)
        reason = Reason.IN_FLIGHT
    wanted = slots / per_replica
    if current > 0 and abs(wanted / current - 1.0) <= policy.tolerance:
        replicas, reason = current, Reason.WITHIN_TOLERANCE
    else:
        replicas = math.ceil(min(wanted, policy.max_replicas + 1.0) - 1e-9)
    replicas = max(replicas, policy.min_replicas, 1)
    return min(replicas, policy.max_replicas), reason, True


def is_quiet(sample: QueueSample) -> bool:
    """Nothing ready and nothing published over the whole rate window (rate known to be 0)."""
    return sample.ready == 0 and sample.arrival_rate is not None and sample.arrival_rate <= 0


def busy_floor(sample: QueueSample, current: int) -> int:
    """Pods that may hold running tasks and so must not be removed (all of them if unknown)."""
    if sample.busy_pods is not None:
        return min(sample.busy_pods, current)
    return current if sample.unacked > 0 else 0


def decide(
    policy: ScalingPolicy,
    sample: QueueSample,
    current: int,
    memory: ScalerMemory,
    now: float,
) -> Decision:
    """Desired replicas: up at once (bounded step), down only when the whole window agrees."""
    target, reason, active = recommend(policy, sample, current)
    keep = max(policy.scale_up.stabilization_seconds, policy.scale_down.stabilization_seconds)
    previous_at = memory.recommendations[-1].at if memory.recommendations else None
    memory = memory.remember(now, target, keep)
    result = Decision(current, current, target, reason, active, memory)

    if current > policy.max_replicas:
        # The user lowered maxReplicas: that is intent, not noise, so no window applies.
        return replace(result, desired=policy.max_replicas, reason=Reason.ABOVE_MAX)

    if target > current and sample.ready == 0 and current >= max(policy.min_replicas, 1):
        # Nothing waits, so the workers keep up: a higher estimate here is rate noise, and
        # acting on it is how autoscalers flap under steady load.
        return replace(result, reason=Reason.NO_BACKLOG)

    if target > current:
        stabilized = min(memory.window(now, policy.scale_up.stabilization_seconds))
        if current == 0 and sample.work > 0:
            stabilized = max(stabilized, 1)  # waking from zero is never delayed by the window
        if stabilized <= current:
            return replace(result, reason=Reason.STABILIZING)
        limit = policy.scale_up.limit(current)
        desired = stabilized if limit is None else min(stabilized, current + limit)
        # The step limit guards against noisy rate estimates; messages that can be counted are
        # not noise, so it never holds replicas below one slot per outstanding message.
        counted = math.ceil(sample.work / policy.concurrency_per_replica)
        desired = max(desired, min(stabilized, counted))
        why = Reason.STEP_LIMITED if desired < target else reason
        return replace(result, desired=desired, reason=why)

    if target < current:
        window = policy.scale_down.stabilization_seconds
        quiet = is_quiet(sample)
        if quiet:
            # Nothing waits and nothing was published for the whole rate window: there is no
            # load left to be noisy, so idle pods need not sit out the window (busy ones stay).
            stabilized = target
        elif not memory.covers(now, window):
            return replace(result, reason=Reason.STABILIZING)
        else:
            stabilized = max(memory.window(now, window))
        floor = busy_floor(sample, current)
        limit = policy.scale_down.limit(current)
        lowest = stabilized if limit is None else max(stabilized, current - limit)
        desired = max(lowest, floor)
        if desired >= current:
            held_by_tasks = floor >= current and stabilized < current
            return replace(result, reason=Reason.IN_FLIGHT if held_by_tasks else Reason.STABILIZING)
        last = memory.last_scale_down
        cooling = last is not None and now - last < policy.scale_down.cooldown_seconds
        if cooling and desired > policy.idle_level:
            # Pods free up one by one while long tasks finish: rather than one change per pod,
            # wait out the cooldown, but only until the removable pods have sat idle
            # cooldown_seconds pod-seconds in all (rent or buy: a lone idle pod waits the whole
            # cooldown, four go after a quarter of it). Going to the idle level never waits.
            held = 0.0 if previous_at is None else max(0.0, now - previous_at)
            spent = memory.idle_pod_seconds + (current - desired) * held
            if spent < policy.scale_down.cooldown_seconds:
                return replace(
                    result, reason=Reason.COOLDOWN, memory=replace(memory, idle_pod_seconds=spent)
                )
        if floor > lowest:
            why = Reason.IN_FLIGHT
        elif quiet:
            why = Reason.QUIET
        elif limit is not None and lowest == current - limit and lowest > stabilized:
            why = Reason.STEP_LIMITED
        else:
            why = reason
        memory = replace(memory, last_scale_down=now, idle_pod_seconds=0.0)
        return replace(result, desired=desired, reason=why, memory=memory)

    return replace(result, reason=Reason.STEADY if reason != Reason.WITHIN_TOLERANCE else reason)


@dataclass(frozen=True)
class FallbackPolicy:
    """What to do when the queue cannot be read."""

    failure_threshold: int = 3
    replicas: int | None = None  # None: hold the current count


def decide_on_error(policy: FallbackPolicy, max_replicas: int, current: int, failures: int) -> int:
    """Replicas while the source fails: hold, or the fixed fallback count, never lower."""
    if failures < policy.failure_threshold or policy.replicas is None:
        return current
    return max(current, min(policy.replicas, max_replicas))


# ---- from readings of the broker to the decision's input ----------------------------------

RATE_WINDOW_SECONDS = 30.0  # rates over 30 s smooth the broker's 5 s statistics ticks
# The idleness proof compares with a reading at least this old. Two statistics intervals: a
# RabbitMQ channel emits its statistics every 5 s and the management agent collects them every
# 5 s, so a delivery shows in a reading at most ~10 s later; it cannot hide in both readings.
PROOF_SPAN_SECONDS = 10.0


@dataclass(frozen=True)
class SourceReading:
    """One reading of the queue, as a source (sources.py) returns it."""

    ready: int
    unacked: int
    consumers: int
    published: int | None = None  # cumulative counters, for rates; None: not available
    acked: int | None = None
    # In-flight (unacked) messages per consumer host (pod IP); None: not available per pod.
    in_flight_by_host: dict[str, int] | None = None
    # Cumulative deliveries to the consumer channels per host; None: not available per pod.
    deliveries_by_host: dict[str, int] | None = None


@dataclass(frozen=True)
class CounterReading:
    """Cumulative queue counters at one time (published, acknowledged) and the unacked count."""

    at: float
    published: int
    acked: int
    in_flight: int = 0


@dataclass(frozen=True)
class RateEstimate:
    """Rates over the window, and the history to pass to the next call."""

    history: tuple[CounterReading, ...]
    arrival: float | None
    drain: float | None
    mean_in_flight: float | None


def estimate_rates(
    history: tuple[CounterReading, ...], reading: CounterReading, window_seconds: float
) -> RateEstimate:
    """Append a reading; return arrival and drain rates and mean in-flight over the window."""
    if history and (reading.published < history[-1].published or reading.acked < history[-1].acked):
        history = ()  # counters went backwards: the broker restarted or the queue was recreated
    kept = tuple(h for h in history if h.at >= reading.at - window_seconds) or history[-1:]
    kept = (*kept, reading)
    oldest = kept[0]
    span = reading.at - oldest.at
    if span <= 0:
        return RateEstimate(kept, None, None, None)
    arrival = (reading.published - oldest.published) / span
    drain = (reading.acked - oldest.acked) / span
    mean_in_flight = sum(r.in_flight for r in kept) / len(kept)
    return RateEstimate(kept, arrival, drain, mean_in_flight)


@dataclass(frozen=True)
class QueueHistory:
    """Past readings an autoscaler keeps: counters for the rates, readings for idleness proofs."""

    counters: tuple[CounterReading, ...] = ()
    # (time, reading): the newest one at least PROOF_SPAN_SECONDS old, and all younger ones.
    readings: tuple[tuple[float, SourceReading], ...] = ()


@dataclass(frozen=True)
class Observation:
    """A reading turned into the decision's input."""

    sample: QueueSample  # busy_pods not filled in: that needs the pods (pod_loads, busy_pods)
    before: SourceReading | None  # the newest earlier reading at least PROOF_SPAN_SECONDS old
    history: QueueHistory  # to pass to the next call


def observe(history: QueueHistory, reading: SourceReading, now: float) -> Observation:
    """The sample for decide(), the reading a scale-down's proof compares with, the new history."""
    cutoff = now - PROOF_SPAN_SECONDS
    old = [(at, r) for at, r in history.readings if at <= cutoff]
    recent = [(at, r) for at, r in history.readings if at > cutoff]
    readings = (*old[-1:], *recent, (now, reading))  # what later proofs may need
    counters, arrival, drain, mean_in_flight = history.counters, None, None, None
    if reading.published is not None and reading.acked is not None:
        counter = CounterReading(now, reading.published, reading.acked, reading.unacked)
        rates = estimate_rates(history.counters, counter, RATE_WINDOW_SECONDS)
        counters, arrival, drain = rates.history, rates.arrival, rates.drain
        mean_in_flight = rates.mean_in_flight
    sample = QueueSample(
        ready=reading.ready,
        unacked=reading.unacked,
        consumers=reading.consumers,
        arrival_rate=arrival,
        drain_rate=drain,
        mean_in_flight=mean_in_flight,
    )
    return Observation(sample, old[-1][1] if old else None, QueueHistory(counters, readings))


# ---- which pod holds what -----------------------------------------------------------------


@dataclass(frozen=True)
class WorkerPod:
    """A live (not terminating) pod of the worker Deployment, as the Kubernetes API lists it."""

    name: str
    ip: str | None  # status.podIP; None until the pod has a network
    running: bool  # status.phase == Running
    created_at: float  # creation time in seconds; math.inf when unknown (counts as newest)


@dataclass(frozen=True)
class PodLoad:
    """A worker pod and the tasks it holds (None: unknown)."""

    name: str
    in_flight: int | None
    ready: bool = True  # running (has, or may have, a consumer); False: never started
    # Cumulative deliveries to the pod's consumer channels; None: no consumer seen, or unknown.
    deliveries: int | None = None


def pod_loads(pods: Sequence[WorkerPod], reading: SourceReading) -> list[PodLoad]:
    """What each pod holds according to one reading (matched by pod IP to the consumer hosts)."""
    by_host = reading.in_flight_by_host
    delivered = reading.deliveries_by_host
    ips = {pod.ip for pod in pods}
    # In-flight work on hosts that are none of our pods (NAT, a sidecar proxy, workers outside
    # the cluster, a terminating pod), or more unacked messages in the queue than its consumer
    # channels account for (queue and channel statistics refresh separately; a worker in warm
    # shutdown has cancelled its consumer but still holds its tasks), make the per-pod picture
    # unreliable: then every pod counts as possibly busy.
    unknown = (
        by_host is None
        or sum(by_host.values()) < reading.unacked
        or any(n > 0 and h not in ips for h, n in by_host.items())
    )
    loads = []
    for pod in pods:
        ready, deliveries = pod.running, None
        in_flight: int | None
        if not pod.ip:
            in_flight, ready = 0, False  # never started: cannot hold a task
        elif by_host is None and reading.unacked == 0:
            # No per-pod data (Redis), but nothing at all is in flight: every pod is idle,
            # and with no per-pod counter the count stands in as "no delivery seen".
            in_flight, deliveries = 0, 0
        elif unknown or by_host is None:
            in_flight = None
        else:
            in_flight = by_host.get(pod.ip, 0)
            if pod.ip in by_host and delivered is not None:
                # Only a pod with a consumer channel has a counter; one that is not (yet)
                # consuming has none, and cannot be proven idle by comparing readings.
                deliveries = delivered.get(pod.ip, 0)
        loads.append(PodLoad(pod.name, in_flight, ready, deliveries))
    return loads


def busy_pods(loads: Sequence[PodLoad]) -> int | None:
    """Pods that may hold a task (QueueSample.busy_pods); None when any pod's load is unknown."""
    if any(load.in_flight is None for load in loads):
        return None
    return sum(1 for load in loads if load.in_flight)


# ---- the scale-down: re-read, prove idle, drain -------------------------------------------

IDLE_DELETION_COST = -100
BUSY_DELETION_COST_PER_TASK = 100


@dataclass(frozen=True)
class ScaleDownPlan:
    """What a scale-down may really do after the fresh re-read."""

    replicas: int  # >= the decision's desired count; == current when nothing is proven idle
    costs: dict[str, int]  # pod-deletion-cost per pod
    removable: frozenset[str]  # pods proven idle: the only ones the ReplicaSet may pick


def provably_idle(pod: PodLoad, previous: PodLoad | None, ready_now: int) -> bool:
    """A pod that cannot be holding a task, as far as two readings of the broker can tell.

    Never started: it has no consumer, so it holds nothing. Otherwise it must hold nothing in the
    fresh reading and in one at least PROOF_SPAN_SECONDS older, with no delivery to its
    channels in between (a short task taken and finished between the readings shows up there;
    no channel in either reading counts as no delivery), and nothing may be ready right now (a
    ready message goes to a pod with a free slot within milliseconds, so "idle" means nothing
    then). The readings are broker statistics, up to one statistics interval old: a delivery
    after the fresh one is invisible here (see the README on when a task can be interrupted).
    """
    if not pod.ready:
        return pod.in_flight == 0
    if ready_now > 0 or pod.in_flight != 0 or previous is None or previous.in_flight != 0:
        return False
    return pod.deliveries == previous.deliveries  # None twice: no consumer in either reading


def idle_candidate(pod: PodLoad, ready_now: int) -> bool:
    """Idle in the fresh reading, with nothing ready: worth asking the worker itself (drain)."""
    if not pod.ready:
        return pod.in_flight == 0
    return ready_now == 0 and pod.in_flight == 0


def plan_scale_down(
    desired: int,
    current: int,
    pods: list[PodLoad],
    previous: Mapping[str, PodLoad] | None,
    ready_now: int,
) -> ScaleDownPlan:
    """Lower replicas only by as many pods as the fresh re-read proves idle; mark those cheap.

    `pods` come from the fresh re-read made right before patching, `previous` (by pod name)
    from a reading at least PROOF_SPAN_SECONDS older. The ReplicaSet removes len(pods) - replicas
    pods, lowest deletion cost first; every proven-idle pod costs IDLE_DELETION_COST and every
    other pod at least BUSY_DELETION_COST_PER_TASK, so it can only pick proven-idle ones.
    `previous` None: the workers will be asked before anything is removed (drain), so pods idle
    in the fresh reading are the candidates and the proof is theirs.
    """
    if previous is None:
        removable = frozenset(p.name for p in pods if idle_candidate(p, ready_now))
    else:
        removable = frozenset(
            p.name for p in pods if provably_idle(p, previous.get(p.name), ready_now)
        )
    costs: dict[str, int] = {}
    for pod in pods:
        if pod.name in removable:
            costs[pod.name] = IDLE_DELETION_COST
        else:
            costs[pod.name] = BUSY_DELETION_COST_PER_TASK * max(pod.in_flight or 0, 1)
    floor = len(pods) - len(removable)  # the ReplicaSet removes len(pods) - replicas pods
    replicas = min(current, max(desired, floor))
    return ScaleDownPlan(replicas, costs, removable)


def recheck(
    decision: Decision,
    pods: Sequence[WorkerPod],
    fresh: SourceReading,
    before: SourceReading | None,
    *,
    drain: bool,
) -> ScaleDownPlan:
    """The scale-down a re-read made right before patching allows (plan_scale_down).

    `fresh` is that re-read, `before` the Observation's reading at least PROOF_SPAN_SECONDS
    older (None: there is none yet, so no running pod can be proven idle by the statistics).
    With `drain` the workers themselves give the proof afterwards (drain_victims, after_drain).
    """
    previous: dict[str, PodLoad] | None = None
    if not drain:
        old = pod_loads(pods, before) if before is not None else []
        previous = {load.name: load for load in old}
    loads = pod_loads(pods, fresh)
    return plan_scale_down(decision.desired, decision.current, loads, previous, fresh.ready)


def drain_victims(plan: ScaleDownPlan, pods: Sequence[WorkerPod]) -> list[WorkerPod]:
    """The removable pods the ReplicaSet will remove, in its own order: not running, then newest.

    Exactly these are drained: the running ones among them are told to stop consuming and asked
    what they hold; a pod the ReplicaSet will keep is never stopped.
    """
    count = len(plan.costs) - plan.replicas
    candidates = [pod for pod in pods if pod.name in plan.removable]
    newest_first = sorted(candidates, key=lambda p: (p.created_at, p.name), reverse=True)
    return sorted(newest_first, key=lambda p: p.running)[: max(count, 0)]  # stable sort


def after_drain(
    plan: ScaleDownPlan, victims: Sequence[WorkerPod], idle: Collection[str], current: int
) -> ScaleDownPlan:
    """The plan once the drained workers answered: only victims that never started, or whose
    worker confirmed it stopped consuming and holds nothing (`idle`, pod names), may go."""
    gone = {v.name for v in victims if not v.running or v.name in idle}
    costs = {
        name: IDLE_DELETION_COST if name in gone else max(cost, BUSY_DELETION_COST_PER_TASK)
        for name, cost in plan.costs.items()
    }
    replicas = min(current, max(plan.replicas, len(costs) - len(gone)))
    return ScaleDownPlan(replicas, costs, frozenset(gone))


def limit_to_plan(decision: Decision, plan: ScaleDownPlan, before: ScalerMemory) -> Decision:
    """A scale-down decision lowered only as far as the plan allows.

    Nothing proven idle: no scale-down, and no cooldown started by one that did not happen (the
    cooldown's clock and its idle pod-seconds stay as they were in `before`, the memory the
    decision started from); the window's recommendations are kept, so the next poll tries again.
    """
    if plan.replicas >= decision.current:
        memory = replace(
            decision.memory,
            last_scale_down=before.last_scale_down,
            idle_pod_seconds=before.idle_pod_seconds,
        )
        return replace(
            decision, desired=decision.current, reason=Reason.NOT_PROVEN_IDLE, memory=memory
        )
    if plan.replicas > decision.desired:
        return replace(decision, desired=plan.replicas, reason=Reason.NOT_PROVEN_IDLE)
    return decision


def drained_leftovers(drained: Collection[str], pods: Sequence[WorkerPod]) -> list[str]:
    """Pods drained for a scale-down that are still there (the ReplicaSet chose otherwise): they
    must consume again."""
    alive = {pod.name for pod in pods}
    return sorted(name for name in drained if name in alive)
