"""A small cluster simulation: a FIFO broker with prefetch-1 workers, pods that take time to
start, warm shutdown, and two autoscalers (ours, and a model of KEDA + HPA with defaults).

Ours is the operator's own decision code: every decision comes from imgconv_operator.scaling,
called through the module (so a test can swap one and see the simulation change), in the order
reconcile.Reconciler calls them. The simulation supplies only what the cluster would: queue
readings (SourceReading), the pod list (WorkerPod), the workers' drain answers, the ReplicaSet.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from imgconv_operator import scaling
from imgconv_operator.scaling import (
    Direction,
    QueueHistory,
    ScaleDownPlan,
    ScalerMemory,
    ScalingPolicy,
    SourceReading,
    StepPolicy,
    WorkerPod,
)

DT = 0.5  # seconds per simulation step
RS_DELAY = 1.0  # scale PATCH -> the ReplicaSet controller picks its victims (watch + sync)


@dataclass
class Pod:
    """A worker pod: starting until ready_at, then it takes tasks into its slots."""

    number: int
    created: float
    ready_at: float
    slots: list[float | None]  # finish time of the task in each slot, None when free
    terminating: bool = False
    deliveries: int = 0  # messages delivered to this pod's consumer so far
    consuming: bool = True  # False after a drain's cancel_consumer: the broker delivers nothing

    @property
    def name(self) -> str:
        """The pod's name (zero-padded: names sort like creation order, as numbers do)."""
        return f"worker-{self.number:06d}"

    @property
    def ip(self) -> str:
        """The pod's IP, the consumer host RabbitMQ reports for its channel."""
        return f"10.1.{self.number // 250}.{self.number % 250 + 1}"

    def busy(self) -> int:
        """Tasks running in this pod."""
        return sum(1 for s in self.slots if s is not None)

    def ready(self, now: float) -> bool:
        """Started and taking work."""
        return now >= self.ready_at and not self.terminating

    def consumer(self, now: float) -> bool:
        """Has a consumer on the queue: started, not drained, not in warm shutdown (a Celery
        worker cancels its consumer when warm shutdown begins, then finishes its tasks)."""
        return self.ready(now) and self.consuming


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
        self.statistics = SourceReading(0, 0, 0, 0, 0, {}, {})  # the management API's numbers
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
            free = [p for p in self.pods if p.consumer(t) and p.busy() < len(p.slots)]
            if not free:
                break
            pod = next((p for p in free if p.number > self._last_served), free[0])
            self._last_served = pod.number
            arrived = self.queue.popleft()
            self.waits.append(max(0.0, t - arrived))
            pod.slots[pod.slots.index(None)] = t + self.service_time()
            pod.deliveries += 1
        self.replica_seconds += len(self.pods) * DT
        self.now += DT

    def refresh_stats(self) -> None:
        """The management API's statistics refresh (every 5 s in RabbitMQ by default).

        As RabbitMQSource reads them: queue totals, and per consumer channel (so per pod IP)
        its unacked messages and cumulative deliveries. A pod without a consumer (starting,
        drained, in warm shutdown) has no channel on the queue, but its tasks count as unacked.
        """
        consumers = [p for p in self.pods if p.consumer(self.now)]
        self.statistics = SourceReading(
            ready=len(self.queue),
            unacked=sum(p.busy() for p in self.pods),
            consumers=len(consumers),
            published=self.published,
            acked=self.acked,
            in_flight_by_host={p.ip: p.busy() for p in consumers},
            deliveries_by_host={p.ip: p.deliveries for p in consumers},
        )

    def read_queue(self) -> SourceReading:
        """RabbitMQSource.read() with amqpUrl: ready and consumers live (passive declare), the
        rest from the last statistics refresh."""
        consumers = sum(1 for p in self.pods if p.consumer(self.now))
        return replace(self.statistics, ready=len(self.queue), consumers=consumers)

    def worker_pods(self) -> list[WorkerPod]:
        """The pod list the operator reads from the API: live pods, not terminating ones."""
        return [WorkerPod(p.name, p.ip, p.ready(self.now), p.created) for p in self.active()]

    def pod(self, name: str) -> Pod:
        """A live pod by name."""
        return next(p for p in self.active() if p.name == name)


