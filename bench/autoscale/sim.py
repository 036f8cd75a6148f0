"""A small cluster simulation: a FIFO broker with prefetch-1 workers, pods that take time to
start, warm shutdown, and two autoscalers (ours, and a model of KEDA + HPA with defaults)."""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from imgconv_operator.scaling import (
    BUSY_DELETION_COST_PER_TASK,
    IDLE_DELETION_COST,
    PROOF_SPAN_SECONDS,
    CounterReading,
    PodLoad,
    QueueSample,
    ScaleDownPlan,
    ScalerMemory,
    ScalingPolicy,
    StepPolicy,
    decide,
    estimate_rates,
    plan_scale_down,
)

DT = 0.5  # seconds per simulation step
RS_DELAY = 1.0  # scale PATCH -> the ReplicaSet controller picks its victims (watch + sync)


@dataclass
class Pod:
    """A worker pod: starting until ready_at, then it takes tasks into its slots."""

    name: int
    created: float
    ready_at: float
    slots: list[float | None]  # finish time of the task in each slot, None when free
    terminating: bool = False
    deliveries: int = 0  # messages delivered to this pod's consumer so far
    consuming: bool = True  # False after a drain's cancel_consumer: the broker delivers nothing

    def busy(self) -> int:
        """Tasks running in this pod."""
        return sum(1 for s in self.slots if s is not None)

    def ready(self, now: float) -> bool:
        """Started and taking work."""
        return now >= self.ready_at and not self.terminating


@dataclass
class Trace:
    """Arrivals over time plus what the work and the cluster look like."""

    name: str
    duration: float
    arrivals: Callable[[float, random.Random], int]  # messages arriving in [t, t + DT)
    service_mean: float  # seconds per image
    service_cv: float = 0.3  # spread of service times (lognormal)
    concurrency: int = 2
    start_delay: float = 20.0  # pod scheduling + image pull + worker boot
    max_replicas: int = 20


@dataclass
class Snapshot:
    """What the broker's statistics said at their last refresh."""

    ready: int = 0
    unacked: int = 0
    consumers: int = 0
    published: int = 0
    acked: int = 0
    in_flight: dict[int, int] = field(default_factory=dict)
    deliveries: dict[int, int] = field(default_factory=dict)


