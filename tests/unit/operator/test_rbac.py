"""The RBAC evaluator the integration tests rely on, and the Role's shape."""

from __future__ import annotations

import pytest

from tests.support.helm import write_operator_rbac
from tests.support.rbac import ApiCall, Rule, denied, load_rules, parse_call

NS = "imgconv"


@pytest.fixture(scope="module")
def rules(tmp_path_factory: pytest.TempPathFactory) -> list[Rule]:
    """The chart's operator Role (the one source of the operator's RBAC), rendered."""
    rbac = write_operator_rbac(
        tmp_path_factory.mktemp("rbac"), secret_name="imgconv-broker-credentials"
    )
    return load_rules([rbac], "imgconv-operator", NS)


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        (
            "GET",
            "/apis/apps/v1/namespaces/imgconv/deployments/w",
            {},
            ("get", "apps", "deployments"),
        ),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/imgconv/deployments/w/scale",
            {},
            ("patch", "apps", "deployments/scale"),
        ),
        ("GET", "/api/v1/namespaces/imgconv/pods", {"labelSelector": "a=b"}, ("list", "", "pods")),
        (
            "GET",
            "/apis/imgconv.io/v1alpha1/namespaces/imgconv/workerautoscalers",
            {"watch": "true"},
            ("watch", "imgconv.io", "workerautoscalers"),
        ),
        ("POST", "/api/v1/namespaces/imgconv/events", {}, ("create", "", "events")),
        ("GET", "/api/v1/namespaces", {}, ("list", "", "namespaces")),
    ],
)
def test_requests_map_to_verbs_and_resources(
    method: str, path: str, query: dict[str, str], expected: tuple[str, str, str]
) -> None:
    call = parse_call(method, path, query)
    assert call is not None
    assert (call.verb, call.group, call.resource) == expected


def test_discovery_is_not_a_resource_request() -> None:
    assert parse_call("GET", "/apis/imgconv.io/v1alpha1", {}) is None
    assert parse_call("GET", "/api", {}) is None


def test_what_the_operator_needs_is_allowed(rules: list[Rule]) -> None:
    needed = [
        ApiCall("get", "apps", "deployments", NS, "w"),
        ApiCall("patch", "apps", "deployments/scale", NS, "w"),
        ApiCall("list", "", "pods", NS, None),
        ApiCall("patch", "", "pods", NS, "w-1"),
        ApiCall("list", "autoscaling", "horizontalpodautoscalers", NS, None),
        ApiCall("get", "", "secrets", NS, "imgconv-broker-credentials"),
        ApiCall("patch", "imgconv.io", "workerautoscalers/status", NS, "wa"),
        ApiCall("watch", "kopf.dev", "kopfpeerings", NS, None),
        ApiCall("create", "", "events", NS, None),
    ]
    assert denied(needed, rules) == []


def test_anything_broader_is_denied(rules: list[Rule]) -> None:
    broader = [
        ApiCall("patch", "apps", "deployments", NS, "w"),  # could change the image
        ApiCall("delete", "", "pods", NS, "w-1"),
        ApiCall("get", "", "secrets", NS, "someone-elses-secret"),
        ApiCall("list", "", "secrets", NS, None),
        ApiCall("list", "", "pods", "kube-system", None),  # another namespace
        ApiCall("list", "", "pods", None, None),  # cluster-wide
        ApiCall("create", "autoscaling", "horizontalpodautoscalers", NS, None),
    ]
    assert denied(broader, rules) == broader
