"""The workers: replicas only without the operator, rollouts keep capacity, the grace period
from the hard time limit, one concurrency value for Celery and the autoscaler."""

from __future__ import annotations

from tests.chart.objects import container, find, name_of
from tests.support.helm import render

WORKER = name_of("worker")


def test_replicas_are_omitted_when_the_operator_owns_them() -> None:
    assert "replicas" not in find(render({}), "Deployment", WORKER)["spec"]
    docs = render({"operator": {"enabled": False}, "worker": {"replicas": 4}})
    assert find(docs, "Deployment", WORKER)["spec"]["replicas"] == 4


def test_rolling_updates_never_take_capacity_away() -> None:
    strategy = find(render({}), "Deployment", WORKER)["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0
    assert strategy["rollingUpdate"]["maxSurge"] >= 1


def test_grace_period_outlasts_the_hard_time_limit() -> None:
    docs = render(
        {
            "config": {"taskSoftTimeLimitSeconds": 250, "taskHardTimeLimitSeconds": 300},
            "worker": {"shutdownMarginSeconds": 20},
        }
    )
    pod = find(docs, "Deployment", WORKER)["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 320
    assert "lifecycle" not in container(find(docs, "Deployment", WORKER), "worker")
    config = find(docs, "ConfigMap", name_of("config"))["data"]
    assert config["IMGCONV_TASK_HARD_TIME_LIMIT"] == "300"


def test_one_concurrency_for_celery_and_the_autoscaler() -> None:
    docs = render({"worker": {"concurrency": 6}})
    worker = container(find(docs, "Deployment", WORKER), "worker")
    assert "--concurrency=6" in worker["args"]
    autoscaler = find(docs, "WorkerAutoscaler", WORKER)
    assert autoscaler["spec"]["concurrencyPerReplica"] == 6


def test_liveness_from_the_heartbeat_and_a_metrics_port() -> None:
    worker = container(
        find(
            render({"worker": {"metricsPort": 9200, "livenessMaxAgeSeconds": 90}}),
            "Deployment",
            WORKER,
        ),
        "worker",
    )
    assert worker["args"][0] == "worker"
    assert "--metrics-port=9200" in worker["args"]
    assert worker["ports"] == [{"name": "metrics", "containerPort": 9200, "protocol": "TCP"}]
    assert worker["livenessProbe"]["exec"]["command"] == [
        "imgconv",
        "worker-liveness",
        "--max-age-seconds",
        "90",
    ]
    # A busy worker must never look unready: the ReplicaSet would remove it first.
    assert "readinessProbe" not in worker


def test_drain_addresses_workers_by_the_node_name_they_get() -> None:
    docs = render({})
    worker = container(find(docs, "Deployment", WORKER), "worker")
    (hostname,) = [a for a in worker["args"] if a.startswith("--hostname=")]
    node = hostname.removeprefix("--hostname=")
    drain = find(docs, "WorkerAutoscaler", WORKER)["spec"]["source"]["rabbitmq"]["drain"]
    # Celery expands %h to the host name, which in a pod is the pod's name.
    assert drain == {"celeryNodeName": node.replace("%h", "{pod}")}
    assert node == "imgconv@%h"


def test_workers_migrate_before_consuming() -> None:
    pod = find(render({}), "Deployment", WORKER)["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["migrate"]