class Cluster:
    """Broker + pods; autoscalers call `scale_to`."""

    def __init__(self, trace: Trace, rng: random.Random, rank: Callable[[Cluster], list[Pod]]):
        self.trace, self.rng, self.rank = trace, rng, rank
        self.now = 0.0
        self.queue: deque[float] = deque()
        self.pods: list[Pod] = []
        self.published = self.acked = 0
        self.waits: list[float] = []
        self.replica_seconds = 0.0
        self.scale_changes = 0
        self.busy_killed = 0
        self.first_arrival: float | None = None
        self.first_scale_up: float | None = None
        self.replicas = 0  # Deployment spec.replicas
        self.snapshot = Snapshot()
        self._next_pod = 0
        self._last_served = -1  # RabbitMQ's round-robin position among consumers
        self._remove_at: float | None = None  # a scale-down the ReplicaSet has not acted on yet

    def active(self) -> list[Pod]:
        """Pods that are not shutting down."""
        return [p for p in self.pods if not p.terminating]

    def service_time(self) -> float:
        """A lognormal service time with the trace's mean and spread."""
        cv = self.trace.service_cv
        sigma = math.sqrt(math.log(1 + cv * cv))
        mu = math.log(self.trace.service_mean) - sigma * sigma / 2
        return self.rng.lognormvariate(mu, sigma)

    def scale_to(self, replicas: int) -> None:
        """The Deployment + ReplicaSet: add starting pods, or remove the lowest-ranked ones."""
        if replicas == self.replicas:
            return
        self.scale_changes += 1
        if (
            replicas > self.replicas
            and self.first_scale_up is None
            and self.first_arrival is not None
        ):
            self.first_scale_up = self.now
        self.replicas = replicas
        active = self.active()
        for _ in range(replicas - len(active)):
            pod = Pod(
                self._next_pod,
                self.now,
                self.now + self.trace.start_delay,
                [None] * self.trace.concurrency,
            )
            self._next_pod += 1
            self.pods.append(pod)
        if len(active) > replicas and self._remove_at is None:
            self._remove_at = self.now + RS_DELAY

    def _replicaset_sync(self) -> None:
        """The ReplicaSet acts RS_DELAY after the patch, on the pods as they are by then."""
        if self._remove_at is None or self.now < self._remove_at:
            return
        self._remove_at = None
        excess = len(self.active()) - self.replicas
        for victim in self.rank(self)[: max(excess, 0)]:
            victim.terminating = True
            if victim.busy():
                self.busy_killed += 1  # warm shutdown: it finishes, but it was picked busy

    def step(self) -> None:
        """Advance DT: arrivals, completions, dispatch, accounting."""
        t = self.now
        n = self.trace.arrivals(t, self.rng)
        for _ in range(n):
            self.queue.append(t + self.rng.random() * DT)
        self.published += n
        if n and self.first_arrival is None:
            self.first_arrival = t
        for pod in self.pods:
            for i, finish in enumerate(pod.slots):
                if finish is not None and finish <= t:
                    pod.slots[i] = None
                    self.acked += 1
        self._replicaset_sync()
        self.pods = [p for p in self.pods if not (p.terminating and p.busy() == 0)]
        # RabbitMQ hands each message to the next consumer with a free prefetch slot, round
        # robin: load spreads over all pods, so an idle pod gets the next message as likely
        # as any other (not oldest-first, which would keep the newest pods idle).
        while self.queue:
            free = [p for p in self.pods if p.ready(t) and p.consuming and p.busy() < len(p.slots)]
            if not free:
                break
            pod = next((p for p in free if p.name > self._last_served), free[0])
            self._last_served = pod.name
            arrived = self.queue.popleft()
            self.waits.append(max(0.0, t - arrived))
            pod.slots[pod.slots.index(None)] = t + self.service_time()
            pod.deliveries += 1
        self.replica_seconds += len(self.pods) * DT
        self.now += DT

    def refresh_stats(self) -> None:
        """The management API's statistics refresh (every 5 s in RabbitMQ by default)."""
        self.snapshot = Snapshot(
            ready=len(self.queue),
            unacked=sum(p.busy() for p in self.pods),
            consumers=sum(1 for p in self.pods if p.ready(self.now)),
            published=self.published,
            acked=self.acked,
            in_flight={p.name: p.busy() for p in self.pods},
            # Only pods with a consumer (ready) have a channel, hence a delivery counter.
            deliveries={p.name: p.deliveries for p in self.pods if p.ready(self.now)},
        )


def k8s_default_rank(cluster: Cluster) -> list[Pod]:
    """ReplicaSet victim order without deletion costs: not-ready first, then newest first."""
    active = cluster.active()
    return sorted(active, key=lambda p: (p.ready(cluster.now), -p.created, -p.name))


def cost_aware_rank(costs: dict[int, int]) -> Callable[[Cluster], list[Pod]]:
    """ReplicaSet victim order with pod-deletion-cost: not-ready, lower cost, newest."""

    def rank(cluster: Cluster) -> list[Pod]:
        return sorted(
            cluster.active(),
            key=lambda p: (p.ready(cluster.now), costs.get(p.name, 0), -p.created, -p.name),
        )

    return rank


class Autoscaler:
    """Something that looks at the cluster now and then and calls scale_to."""

    def tick(self, cluster: Cluster) -> None:
        """Called every DT; decides itself whether it is time to act."""
        raise NotImplementedError


