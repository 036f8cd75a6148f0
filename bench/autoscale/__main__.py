"""`make bench-autoscale`: our decision function vs a KEDA + HPA model on four traces."""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable

from bench.autoscale.sim import (
    DT,
    Autoscaler,
    KedaAutoscaler,
    OurAutoscaler,
    Result,
    Trace,
    our_policy,
    run,
)


def poisson(mean: float, rng: random.Random) -> int:
    """A Poisson-distributed count with the given mean."""
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def traces() -> list[Trace]:
    """Step, burst, spike then silence, diurnal."""
    return [
        Trace(
            "step",
            duration=2400,
            arrivals=lambda t, rng: poisson((2.0 if 60 <= t < 1260 else 0.0) * DT, rng),
            service_mean=4.0,
        ),
        Trace(
            "burst",
            duration=1800,
            arrivals=lambda t, rng: 300 if t == 60 else 0,
            service_mean=3.0,
        ),
        Trace(
            # Big images: long tasks, most of them running while nothing is ready.
            "spike-then-silence",
            duration=2400,
            arrivals=lambda t, rng: 40 if t == 60 else 0,
            service_mean=240.0,
            service_cv=0.5,
        ),
        Trace(
            "diurnal",
            duration=7200,
            arrivals=lambda t, rng: poisson(
                (0.1 + 2.4 * (1 - math.cos(2 * math.pi * t / 7200)) / 2) * DT, rng
            ),
            service_mean=4.0,
        ),
    ]


def ours(trace: Trace, drain: bool = True) -> Callable[[random.Random], Autoscaler]:
    """Our operator with default spec values (poll 5 s, live AMQP ready count), draining pods
    before removing them (source.rabbitmq.drain) unless `drain` is False."""
    return lambda rng: OurAutoscaler(
        our_policy(trace), poll=5.0, phase=rng.uniform(0, 5), drain=drain
    )


def keda(trace: Trace) -> Callable[[random.Random], Autoscaler]:
    """KEDA QueueLength with value = concurrency (one waiting message per worker slot)."""
    return lambda rng: KedaAutoscaler(
        value=trace.concurrency,
        max_replicas=trace.max_replicas,
        phase=rng.uniform(0, 30),
        hpa_phase=rng.uniform(0, 15),
    )


def summarize(results: list[Result]) -> dict[str, float]:
    """Means over seeds."""
    reactions = [r.reaction for r in results if r.reaction is not None]
    return {
        "reaction": statistics.fmean(reactions) if reactions else math.nan,
        "p99": statistics.fmean(r.p99_wait for r in results),
        "rs": statistics.fmean(r.replica_seconds for r in results),
        "changes": statistics.fmean(r.scale_changes for r in results),
        "killed": statistics.fmean(r.busy_killed for r in results),
        "unfinished": statistics.fmean(r.unfinished for r in results),
    }


def main() -> None:
    """Run every trace with both autoscalers over several seeds; print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    header = (
        "| trace | autoscaler | first scale-up after backlog (s) | p99 wait (s) "
        "| replica-seconds | scale changes | busy pods killed |"
    )
    print(header)
    print("|" + "---|" * 7)
    verdicts = []
    for trace in traces():
        rows = {}
        for label, factory in (
            ("imgconv", ours(trace)),
            ("imgconv, no drain", ours(trace, drain=False)),
            ("KEDA+HPA", keda(trace)),
        ):
            rows[label] = summarize([run(trace, factory, seed) for seed in range(args.seeds)])
            r = rows[label]
            print(
                f"| {trace.name} | {label} | {r['reaction']:.1f} | {r['p99']:.1f} "
                f"| {r['rs']:.0f} | {r['changes']:.1f} | {r['killed']:.1f} |"
            )
        a, b = rows["imgconv"], rows["KEDA+HPA"]
        verdicts.append(
            f"{trace.name}: reacts {b['reaction'] / a['reaction']:.1f}x faster, "
            f"replica-seconds {a['rs'] / b['rs']:.2f}x, scale changes {a['changes']:.1f} vs "
            f"{b['changes']:.1f}, busy pods killed {a['killed']:.1f} vs {b['killed']:.1f}"
        )
    print()
    print(
        f"Means over {args.seeds} seeds. Pods start in 20 s, 2 tasks per pod, max 20 pods;"
        " RabbitMQ statistics refresh every 5 s."
    )
    for line in verdicts:
        print(f"- {line}")


if __name__ == "__main__":
    main()