def k8s_default_rank(cluster: Cluster) -> list[Pod]:
    """ReplicaSet victim order without deletion costs: not-ready first, then newest first."""
    active = cluster.active()
    return sorted(active, key=lambda p: (p.ready(cluster.now), -p.created, -p.number))


def cost_aware_rank(costs: Mapping[str, int]) -> Callable[[Cluster], list[Pod]]:
    """ReplicaSet victim order with pod-deletion-cost: not-ready, lower cost, newest."""

    def rank(cluster: Cluster) -> list[Pod]:
        return sorted(
            cluster.active(),
            key=lambda p: (p.ready(cluster.now), costs.get(p.name, 0), -p.created, -p.number),
        )

    return rank


class Autoscaler:
    """Something that looks at the cluster now and then and calls scale_to."""

    def tick(self, cluster: Cluster) -> None:
        """Called every DT; decides itself whether it is time to act."""
        raise NotImplementedError


class OurAutoscaler(Autoscaler):
    """The operator: poll every pollIntervalSeconds and do what reconcile.Reconciler does
    between reading the queue and patching the Deployment, with the same scaling functions.

    Its readings are as stale as the operator's: the ready count is live (AMQP), the rest is
    the last statistics refresh, and the re-read before a scale-down returns the same numbers
    when the statistics have not refreshed since, as the management API would.
    """

    def __init__(
        self, policy: ScalingPolicy, poll: float, phase: float, drain: bool = False
    ) -> None:
        self.policy, self.poll, self.next = policy, poll, phase
        self.drain = drain  # source.rabbitmq.drain: Celery cancel_consumer + inspect first
        self.memory = ScalerMemory()
        self.history = QueueHistory()
        self.drained: frozenset[str] = frozenset()  # stopped for a removal, maybe still there

    def tick(self, cluster: Cluster) -> None:
        """Poll when due: Reconciler._autoscale, with the cluster in place of the API."""
        if cluster.now < self.next:
            return
        self.next += self.poll
        now, current = cluster.now, cluster.replicas
        reading = cluster.read_queue()
        observation = scaling.observe(self.history, reading, now)
        self.history = observation.history
        sample = observation.sample
        if scaling.recommend(self.policy, sample, current)[0] < current:
            loads = scaling.pod_loads(cluster.worker_pods(), reading)
            sample = replace(sample, busy_pods=scaling.busy_pods(loads))
        self.resume_leftovers(cluster)
        decision = scaling.decide(self.policy, sample, current, self.memory, now)
        if decision.direction is Direction.DOWN:
            fresh = cluster.read_queue()
            pods = cluster.worker_pods()
            plan = scaling.recheck(decision, pods, fresh, observation.before, drain=self.drain)
            if self.drain and plan.replicas < current:
                plan = self.drain_workers(cluster, plan, pods, current)
            decision = scaling.limit_to_plan(decision, plan, self.memory)
            if decision.direction is Direction.DOWN:
                cluster.rank = cost_aware_rank(plan.costs)  # the pod-deletion-cost annotations
        self.memory = decision.memory
        cluster.scale_to(decision.desired)

    def drain_workers(
        self, cluster: Cluster, plan: ScaleDownPlan, pods: Sequence[WorkerPod], current: int
    ) -> ScaleDownPlan:
        """Reconciler._drain against simulated workers: each victim's cancel_consumer is
        confirmed before it is asked (live) what it holds, so nothing reaches it after the
        answer; those holding anything get add_consumer and stay."""
        victims = scaling.drain_victims(plan, pods)
        stopped = [cluster.pod(v.name) for v in victims if v.running]
        for pod in stopped:
            pod.consuming = False
        idle = frozenset(pod.name for pod in stopped if not pod.busy())
        for pod in stopped:
            pod.consuming = pod.name not in idle
        self.drained = idle
        return scaling.after_drain(plan, victims, idle, current)

    def resume_leftovers(self, cluster: Cluster) -> None:
        """Reconciler._resume_leftovers: drained pods the ReplicaSet left consume again."""
        drained, self.drained = self.drained, frozenset()
        for name in scaling.drained_leftovers(drained, cluster.worker_pods()):
            cluster.pod(name).consuming = True


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
