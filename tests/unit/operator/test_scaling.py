"""The scaling decision: concrete scenarios plus properties checked with hypothesis."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from imgconv_operator.scaling import (
    IDLE_DELETION_COST,
    CounterReading,
    Decision,
    Direction,
    FallbackPolicy,
    PodLoad,
    QueueHistory,
    QueueSample,
    Reason,
    ScaleDownPlan,
    ScalerMemory,
    ScalingPolicy,
    SourceReading,
    StepPolicy,
    WorkerPod,
    after_drain,
    busy_pods,
    decide,
    decide_on_error,
    drain_victims,
    drained_leftovers,
    estimate_rates,
    limit_to_plan,
    observe,
    plan_scale_down,
    pod_loads,
    recheck,
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


# ---- observing, per-pod load, the drain's choice, the settled scale-down ----------------


def test_observe_keeps_the_newest_reading_a_whole_proof_span_old_and_the_rates() -> None:
    history = QueueHistory()
    seen = []
    for now in range(0, 16):  # polling every second
        reading = SourceReading(0, 1, 1, published=10 * now, acked=10 * now)
        observation = observe(history, reading, float(now))
        history = observation.history
        seen.append(observation)
    assert seen[9].before is None  # nothing 10 s old yet
    assert seen[10].before == SourceReading(0, 1, 1, published=0, acked=0)
    assert seen[15].before == SourceReading(0, 1, 1, published=50, acked=50)
    kept = [at for at, _ in seen[15].history.readings]
    assert kept == [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0, 13.0, 14.0, 15.0]
    assert seen[15].sample.arrival_rate == 10.0
    assert seen[15].sample.drain_rate == 10.0
    assert seen[15].sample.busy_pods is None


def pods(*specs: tuple[str, str | None, bool]) -> list[WorkerPod]:
    return [WorkerPod(name, ip, running, float(i)) for i, (name, ip, running) in enumerate(specs)]


def test_pod_loads_match_consumer_hosts_to_pod_ips() -> None:
    live = pods(("a", "10.0.0.1", True), ("b", "10.0.0.2", True), ("c", None, False))
    reading = SourceReading(
        0,
        2,
        2,
        in_flight_by_host={"10.0.0.1": 2},
        deliveries_by_host={"10.0.0.1": 7},
    )
    assert pod_loads(live, reading) == [
        PodLoad("a", 2, True, 7),
        PodLoad("b", 0, True, None),  # no consumer channel: no counter, not provable
        PodLoad("c", 0, False, None),  # never started
    ]
    assert busy_pods(pod_loads(live, reading)) == 1


def test_pod_loads_are_unknown_when_the_channels_do_not_add_up() -> None:
    live = pods(("a", "10.0.0.1", True), ("b", "10.0.0.2", True), ("c", None, False))
    for reading in (
        # A host that is none of our pods holds a task (NAT, a sidecar, a terminating pod).
        SourceReading(0, 1, 2, in_flight_by_host={"192.168.0.9": 1, "10.0.0.1": 0}),
        # The queue counts more unacked than its consumer channels (a worker in warm shutdown
        # has cancelled its consumer but still holds its task).
        SourceReading(0, 3, 2, in_flight_by_host={"10.0.0.1": 1, "10.0.0.2": 1}),
        # No per-pod information at all (the Redis source) while something is in flight.
        SourceReading(0, 1, 0),
    ):
        loads = pod_loads(live, reading)
        assert [load.in_flight for load in loads] == [None, None, 0]
        assert busy_pods(loads) is None
    # Redis with nothing in flight: every pod is idle.
    idle = pod_loads(live, SourceReading(0, 0, 0))
    assert [(load.in_flight, load.deliveries) for load in idle] == [(0, 0), (0, 0), (0, None)]
    assert busy_pods(idle) == 0


def test_recheck_without_an_old_enough_reading_proves_no_running_pod_idle() -> None:
    live = pods(("a", "10.0.0.1", True), ("b", None, False))
    fresh = SourceReading(0, 0, 1, in_flight_by_host={"10.0.0.1": 0}, deliveries_by_host={})
    decision = decide(
        POLICY, QueueSample(0, 0, arrival_rate=0.0, busy_pods=0), 2, ScalerMemory(), 0
    )
    assert decision.desired == 0
    assert recheck(decision, live, fresh, None, drain=False).removable == {"b"}
    assert recheck(decision, live, fresh, fresh, drain=False).removable == {"a", "b"}
    # With drain the workers are asked, so idle in the fresh reading is enough to be asked.
    assert recheck(decision, live, fresh, None, drain=True).removable == {"a", "b"}


def test_drain_victims_are_the_replicasets_choice_among_the_removable() -> None:
    live = [
        WorkerPod("old", "10.0.0.1", True, 1.0),
        WorkerPod("new", "10.0.0.2", True, 3.0),
        WorkerPod("starting", "10.0.0.3", False, 0.5),
        WorkerPod("busy", "10.0.0.4", True, 9.0),  # newest, but not removable
    ]
    costs = {"old": -100, "new": -100, "starting": -100, "busy": 100}
    plan = ScaleDownPlan(2, costs, frozenset({"old", "new", "starting"}))
    assert [v.name for v in drain_victims(plan, live)] == ["starting", "new"]
    assert drain_victims(replace(plan, replicas=4), live) == []


def test_after_drain_keeps_every_running_victim_that_did_not_confirm_idle() -> None:
    victims = [
        WorkerPod("starting", "10.0.0.3", False, 0.5),
        WorkerPod("new", "10.0.0.2", True, 3.0),
        WorkerPod("silent", "10.0.0.5", True, 2.0),
    ]
    costs = {"old": -100, "new": -100, "starting": -100, "silent": -100, "busy": 300}
    plan = ScaleDownPlan(2, costs, frozenset({"old", "new", "starting", "silent"}))
    drained = after_drain(plan, victims, {"new"}, current=5)
    assert drained.removable == {"starting", "new"}
    assert drained.replicas == 3  # "silent" stays
    assert drained.costs == {"old": 100, "new": -100, "starting": -100, "silent": 100, "busy": 300}


def test_a_scale_down_the_reread_does_not_allow_keeps_the_cooldowns_savings() -> None:
    before = ScalerMemory(last_scale_down=10.0, idle_pod_seconds=40.0)
    decided = Decision(2, 5, 2, Reason.THROUGHPUT, True, replace(before, last_scale_down=99.0))
    decided = replace(decided, memory=replace(decided.memory, idle_pod_seconds=0.0))
    nothing = ScaleDownPlan(5, {}, frozenset())
    held = limit_to_plan(decided, nothing, before)
    assert (held.desired, held.reason) == (5, Reason.NOT_PROVEN_IDLE)
    assert (held.memory.last_scale_down, held.memory.idle_pod_seconds) == (10.0, 40.0)
    partly = limit_to_plan(decided, ScaleDownPlan(4, {}, frozenset({"a"})), before)
    assert (partly.desired, partly.reason, partly.memory) == (
        4,
        Reason.NOT_PROVEN_IDLE,
        decided.memory,
    )
    assert limit_to_plan(decided, ScaleDownPlan(2, {}, frozenset()), before) == decided


def test_drained_leftovers_are_the_drained_pods_still_listed() -> None:
    live = pods(("a", "10.0.0.1", True), ("c", "10.0.0.3", True))
    assert drained_leftovers({"c", "b", "a"}, live) == ["a", "c"]
    assert drained_leftovers(set(), live) == []


@settings(max_examples=300, deadline=None)
@given(
    st.lists(loads, min_size=1, max_size=12, unique_by=lambda p: p.name),
    st.integers(0, 12),
    st.sets(st.sampled_from(pod_names)),
    st.lists(st.floats(0, 100), min_size=12, max_size=12),
)
def test_whatever_the_workers_answer_the_replicaset_removes_only_drained_or_unstarted_pods(
    fresh: list[PodLoad], desired: int, answered_idle: set[str], created: list[float]
) -> None:
    current = len(fresh)
    live = [
        WorkerPod(p.name, f"10.0.0.{i}" if p.ready else None, p.ready, created[i])
        for i, p in enumerate(fresh)
    ]
    plan = plan_scale_down(desired, current, fresh, None, 0)
    if plan.replicas >= current:
        return
    victims = drain_victims(plan, live)
    drained = after_drain(plan, victims, answered_idle, current)
    assert drained.replicas <= current
    # The ReplicaSet: not running first, then lowest cost, then newest.
    ranked = sorted(live, key=lambda p: (p.running, drained.costs[p.name], -p.created_at))
    removed = ranked[: max(len(live) - drained.replicas, 0)]
    for pod in removed:
        assert not pod.running or (pod.name in answered_idle and pod in victims)
        if pod.running:
            assert drained.costs[pod.name] == IDLE_DELETION_COST
