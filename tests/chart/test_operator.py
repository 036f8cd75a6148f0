"""The operator: one replica, Recreate, `imgconv operator`, least-privilege namespaced RBAC,
mandatory peering, and a WorkerAutoscaler for the chart's worker and broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.objects import container, env_of, find, has, kinds, name_of
from tests.chart.scenarios import EXTERNAL_SERVICES
from tests.support.helm import NAMESPACE, RenderError, render, render_text
from tests.support.rbac import ApiCall, Rule, denied, load_rules

OPERATOR = name_of("operator")
WORKER = name_of("worker")


def test_one_replica_recreated_running_imgconv_operator_in_its_namespace() -> None:
    docs = render({}, namespace="media")
    deployment = find(docs, "Deployment", OPERATOR)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == OPERATOR
    operator = container(deployment, "operator")
    assert "command" not in operator  # the image's entrypoint is `imgconv`
    assert operator["args"] == ["operator", "--namespace=media", "--liveness-port=8080"]
    assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = {p["name"]: p["containerPort"] for p in operator["ports"]}
    assert ports == {"metrics": 9090, "health": 8080}
    assert env_of(operator)["IMGCONV_OPERATOR_METRICS_PORT"]["value"] == "9090"


def test_the_peering_it_needs_is_the_one_rendered() -> None:
    docs = render({})
    operator = container(find(docs, "Deployment", OPERATOR), "operator")
    peering = env_of(operator)["IMGCONV_OPERATOR_PEERING"]["value"]
    assert find(docs, "KopfPeering", peering)["apiVersion"] == "kopf.dev/v1"


def rules_of(values: dict[str, Any], tmp_path: Path) -> list[Rule]:
    path = tmp_path / "rbac.yaml"
    path.write_text(
        render_text(
            values, show_only=["templates/operator/operator-rbac.yaml"], namespace=NAMESPACE
        )
    )
    return load_rules([path], OPERATOR, NAMESPACE)


def test_rbac_allows_what_the_operator_needs_and_nothing_broader(tmp_path: Path) -> None:
    rules = rules_of({}, tmp_path)
    secret = name_of("rabbitmq")
    needed = [
        ApiCall("get", "apps", "deployments", NAMESPACE, WORKER),
        ApiCall("patch", "apps", "deployments/scale", NAMESPACE, WORKER),
        ApiCall("list", "", "pods", NAMESPACE, None),
        ApiCall("patch", "", "pods", NAMESPACE, "w-1"),
        ApiCall("list", "autoscaling", "horizontalpodautoscalers", NAMESPACE, None),
        ApiCall("get", "", "secrets", NAMESPACE, secret),
        ApiCall("patch", "imgconv.io", "workerautoscalers/status", NAMESPACE, WORKER),
        ApiCall("watch", "imgconv.io", "workerautoscalers", NAMESPACE, None),
        ApiCall("watch", "kopf.dev", "kopfpeerings", NAMESPACE, None),
        ApiCall("create", "", "events", NAMESPACE, None),
    ]
    assert denied(needed, rules) == []
    broader = [
        ApiCall("patch", "apps", "deployments", NAMESPACE, WORKER),  # could change the image
        ApiCall("delete", "", "pods", NAMESPACE, "w-1"),
        ApiCall("get", "", "secrets", NAMESPACE, name_of("postgres")),
        ApiCall("list", "", "secrets", NAMESPACE, None),
        ApiCall("list", "", "pods", "kube-system", None),
        ApiCall("list", "", "pods", None, None),
        ApiCall("create", "autoscaling", "horizontalpodautoscalers", NAMESPACE, None),
    ]
    assert denied(broader, rules) == broader


def test_rbac_is_namespaced_only() -> None:
    docs = render({})
    assert kinds(docs, "ClusterRole") == []
    assert kinds(docs, "ClusterRoleBinding") == []
    binding = find(docs, "RoleBinding", OPERATOR)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": OPERATOR, "namespace": NAMESPACE}
    ]
    # Only the operator talks to the Kubernetes API.
    for deployment in kinds(docs, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        if deployment["metadata"]["name"] != OPERATOR:
            assert pod["automountServiceAccountToken"] is False


def test_the_autoscaler_reads_the_charts_rabbitmq_with_the_charts_secret() -> None:
    docs = render({})
    spec = find(docs, "WorkerAutoscaler", WORKER)["spec"]
    assert spec["targetRef"] == {"name": WORKER}
    source = spec["source"]["rabbitmq"]
    rabbitmq = name_of("rabbitmq")
    assert source["managementUrl"] == f"http://{rabbitmq}:15672"
    assert source["amqpUrl"] == f"amqp://{rabbitmq}:5672"
    assert source["queue"] == "conversions"
    assert source["vhost"] == "/"
    assert source["credentialsSecret"] == {
        "name": rabbitmq,
        "usernameKey": "username",
        "passwordKey": "password",
    }
    secret = find(docs, "Secret", rabbitmq)
    assert {"username", "password"} <= set(secret["data"])
    assert find(docs, "Service", rabbitmq)["spec"]["ports"][1]["port"] == 15672


def test_the_autoscaler_follows_an_existing_rabbitmq_secret(tmp_path: Path) -> None:
    values = {
        "rabbitmq": {"auth": {"existingSecret": "mq", "usernameKey": "u", "passwordKey": "p"}}
    }
    docs = render(values)
    source = find(docs, "WorkerAutoscaler", WORKER)["spec"]["source"]["rabbitmq"]
    assert source["credentialsSecret"] == {"name": "mq", "usernameKey": "u", "passwordKey": "p"}
    rules = rules_of(values, tmp_path)
    assert denied([ApiCall("get", "", "secrets", NAMESPACE, "mq")], rules) == []


def test_an_external_broker_uses_its_management_api_and_secret(tmp_path: Path) -> None:
    docs = render(EXTERNAL_SERVICES)
    source = find(docs, "WorkerAutoscaler", WORKER)["spec"]["source"]["rabbitmq"]
    assert source["managementUrl"] == "http://mq.example:15672"
    assert source["amqpUrl"] == "amqp://mq.example:5672"
    assert source["credentialsSecret"]["name"] == "mq-monitoring"
    rules = rules_of(EXTERNAL_SERVICES, tmp_path)
    assert denied([ApiCall("get", "", "secrets", NAMESPACE, "mq-monitoring")], rules) == []


def test_autoscaler_values_reach_the_resource() -> None:
    wa = {
        "minReplicas": 2,
        "maxReplicas": 30,
        "idleReplicas": 0,
        "drain": False,
        "fallback": {"failureThreshold": 4, "replicas": 5},
    }
    spec = find(render({"operator": {"workerAutoscaler": wa}}), "WorkerAutoscaler", WORKER)["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"], spec["idleReplicas"]) == (2, 30, 0)
    assert "drain" not in spec["source"]["rabbitmq"]
    assert spec["fallback"] == {"failureThreshold": 4, "replicas": 5}
    # idleReplicas null leaves the operator's default (minReplicas).
    default = find(render({}), "WorkerAutoscaler", WORKER)["spec"]
    assert "idleReplicas" not in default
    assert "replicas" not in default["fallback"]


def test_operator_off_renders_none_of_it() -> None:
    docs = render({"operator": {"enabled": False}})
    for kind in ("WorkerAutoscaler", "KopfPeering", "Role", "RoleBinding", "ServiceAccount"):
        assert kinds(docs, kind) == [], kind
    assert not has(docs, "Deployment", OPERATOR)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"rabbitmq": {"external": {"managementUrl": ""}}},
            "operator.enabled with an external RabbitMQ: the operator reads queue depth from "
            "the management API, set rabbitmq.external.managementUrl",
        ),
        (
            {"rabbitmq": {"external": {"credentialsSecret": {"name": ""}}}},
            "set rabbitmq.external.credentialsSecret.name",
        ),
        (
            {"rabbitmq": {"external": {"amqpUrl": ""}}},
            "operator.workerAutoscaler.drain needs rabbitmq.external.amqpUrl",
        ),
        (
            {"operator": {"workerAutoscaler": {"minReplicas": 5, "maxReplicas": 3}}},
            "operator.workerAutoscaler.minReplicas (5) must not exceed maxReplicas (3)",
        ),
        (
            {"operator": {"workerAutoscaler": {"idleReplicas": 2, "minReplicas": 1}}},
            "operator.workerAutoscaler.idleReplicas (2) must not exceed minReplicas (1)",
        ),
    ],
)
def test_a_broker_the_operator_cannot_read_fails_the_render(
    change: dict[str, Any], message: str
) -> None:
    values = yaml.safe_load(yaml.safe_dump(EXTERNAL_SERVICES))
    for key, part in change.items():
        merged = values.setdefault(key, {})
        for sub, value in part.items():
            if isinstance(value, dict) and isinstance(merged.get(sub), dict):
                for k, v in value.items():
                    if isinstance(v, dict):
                        merged[sub].setdefault(k, {}).update(v)
                    else:
                        merged[sub][k] = v
            else:
                merged[sub] = value
    with pytest.raises(RenderError, match="execution error") as failed:
        render(values)
    assert message in str(failed.value)


def test_drain_off_needs_no_amqp_url() -> None:
    values = yaml.safe_load(yaml.safe_dump(EXTERNAL_SERVICES))
    values["rabbitmq"]["external"]["amqpUrl"] = ""
    values["operator"] = {"workerAutoscaler": {"drain": False}}
    source = find(render(values), "WorkerAutoscaler", WORKER)["spec"]["source"]["rabbitmq"]
    assert "amqpUrl" not in source
    assert "drain" not in source