class OurAutoscaler(Autoscaler):
    """The operator: poll every pollIntervalSeconds, live ready count over AMQP, the rest from
    lagging statistics, decision from imgconv_operator.scaling; before a scale-down a re-read
    (the same lagging statistics: within one poll it is the same snapshot) and
    plan_scale_down against the previous poll's reading, then deletion costs, then the patch."""

    def __init__(
        self, policy: ScalingPolicy, poll: float, phase: float, drain: bool = False
    ) -> None:
        self.policy, self.poll, self.next = policy, poll, phase
        self.drain = drain  # source.rabbitmq.drain: Celery cancel_consumer + inspect first
        self.memory = ScalerMemory()
        self.counters: tuple[CounterReading, ...] = ()
        self.costs: dict[int, int] = {}
        self.history: list[tuple[float, Snapshot]] = []  # statistics as read at each poll

    @staticmethod
    def loads(cluster: Cluster, snap: Snapshot) -> list[PodLoad]:
        """Per-pod load as the management API shows it (a starting pod has no consumer yet)."""
        return [
            PodLoad(
                str(p.name),
                snap.in_flight.get(p.name, 0),
                ready=p.ready(cluster.now),  # the pod list is read live from the API
                deliveries=snap.deliveries.get(p.name),
            )
            for p in cluster.active()
        ]

    def tick(self, cluster: Cluster) -> None:
        """Poll when due."""
        if cluster.now < self.next:
            return
        self.next += self.poll
        snap = cluster.snapshot
        reading = CounterReading(cluster.now, snap.published, snap.acked, snap.unacked)
        rates = estimate_rates(self.counters, reading, 30.0)
        self.counters = rates.history
        loads = self.loads(cluster, snap)
        sample = QueueSample(
            ready=len(cluster.queue),  # passive queue.declare: live
            unacked=snap.unacked,
            consumers=snap.consumers,
            arrival_rate=rates.arrival,
            drain_rate=rates.drain,
            mean_in_flight=rates.mean_in_flight,
            busy_pods=sum(1 for load in loads if load.in_flight),
        )
        cutoff = cluster.now - PROOF_SPAN_SECONDS  # reconcile._observe keeps the same
        old = [(at, x) for at, x in self.history if at <= cutoff]
        before = old[-1][1] if old else None
        recent = [(at, x) for at, x in self.history if at > cutoff]
        self.history = [*old[-1:], *recent, (cluster.now, snap)]
        decision = decide(self.policy, sample, cluster.replicas, self.memory, cluster.now)
        if decision.desired < cluster.replicas:
            fresh = cluster.snapshot  # the re-read: as stale as the statistics are
            previous: dict[str, PodLoad] | None = None  # drain: the workers give the proof
            if not self.drain:
                old_loads = self.loads(cluster, before) if before else []
                previous = {x.name: x for x in old_loads}
            plan = plan_scale_down(
                decision.desired,
                cluster.replicas,
                self.loads(cluster, fresh),
                previous,
                len(cluster.queue),
            )
            if self.drain and plan.replicas < cluster.replicas:
                plan = self.drained(cluster, plan)
            if plan.replicas >= cluster.replicas:
                memory = replace(decision.memory, last_scale_down=self.memory.last_scale_down)
                decision = replace(decision, desired=cluster.replicas, memory=memory)
            else:
                decision = replace(decision, desired=plan.replicas)
                self.costs = {int(k): v for k, v in plan.costs.items()}
                cluster.rank = cost_aware_rank(self.costs)
        self.memory = decision.memory
        cluster.scale_to(decision.desired)

    @staticmethod
    def drained(cluster: Cluster, plan: ScaleDownPlan) -> ScaleDownPlan:
        """reconcile._drain: stop the victims consuming, ask them (live) what they hold, keep
        the ones holding anything. The cancel is confirmed before the question, so a message
        delivered up to then is in the answer, and none comes after."""
        pods = {str(p.name): p for p in cluster.active()}
        count = len(plan.costs) - plan.replicas
        newest_first = sorted(
            plan.removable, key=lambda n: (pods[n].created, pods[n].name), reverse=True
        )
        victims = sorted(newest_first, key=lambda n: pods[n].ready(cluster.now))[: max(count, 0)]
        gone = set()
        for name in victims:
            pod = pods[name]
            if not pod.ready(cluster.now):
                gone.add(name)  # no worker yet: nothing to stop, nothing held
                continue
            pod.consuming = False
            if pod.busy():
                pod.consuming = True  # add_consumer: it stays
            else:
                gone.add(name)
        costs = {
            name: IDLE_DELETION_COST if name in gone else max(cost, BUSY_DELETION_COST_PER_TASK)
            for name, cost in plan.costs.items()
        }
        replicas = min(cluster.replicas, max(plan.replicas, len(costs) - len(gone)))
        return ScaleDownPlan(replicas, costs, frozenset(gone))


@dataclass(frozen=True)
class KedaDefaults:
    """KEDA ScaledObject + HPA defaults (KEDA 2.x docs; Kubernetes HPA v2 behavior)."""

    polling_interval: float = 30.0  # KEDA checks activation
    cooldown_period: float = 300.0  # inactive this long before going to zero
    hpa_sync: float = 15.0  # --horizontal-pod-autoscaler-sync-period
    tolerance: float = 0.1
    scale_down_window: float = 300.0
    scale_up_pods: int = 4  # per 15 s, or 100 %: whichever is larger
    scale_up_percent: int = 100


