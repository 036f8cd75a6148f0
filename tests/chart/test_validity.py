"""Every rendered object is valid: built-in kinds against the Kubernetes 1.30 and 1.37 schemas
(strict: unknown fields fail), custom resources against the chart's own CRDs."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from tests.chart.objects import label
from tests.chart.scenarios import SCENARIOS
from tests.support.crds import crds, validate_custom_resource
from tests.support.helm import render

KUBE_VERSIONS = ["1.30.0", "1.37.0"]
# Not in the Kubernetes schemas; checked separately below.
GATEWAY_API = "gateway.networking.k8s.io/v1"


def custom(doc: dict[str, Any]) -> bool:
    return (doc["apiVersion"], doc["kind"]) in crds()


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_builtin_object_is_valid_kubernetes(scenario: str, kube_version: str) -> None:
    docs = render(SCENARIOS[scenario], kube_version=kube_version)
    checked = 0
    for doc in docs:
        if custom(doc) or doc["apiVersion"] == GATEWAY_API:
            continue
        try:
            kubernetes_validate.validate(doc, kube_version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{scenario} on {kube_version}: {label(doc)}: {error.message}")
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_custom_resources_match_their_crds(scenario: str, kube_version: str) -> None:
    """The chart's own (WorkerAutoscaler, KopfPeering) and the prometheus-operator's
    (ServiceMonitor, PodMonitor, PrometheusRule), metadata against Kubernetes' ObjectMeta."""
    for doc in render(SCENARIOS[scenario], kube_version=kube_version):
        if custom(doc):
            validate_custom_resource(doc, kube_version)


def test_every_kind_of_monitoring_object_is_validated() -> None:
    rendered = {d["kind"] for d in render(SCENARIOS["everything-on"]) if custom(d)}
    assert {"ServiceMonitor", "PodMonitor", "PrometheusRule"} <= rendered


@pytest.mark.parametrize(
    ("kind", "broken"),
    [
        ("ServiceMonitor", lambda spec: {**spec, "endpoint": spec["endpoints"]}),
        ("PodMonitor", lambda spec: {**spec, "podMetricsEndpoints": [{"port": 9100}]}),
        (
            "PrometheusRule",
            lambda spec: {"groups": [{"name": "g", "rules": [{"alert": "A", "for": "soon"}]}]},
        ),
    ],
    ids=["unknown-field", "port-not-a-name", "bad-duration"],
)
def test_the_monitoring_crd_schemas_catch_a_mistake(kind: str, broken: Any) -> None:
    doc = next(d for d in render(SCENARIOS["everything-on"]) if d["kind"] == kind)
    validate_custom_resource(doc)
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource({**doc, "spec": broken(doc["spec"])})


def test_custom_resource_metadata_meets_the_kubernetes_schema() -> None:
    doc = next(d for d in render(SCENARIOS["everything-on"]) if d["kind"] == "ServiceMonitor")
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource({**doc, "metadata": {**doc["metadata"], "label": {"a": "b"}}})


def test_the_crd_schema_catches_a_typo_and_a_bad_value() -> None:
    docs = render({})
    autoscaler = next(d for d in docs if d["kind"] == "WorkerAutoscaler")
    typo = {**autoscaler, "spec": {**autoscaler["spec"], "maxReplica": 3}}
    bad = {**autoscaler, "spec": {**autoscaler["spec"], "targetUtilization": 1.5}}
    for wrong in (typo, bad):
        with pytest.raises(jsonschema.ValidationError):
            validate_custom_resource(wrong)


def test_the_httproute_is_a_standard_gateway_api_route() -> None:
    """No Gateway API schema is available offline: check the fields the standard channel's
    HTTPRoute requires and allows, with the values a Gateway implementation reads."""
    docs = render(SCENARIOS["everything-on"])
    route = next(d for d in docs if d["kind"] == "HTTPRoute")
    assert route["apiVersion"] == GATEWAY_API
    assert set(route["spec"]) <= {"parentRefs", "hostnames", "rules"}
    assert route["spec"]["parentRefs"] == [{"name": "eg", "namespace": "gateway-system"}]
    for rule in route["spec"]["rules"]:
        assert set(rule) <= {"matches", "backendRefs", "filters", "timeouts"}
        for match in rule["matches"]:
            assert match["path"]["type"] in {"Exact", "PathPrefix", "RegularExpression"}
            assert match["path"]["value"].startswith("/")
        for backend in rule["backendRefs"]:
            assert set(backend) == {"name", "port"}
            assert isinstance(backend["port"], int)
