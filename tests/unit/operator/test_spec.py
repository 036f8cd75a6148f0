"""Spec parsing: CRD defaults, what the schema cannot express, pause annotations."""

from __future__ import annotations

from typing import Any

import pytest

from imgconv_operator.spec import (
    RabbitMQSourceSpec,
    RedisSourceSpec,
    SpecError,
    parse_spec,
    paused_replicas,
)

RABBIT: dict[str, Any] = {"rabbitmq": {"managementUrl": "http://rabbit:15672"}}


def test_defaults_match_the_crd() -> None:
    spec = parse_spec({"targetRef": {"name": "w"}, "source": RABBIT})
    assert isinstance(spec.source, RabbitMQSourceSpec)
    assert (spec.source.vhost, spec.source.queue, spec.source.amqp_url) == (
        "/",
        "conversions",
        None,
    )
    assert spec.poll_interval_seconds == 5.0
    assert spec.policy.min_replicas == 1
    assert spec.policy.max_replicas == 10
    assert spec.policy.idle_level == 1
    assert spec.policy.scale_down.stabilization_seconds == 60.0
    assert spec.fallback.failure_threshold == 3
    assert spec.fallback.replicas is None


def test_redis_source_with_password_secret() -> None:
    spec = parse_spec(
        {
            "targetRef": {"name": "w"},
            "source": {"redis": {"url": "redis://r:6379/0", "passwordSecret": {"name": "s"}}},
        }
    )
    assert isinstance(spec.source, RedisSourceSpec)
    assert spec.source.password is not None
    assert (spec.source.password.name, spec.source.password.key) == ("s", "password")


@pytest.mark.parametrize(
    "spec",
    [
        {"source": RABBIT},
        {"targetRef": {"name": "w"}, "source": {}},
        {"targetRef": {"name": "w"}, "source": {**RABBIT, "redis": {"url": "redis://x"}}},
        {"targetRef": {"name": "w"}, "source": RABBIT, "minReplicas": 3, "maxReplicas": 2},
        {"targetRef": {"name": "w"}, "source": RABBIT, "idleReplicas": 2, "minReplicas": 1},
        {"targetRef": {"name": "w"}, "source": RABBIT, "targetUtilization": 0},
        {"targetRef": {"name": "w"}, "source": {"rabbitmq": {"managementUrl": "rabbit:15672"}}},
        {"targetRef": {"name": "w"}, "source": RABBIT, "maxReplicas": "ten"},
    ],
)
def test_invalid_specs_are_rejected(spec: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        parse_spec(spec)


@pytest.mark.parametrize(
    ("annotations", "expected"),
    [
        ({}, (False, None)),
        ({"imgconv.io/paused": "true"}, (True, None)),
        ({"imgconv.io/paused": "false"}, (False, None)),
        ({"imgconv.io/paused-replicas": "4"}, (True, 4)),
        ({"imgconv.io/paused-replicas": "four"}, (True, None)),  # a typo pauses, never scales
    ],
)
def test_pause_annotations(annotations: dict[str, str], expected: tuple[bool, int | None]) -> None:
    assert paused_replicas(annotations) == expected


def test_drain_needs_the_amqp_url_and_a_pod_placeholder() -> None:
    drain = {"drain": {"celeryNodeName": "celery@{pod}"}}
    amqp = {"amqpUrl": "amqp://rabbit:5672"}
    spec = parse_spec(
        {
            "targetRef": {"name": "w"},
            "source": {"rabbitmq": {**RABBIT["rabbitmq"], **amqp, **drain}},
        }
    )
    assert isinstance(spec.source, RabbitMQSourceSpec)
    assert spec.source.drain_node_name == "celery@{pod}"
    with pytest.raises(SpecError, match="amqpUrl"):
        parse_spec(
            {"targetRef": {"name": "w"}, "source": {"rabbitmq": {**RABBIT["rabbitmq"], **drain}}}
        )
    fixed = {"drain": {"celeryNodeName": "celery@worker"}}
    with pytest.raises(SpecError, match="pod"):
        parse_spec(
            {
                "targetRef": {"name": "w"},
                "source": {"rabbitmq": {**RABBIT["rabbitmq"], **amqp, **fixed}},
            }
        )
