"""The scaling decision: concrete scenarios plus properties checked with hypothesis."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from imgconv_operator.scaling import (
    CounterReading,
    Direction,
    FallbackPolicy,
    PodLoad,
    QueueSample,
    Reason,
    ScalerMemory,
    ScalingPolicy,
    StepPolicy,
    decide,
    decide_on_error,
    estimate_rates,
    plan_scale_down,
    recommend,
)

POLICY = ScalingPolicy(
    concurrency_per_replica=1,
    target_utilization=1.0,
    min_replicas=1,
    max_replicas=20,
    idle_replicas=0,
    target_drain_seconds=30.0,
    scale_up=StepPolicy(0.0, 10, 100),
    scale_down=StepPolicy(60.0, 0, 100),
)


def run(policy: ScalingPolicy, sample: QueueSample, current: int, times: list[float]) -> list[int]:
    """Feed the same sample at each time, applying each decision; return the counts."""
    memory = ScalerMemory()
    counts = []
    for now in times:
        decision = decide(policy, sample, current, memory, now)
        memory, current = decision.memory, decision.desired
        counts.append(current)
    return counts


def test_backlog_without_rates_asks_one_slot_per_message_up_to_max() -> None:
    decision = decide(POLICY, QueueSample(ready=7, unacked=0), 0, ScalerMemory(), 0.0)
    assert decision.desired == 7
    assert decision.direction is Direction.UP
    assert decision.reason is Reason.BACKLOG
    big = decide(POLICY, QueueSample(ready=500, unacked=0), 10, ScalerMemory(), 0.0)
    assert big.desired == 20  # capped by maxReplicas, step 100% of 10 allows it


def test_scale_up_step_bounds_rate_estimates_beyond_the_counted_backlog() -> None:
    policy = ScalingPolicy(max_replicas=100, scale_up=StepPolicy(0.0, 4, 100))
    # 5 messages outstanding, but a burst of arrivals makes the rate estimate ask for 100.
    sample = QueueSample(ready=3, unacked=2, arrival_rate=50.0, drain_rate=1.0, mean_in_flight=2.0)
    decision = decide(policy, sample, 2, ScalerMemory(), 0.0)
    assert decision.recommendation == 100
    assert decision.desired == 6  # max(4 pods, 100 % of 2) = 4 more
    assert decision.reason is Reason.STEP_LIMITED


def test_a_counted_backlog_is_not_held_back_by_the_step() -> None:
    policy = ScalingPolicy(max_replicas=100, scale_up=StepPolicy(0.0, 4, 100))
    decision = decide(policy, QueueSample(ready=90, unacked=0), 2, ScalerMemory(), 0.0)
    assert decision.desired == 90  # one slot per waiting message, in one step
    capped = decide(policy, QueueSample(ready=500, unacked=0), 2, ScalerMemory(), 0.0)
    assert capped.desired == 100


def test_throughput_uses_drain_rate_and_drains_backlog_within_target() -> None:
    # 4 tasks in flight finishing 2/s -> 2 s per task; 60 ready must go within 30 s
    # -> 2/s arrivals + 2/s backlog = 4/s * 2 s = 8 slots.
    sample = QueueSample(ready=60, unacked=4, arrival_rate=2.0, drain_rate=2.0)
    target, reason, active = recommend(POLICY, sample, 4)
    assert (target, reason, active) == (8, Reason.THROUGHPUT, True)


def test_utilization_and_concurrency_shape_the_count() -> None:
    policy = ScalingPolicy(concurrency_per_replica=2, target_utilization=0.5, max_replicas=50)
    target, _, _ = recommend(policy, QueueSample(ready=10, unacked=0), 0)
    assert target == 10  # 10 slots / (2 per pod * 0.5)


def test_never_zero_while_a_task_runs_even_with_nothing_ready() -> None:
    # KEDA over AMQP sees 0 ready here and scales to zero while the task runs.
    counts = run(POLICY, QueueSample(ready=0, unacked=1, busy_pods=1), 3, [0, 30, 61, 120, 500])
    assert min(counts) >= 1
    assert counts[-1] == 1


def test_scale_down_waits_for_the_whole_window() -> None:
    idle = QueueSample(ready=0, unacked=0, busy_pods=0)
    counts = run(POLICY, idle, 5, [0, 10, 30, 59, 60, 65])
    assert counts == [5, 5, 5, 5, 0, 0]


def test_a_spike_inside_the_window_delays_scale_down() -> None:
    memory = ScalerMemory()
    busy = QueueSample(ready=5, unacked=0)
    idle = QueueSample(ready=0, unacked=0, busy_pods=0)
    d = decide(POLICY, idle, 5, memory, 0)
    d = decide(POLICY, busy, 5, d.memory, 30)
    assert d.desired == 5
    d = decide(POLICY, idle, 5, d.memory, 61)
    assert d.desired == 5
    assert d.reason is Reason.STABILIZING
    d = decide(POLICY, idle, 5, d.memory, 91)
    assert d.desired == 0


def test_scale_down_keeps_busy_pods() -> None:
    sample = QueueSample(ready=0, unacked=3, busy_pods=3)
    counts = run(POLICY, sample, 8, [0, 61])
    assert counts[-1] == 3


COOLDOWN_POLICY = ScalingPolicy(
    target_utilization=1.0,
    min_replicas=1,
    idle_replicas=0,
    max_replicas=20,
    scale_down=StepPolicy(10.0, 0, 100, cooldown_seconds=30.0),
)


def test_cooldown_batches_pods_that_free_up_one_by_one() -> None:
    memory, current, changes = ScalerMemory(), 10, []
    # One long task finishes every 5 s: 10 busy pods, then 9, ... then none.
    for step in range(0, 20):
        in_flight = max(0, 10 - step)
        sample = QueueSample(ready=0, unacked=in_flight, busy_pods=in_flight)
        decision = decide(COOLDOWN_POLICY, sample, current, memory, step * 5.0)
        if decision.desired != current:
            changes.append((step * 5.0, current - decision.desired))
        memory, current = decision.memory, decision.desired
    assert current == 0
    assert len(changes) <= 5  # one per freed pod would be 10
    # Between scale-downs the removed pods sat idle at least the cooldown's pod-seconds in
    # all (the last change goes to the idle level, which never waits).
    for (before, _), (after, removed) in itertools.pairwise(changes[:-1]):
        assert (after - before) * removed >= 30.0


def test_a_lone_idle_pod_waits_the_whole_cooldown() -> None:
    memory, current = ScalerMemory(), 4
    busy = QueueSample(ready=0, unacked=2, busy_pods=2)
    down_at = None
    for now in range(0, 200, 5):
        # Two pods stay busy; after the first scale-down a third pod frees up.
        sample = busy if down_at is None else QueueSample(ready=0, unacked=1, busy_pods=1)
        decision = decide(COOLDOWN_POLICY, sample, current, memory, float(now))
        if decision.desired < current:
            if down_at is None:
                down_at = now
            else:
                assert current - decision.desired == 1
                assert now - down_at >= 30.0
                assert decision.desired == 1
                break
        memory, current = decision.memory, decision.desired
    else:
        raise AssertionError("the idle pod was never removed")


def test_unknown_busyness_means_no_scale_down_while_anything_is_in_flight() -> None:
    # Redis broker: no per-pod information, so every pod may be busy.
    sample = QueueSample(ready=0, unacked=1, busy_pods=None)
    counts = run(POLICY, sample, 6, [0, 61, 200])
    assert counts == [6, 6, 6]


def test_below_activation_keeps_one_replica_not_zero() -> None:
    policy = ScalingPolicy(min_replicas=3, idle_replicas=0, activation_backlog=10)
    target, reason, active = recommend(policy, QueueSample(ready=4, unacked=0), 0)
    assert (target, reason, active) == (1, Reason.BELOW_ACTIVATION, False)
    target, reason, active = recommend(policy, QueueSample(ready=40, unacked=0), 0)
    assert target >= 3
    assert active


def test_lowering_max_applies_at_once() -> None:
    decision = decide(POLICY, QueueSample(ready=100, unacked=0), 30, ScalerMemory(), 0.0)
    assert decision.desired == 20
    assert decision.reason is Reason.ABOVE_MAX


def test_tolerance_holds_small_deviations() -> None:
    policy = ScalingPolicy(max_replicas=50, target_utilization=1.0, tolerance=0.1)
    sample = QueueSample(ready=0, unacked=10, arrival_rate=10.5, drain_rate=10.0)
    decision = decide(policy, sample, 10, ScalerMemory(), 0.0)
    assert decision.desired == 10
    assert decision.reason is Reason.WITHIN_TOLERANCE


def test_no_scale_up_on_rate_noise_while_nothing_waits() -> None:
    # The 30 s rates say 3/s arrive but only 2/s finish: noise, since nothing is queued.
    sample = QueueSample(ready=0, unacked=8, arrival_rate=3.0, drain_rate=2.0)
    decision = decide(POLICY, sample, 8, ScalerMemory(), 0.0)
    assert decision.recommendation > 8
    assert decision.desired == 8
    assert decision.reason is Reason.NO_BACKLOG


def test_fallback_holds_or_raises_never_lowers() -> None:
    hold = FallbackPolicy(failure_threshold=3, replicas=None)
    fixed = FallbackPolicy(failure_threshold=3, replicas=4)
    assert decide_on_error(hold, 10, 7, 5) == 7
    assert decide_on_error(fixed, 10, 2, 1) == 2  # below the threshold: hold
    assert decide_on_error(fixed, 10, 2, 3) == 4
    assert decide_on_error(fixed, 10, 9, 3) == 9  # never scale down on an error


def test_rates_from_cumulative_counters() -> None:
    first = estimate_rates((), CounterReading(0, 100, 50, 4), 30)
    assert first.arrival is None
    assert first.drain is None
    second = estimate_rates(first.history, CounterReading(10, 150, 70, 8), 30)
    assert (second.arrival, second.drain, second.mean_in_flight) == (5.0, 2.0, 6.0)
    # counters reset (broker restart): start over instead of reporting negative rates
    third = estimate_rates(second.history, CounterReading(20, 3, 1), 30)
    assert third.arrival is None
    assert len(third.history) == 1


# ---- properties -------------------------------------------------------------------------

policies = st.builds(
    ScalingPolicy,
    concurrency_per_replica=st.integers(1, 8),
    target_utilization=st.floats(0.1, 1.0),
    min_replicas=st.integers(0, 5),
    max_replicas=st.integers(5, 60),
    idle_replicas=st.one_of(st.none(), st.integers(0, 5)),
    activation_backlog=st.integers(0, 20),
    target_drain_seconds=st.floats(1.0, 600.0),
    tolerance=st.floats(0.0, 0.3),
    scale_up=st.builds(StepPolicy, st.floats(0, 120), st.integers(0, 10), st.integers(0, 200)),
    scale_down=st.builds(
        StepPolicy, st.floats(0, 600), st.integers(0, 10), st.integers(0, 200), st.floats(0, 300)
    ),
)
rates = st.one_of(st.none(), st.floats(0.0, 200.0))
samples = st.builds(
    QueueSample,
    ready=st.integers(0, 5000),
    unacked=st.integers(0, 200),
    consumers=st.integers(0, 200),
    arrival_rate=rates,
    drain_rate=rates,
    busy_pods=st.one_of(st.none(), st.integers(0, 80)),
)


@settings(max_examples=400, deadline=None)
@given(policies, st.lists(samples, min_size=1, max_size=30), st.integers(0, 80))
def test_bounds_are_respected_and_work_never_scales_to_zero(
    policy: ScalingPolicy, trace: list[QueueSample], current: int
) -> None:
    memory = ScalerMemory()
    for step, sample in enumerate(trace):
        decision = decide(policy, sample, current, memory, step * 5.0)
        assert 0 <= decision.desired <= max(policy.max_replicas, 0)
        if current <= policy.max_replicas:
            # Moves only towards the recommendation, never past it.
            low, high = sorted((current, decision.recommendation))
            assert low <= decision.desired <= high
        if sample.work > 0:
            assert decision.desired >= 1
        if decision.desired < current and current <= policy.max_replicas:
            busy = (
                sample.busy_pods
                if sample.busy_pods is not None
                else (current if sample.unacked else 0)
            )
            assert decision.desired >= min(busy, current)
        memory, current = decision.memory, decision.desired


@settings(max_examples=300, deadline=None)
@given(policies, samples, st.integers(0, 80), st.floats(1.0, 30.0))
def test_constant_load_never_oscillates(
    policy: ScalingPolicy, sample: QueueSample, current: int, interval: float
) -> None:
    memory = ScalerMemory()
    directions: list[Direction] = []
    counts = []
    for step in range(200):
        decision = decide(policy, sample, current, memory, step * interval)
        if decision.direction is not Direction.NONE:
            directions.append(decision.direction)
        memory, current = decision.memory, decision.desired
        counts.append(current)
    # At most one direction over the whole run, and it settles.
    assert len(set(directions)) <= 1
    assert counts[-1] == counts[-2]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 10),
    st.one_of(st.none(), st.integers(0, 40)),
    st.integers(0, 40),
    st.integers(0, 20),
    st.integers(1, 60),
)
def test_errors_never_scale_down(
    threshold: int, fixed: int | None, current: int, failures: int, max_replicas: int
) -> None:
    desired = decide_on_error(FallbackPolicy(threshold, fixed), max_replicas, current, failures)
    assert desired >= current
    assert desired <= max(current, max_replicas)


@settings(max_examples=200, deadline=None)
@given(
    policies,
    st.integers(1, 60),
    st.lists(
        st.tuples(st.floats(0.5, 20.0), st.floats(0.7, 1.3), st.integers(1, 100)),
        min_size=20,
        max_size=80,
    ),
)
def test_noisy_load_that_the_workers_keep_up_with_never_flaps(
    policy: ScalingPolicy, current: int, noise: list[tuple[float, float, int]]
) -> None:
    # Nothing ever waits (ready == 0): whatever the rate estimates say, the count may drift
    # one way but must never go up and down again.
    memory = ScalerMemory()
    current = max(current, policy.min_replicas, 1)
    directions: list[Direction] = []
    for step, (rate, jitter, unacked) in enumerate(noise):
        sample = QueueSample(
            ready=0, unacked=unacked, arrival_rate=rate * jitter, drain_rate=rate, busy_pods=1
        )
        decision = decide(policy, sample, current, memory, step * 5.0)
        if decision.direction is not Direction.NONE:
            directions.append(decision.direction)
        memory, current = decision.memory, decision.desired
    assert Direction.UP not in directions or Direction.DOWN not in directions


# ---- the re-read before a scale-down, and the quiet fast path ---------------------------


def test_quiet_queue_lets_idle_pods_go_without_the_window() -> None:
    quiet = QueueSample(ready=0, unacked=2, arrival_rate=0.0, drain_rate=0.1, busy_pods=2)
    decision = decide(POLICY, quiet, 8, ScalerMemory(), 0.0)
    assert (decision.desired, decision.reason) == (2, Reason.QUIET)
    # With arrivals (or no rate yet) the whole window must agree first.
    for rate in (0.5, None):
        busy = QueueSample(ready=0, unacked=2, arrival_rate=rate, drain_rate=0.1, busy_pods=2)
        assert decide(POLICY, busy, 8, ScalerMemory(), 0.0).desired == 8


def test_plan_removes_only_pods_idle_in_both_readings_without_deliveries() -> None:
    previous = {
        "idle": PodLoad("idle", 0, deliveries=5),
        "took-one": PodLoad("took-one", 0, deliveries=5),
        "busy": PodLoad("busy", 1, deliveries=3),
        "new-consumer": PodLoad("new-consumer", 0, deliveries=None),
        "no-consumer": PodLoad("no-consumer", 0, deliveries=None),
    }
    fresh = [
        PodLoad("idle", 0, deliveries=5),
        PodLoad("took-one", 0, deliveries=6),  # took and finished a task between the readings
        PodLoad("busy", 0, deliveries=3),  # busy a poll ago: not proven idle yet
        PodLoad("new-consumer", 0, deliveries=0),  # its channel appeared since: not proven
        PodLoad("no-consumer", 0, deliveries=None),  # no channel in either reading
        PodLoad("starting", 0, ready=False),
    ]
    plan = plan_scale_down(0, 6, fresh, previous, ready_now=0)
    assert plan.removable == {"idle", "no-consumer", "starting"}
    assert plan.replicas == 3
    assert plan.costs["idle"] == plan.costs["starting"] == plan.costs["no-consumer"] < 0
    assert all(plan.costs[p] > 0 for p in ("took-one", "busy", "new-consumer"))
    # A ready message goes to a free slot at once: then only never-started pods may go.
    assert plan_scale_down(0, 5, fresh, previous, ready_now=1).removable == {"starting"}


pod_names = [f"p{i}" for i in range(12)]
loads = st.builds(
    PodLoad,
    st.sampled_from(pod_names),
    st.one_of(st.none(), st.integers(0, 2)),
    st.booleans(),
    st.one_of(st.none(), st.integers(0, 3)),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(loads, max_size=12, unique_by=lambda p: p.name),
    st.one_of(st.none(), st.lists(loads, max_size=12, unique_by=lambda p: p.name)),
    st.integers(0, 15),
    st.integers(0, 15),
    st.integers(0, 3),
)
def test_the_replicaset_can_only_pick_proven_idle_pods(
    fresh: list[PodLoad], before: list[PodLoad] | None, desired: int, current: int, ready_now: int
) -> None:
    # before None: drain, the workers are asked; the candidates need only be idle right now.
    previous = None if before is None else {p.name: p for p in before}
    plan = plan_scale_down(desired, current, fresh, previous, ready_now)
    assert min(desired, current) <= plan.replicas <= current
    assert plan.replicas >= desired or plan.replicas == current
    if plan.replicas < current:
        # We lower it: the ReplicaSet then removes len(pods) - replicas pods, lowest cost
        # first (ties: newest first), and every one of them must be proven idle.
        removed = max(len(fresh) - plan.replicas, 0)
        victims = sorted(fresh, key=lambda p: plan.costs[p.name])[:removed]
        assert {v.name for v in victims} <= plan.removable
        assert removed <= len(plan.removable)
    for name in plan.removable:
        pod = next(p for p in fresh if p.name == name)
        assert pod.in_flight == 0
        if pod.ready:
            assert ready_now == 0
            if previous is None:
                continue
            prev = previous[name]
            assert prev.in_flight == 0
            assert pod.deliveries == prev.deliveries