class KedaAutoscaler(Autoscaler):
    """KEDA's RabbitMQ trigger over AMQP (ready messages only), QueueLength mode, with the HPA
    doing 1..max and KEDA doing 0<->1."""

    def __init__(
        self,
        value: float,
        max_replicas: int,
        phase: float,
        hpa_phase: float,
        d: KedaDefaults = KedaDefaults(),
    ) -> None:
        self.value, self.max = value, max_replicas
        self.d = d
        self.next_poll, self.next_sync = phase, hpa_phase
        self.last_active = -math.inf
        self.recs: list[tuple[float, int]] = []

    def tick(self, cluster: Cluster) -> None:
        """KEDA poll and HPA sync when due."""
        cluster.rank = k8s_default_rank
        now = cluster.now
        if now >= self.next_poll:
            self.next_poll += self.d.polling_interval
            if len(cluster.queue) > 0:  # activation: ready messages only
                self.last_active = now
                if cluster.replicas == 0:
                    cluster.scale_to(1)
            elif cluster.replicas > 0 and now - self.last_active >= self.d.cooldown_period:
                cluster.scale_to(0)
                self.recs.clear()
        if now >= self.next_sync:
            self.next_sync += self.d.hpa_sync
            if cluster.replicas == 0:
                return  # the HPA is idle at zero; KEDA owns 0 <-> 1
            current = cluster.replicas
            metric = len(cluster.queue)
            ratio = metric / (self.value * current)
            raw = current if abs(ratio - 1) <= self.d.tolerance else math.ceil(metric / self.value)
            raw = max(1, min(self.max, raw))
            self.recs = [(t, r) for t, r in self.recs if t >= now - self.d.scale_down_window]
            self.recs.append((now, raw))
            if raw > current:
                limit = max(
                    self.d.scale_up_pods, math.ceil(current * self.d.scale_up_percent / 100)
                )
                cluster.scale_to(min(raw, current + limit))
            elif raw < current:
                stabilized = max(r for _, r in self.recs)
                if stabilized < current:
                    cluster.scale_to(stabilized)


@dataclass(frozen=True)
class Result:
    """What one run produced."""

    reaction: float | None
    p99_wait: float
    replica_seconds: float
    scale_changes: int
    busy_killed: int
    unfinished: int


def run(trace: Trace, make: Callable[[random.Random], Autoscaler], seed: int) -> Result:
    """Simulate one trace with one autoscaler."""
    rng = random.Random(seed)
    scaler = make(random.Random(seed + 1))
    cluster = Cluster(trace, rng, k8s_default_rank)
    stats_phase = random.Random(seed + 2).uniform(0, 5)
    next_stats = stats_phase
    while cluster.now < trace.duration:
        if cluster.now >= next_stats:
            cluster.refresh_stats()
            next_stats += 5.0
        scaler.tick(cluster)
        cluster.step()
    waits = sorted(cluster.waits)
    p99 = waits[min(len(waits) - 1, int(0.99 * len(waits)))] if waits else 0.0
    reaction = None
    if cluster.first_scale_up is not None and cluster.first_arrival is not None:
        reaction = cluster.first_scale_up - cluster.first_arrival
    return Result(
        reaction=reaction,
        p99_wait=p99,
        replica_seconds=cluster.replica_seconds,
        scale_changes=cluster.scale_changes,
        busy_killed=cluster.busy_killed,
        unfinished=len(cluster.queue) + sum(p.busy() for p in cluster.pods),
    )


def our_policy(trace: Trace) -> ScalingPolicy:
    """The operator with the CRD's defaults (scale to zero allowed, like the KEDA setup)."""
    return ScalingPolicy(
        concurrency_per_replica=trace.concurrency,
        target_utilization=0.8,
        min_replicas=1,
        max_replicas=trace.max_replicas,
        idle_replicas=0,
        target_drain_seconds=30.0,
        scale_up=StepPolicy(0.0, 10, 100),
        scale_down=StepPolicy(60.0, 0, 100, 60.0),
    )
