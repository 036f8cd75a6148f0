"""WorkerAutoscaler spec: defaults and validation on top of the CRD schema, into typed values."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from imgconv_operator.scaling import FallbackPolicy, ScalingPolicy, StepPolicy

PAUSED_ANNOTATION = "imgconv.io/paused"
PAUSED_REPLICAS_ANNOTATION = "imgconv.io/paused-replicas"
DELETION_COST_ANNOTATION = "controller.kubernetes.io/pod-deletion-cost"


class SpecError(ValueError):
    """The spec cannot be acted on (the CRD schema catches most of this earlier)."""


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Secret in the autoscaler's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class RabbitMQSourceSpec:
    """Read the queue from the RabbitMQ management API (optionally also live over AMQP)."""

    management_url: str
    vhost: str
    queue: str
    username: SecretKeyRef | None
    password: SecretKeyRef | None
    amqp_url: str | None
    # Celery node name of a pod's worker ("celery@{pod}"); set: drain pods before removing them.
    drain_node_name: str | None = None


@dataclass(frozen=True)
class RedisSourceSpec:
    """Read the queue from the Celery Redis broker."""

    url: str
    list_key: str
    password: SecretKeyRef | None


@dataclass(frozen=True)
class AutoscalerSpec:
    """Everything one WorkerAutoscaler asks for."""

    target: str
    source: RabbitMQSourceSpec | RedisSourceSpec
    policy: ScalingPolicy
    fallback: FallbackPolicy
    poll_interval_seconds: float
    restore_replicas_on_delete: bool


def _int(spec: Mapping[str, Any], key: str, default: int, minimum: int = 0) -> int:
    value = spec.get(key, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise SpecError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def _float(spec: Mapping[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = spec.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise SpecError(f"{key} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def _step(
    spec: Mapping[str, Any] | None, window: float, step: int, percent: int, cooldown: float = 0.0
) -> StepPolicy:
    spec = spec or {}
    return StepPolicy(
        stabilization_seconds=_float(spec, "stabilizationWindowSeconds", window, 0, 3600),
        max_step=_int(spec, "maxStep", step),
        max_step_percent=_int(spec, "maxStepPercent", percent),
        cooldown_seconds=_float(spec, "cooldownSeconds", cooldown, 0, 3600),
    )


def _secret_ref(ref: Mapping[str, Any] | None, key_field: str, default_key: str) -> SecretKeyRef:
    if not ref or not ref.get("name"):
        raise SpecError("credentialsSecret.name is required")
    return SecretKeyRef(str(ref["name"]), str(ref.get(key_field) or default_key))


def parse_spec(spec: Mapping[str, Any]) -> AutoscalerSpec:
    """Turn a WorkerAutoscaler spec into typed values, or raise SpecError."""
    target = (spec.get("targetRef") or {}).get("name")
    if not target:
        raise SpecError("targetRef.name is required")
    source_spec = spec.get("source") or {}
    source: RabbitMQSourceSpec | RedisSourceSpec
    if "rabbitmq" in source_spec and "redis" in source_spec:
        raise SpecError("source must set exactly one of rabbitmq, redis")
    if rabbit := source_spec.get("rabbitmq"):
        creds = rabbit.get("credentialsSecret")
        source = RabbitMQSourceSpec(
            management_url=str(rabbit.get("managementUrl") or ""),
            vhost=str(rabbit.get("vhost") or "/"),
            queue=str(rabbit.get("queue") or "conversions"),
            username=_secret_ref(creds, "usernameKey", "username") if creds else None,
            password=_secret_ref(creds, "passwordKey", "password") if creds else None,
            amqp_url=rabbit.get("amqpUrl") or None,
            drain_node_name=(rabbit.get("drain") or {}).get("celeryNodeName") or None,
        )
        if not source.management_url.startswith(("http://", "https://")):
            raise SpecError("source.rabbitmq.managementUrl must be an http(s) URL")
        if source.drain_node_name is not None:
            if source.amqp_url is None:
                raise SpecError("source.rabbitmq.drain needs source.rabbitmq.amqpUrl")
            if "{pod}" not in source.drain_node_name:
                raise SpecError("source.rabbitmq.drain.celeryNodeName must contain {pod}")
    elif redis := source_spec.get("redis"):
        pw = redis.get("passwordSecret")
        source = RedisSourceSpec(
            url=str(redis.get("url") or ""),
            list_key=str(redis.get("listKey") or "conversions"),
            password=_secret_ref(pw, "key", "password") if pw else None,
        )
        if not source.url.startswith(("redis://", "rediss://", "unix://")):
            raise SpecError("source.redis.url must be a redis:// URL")
    else:
        raise SpecError("source must set one of rabbitmq, redis")

    min_replicas = _int(spec, "minReplicas", 1)
    max_replicas = _int(spec, "maxReplicas", 10, minimum=1)
    if min_replicas > max_replicas:
        raise SpecError(f"minReplicas {min_replicas} > maxReplicas {max_replicas}")
    idle = spec.get("idleReplicas")
    if idle is not None:
        idle = _int(spec, "idleReplicas", 0)
        if idle > min_replicas:
            raise SpecError("idleReplicas must not exceed minReplicas")
    policy = ScalingPolicy(
        concurrency_per_replica=_int(spec, "concurrencyPerReplica", 1, minimum=1),
        target_utilization=_float(spec, "targetUtilization", 0.8, 0.01, 1.0),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        idle_replicas=idle,
        activation_backlog=_int(spec, "activationBacklog", 0),
        target_drain_seconds=_float(spec, "targetDrainSeconds", 30.0, 1.0, 86400.0),
        tolerance=_float(spec, "tolerance", 0.1, 0.0, 0.5),
        scale_up=_step(spec.get("scaleUp"), 0.0, 10, 100),
        scale_down=_step(spec.get("scaleDown"), 60.0, 0, 100, cooldown=60.0),
    )
    fallback_spec = spec.get("fallback") or {}
    fixed = fallback_spec.get("replicas")
    fallback = FallbackPolicy(
        failure_threshold=_int(fallback_spec, "failureThreshold", 3, minimum=1),
        replicas=_int(fallback_spec, "replicas", 0) if fixed is not None else None,
    )
    return AutoscalerSpec(
        target=str(target),
        source=source,
        policy=policy,
        fallback=fallback,
        poll_interval_seconds=_float(spec, "pollIntervalSeconds", 5.0, 0.5, 3600.0),
        restore_replicas_on_delete=bool(spec.get("restoreReplicasOnDelete", False)),
    )


def paused_replicas(annotations: Mapping[str, str]) -> tuple[bool, int | None]:
    """(paused, fixed replica count) from the pause annotations."""
    raw = annotations.get(PAUSED_REPLICAS_ANNOTATION)
    if raw is not None:
        try:
            return True, max(0, int(raw))
        except ValueError:
            pass  # a typo should pause, not scale: fall through to a plain pause
        return True, None
    flag = annotations.get(PAUSED_ANNOTATION, "").strip().lower()
    return flag in {"true", "1", "yes"}, None
