"""Optional NetworkPolicies: each component accepts only its clients and reaches only what it
needs. Evaluated like the API server's policy semantics: a connection is allowed when a policy
selecting the destination admits it on ingress and one selecting the source on egress."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.objects import Obj, kinds, name_of, pods
from tests.chart.scenarios import EGRESS_TO_EXTERNAL, EXTERNAL_SERVICES
from tests.support.helm import NAMESPACE, render

ON = {"networkPolicy": {"enabled": True}}
DNS = {"labels": {"k8s-app": "kube-dns"}, "namespace": "kube-system", "port": 53}


def component_pods(docs: list[Obj]) -> dict[str, dict[str, Any]]:
    """component -> {labels, ports by name}."""
    found = {}
    for _, template in pods(docs):
        labels = template["metadata"]["labels"]
        ports = {}
        for c in template["spec"]["containers"]:
            for p in c.get("ports", []):
                ports[p.get("name", str(p["containerPort"]))] = p["containerPort"]
        found[labels["app.kubernetes.io/component"]] = {"labels": labels, "ports": ports}
    return found


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return dict(selector.get("matchLabels", {})).items() <= labels.items()


def peer_matches(peer: dict[str, Any], labels: dict[str, str], namespace: str) -> bool:
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        ns_ok = peer["namespaceSelector"] == {} or namespace == NAMESPACE
    else:
        ns_ok = namespace == NAMESPACE
    return ns_ok and selects(peer.get("podSelector", {}), labels)


def port_matches(rule: dict[str, Any], port: int, named: dict[str, int]) -> bool:
    if "ports" not in rule:
        return True
    for p in rule["ports"]:
        wanted = p["port"]
        if wanted == port or named.get(str(wanted)) == port:
            return True
    return False


def ingress_allows(docs: list[Obj], dst: dict[str, Any], src: dict[str, Any], port: int) -> bool:
    policies = [
        p for p in kinds(docs, "NetworkPolicy") if selects(p["spec"]["podSelector"], dst["labels"])
    ]
    if not policies:
        return True
    return any(
        any(
            peer_matches(peer, src["labels"], src.get("namespace", NAMESPACE))
            for peer in rule.get("from", [])
        )
        and port_matches(rule, port, dst["ports"])
        for p in policies
        for rule in p["spec"].get("ingress") or []
    )


def egress_allows(docs: list[Obj], src: dict[str, Any], dst: dict[str, Any], port: int) -> bool:
    policies = [
        p for p in kinds(docs, "NetworkPolicy") if selects(p["spec"]["podSelector"], src["labels"])
    ]
    if not policies:
        return True
    return any(
        (
            "to" not in rule
            or any(
                peer_matches(peer, dst["labels"], dst.get("namespace", NAMESPACE))
                for peer in rule["to"]
            )
        )
        and port_matches(rule, port, dst.get("ports", {}))
        for p in policies
        for rule in p["spec"].get("egress") or []
    )


def allowed(docs: list[Obj], src: str, dst: str, port: int) -> bool:
    parts = component_pods(docs)
    return egress_allows(docs, parts[src], parts[dst], port) and ingress_allows(
        docs, parts[dst], parts[src], port
    )


NEEDED = [
    ("api", "postgres", 5432),
    ("api", "redis", 6379),
    ("api", "rabbitmq", 5672),
    ("worker", "postgres", 5432),
    ("worker", "redis", 6379),
    ("worker", "rabbitmq", 5672),
    ("migrations", "postgres", 5432),
    ("operator", "rabbitmq", 15672),
    ("operator", "rabbitmq", 5672),
    ("api", "rabbitmq", 15672),  # the backlog metric's unacked count (metrics.brokerManagement)
    ("frontend", "api", 8000),
    ("test", "api", 8000),
]
FORBIDDEN = [
    ("frontend", "postgres", 5432),
    ("frontend", "redis", 6379),
    ("frontend", "rabbitmq", 5672),
    ("worker", "rabbitmq", 15672),
    ("frontend", "rabbitmq", 15672),
    ("worker", "api", 8000),
    ("migrations", "redis", 6379),
    ("migrations", "rabbitmq", 5672),
    ("test", "postgres", 5432),
    ("operator", "postgres", 5432),
    ("api", "worker", 9100),
    ("postgres", "redis", 6379),
    ("redis", "rabbitmq", 5672),
]


@pytest.mark.parametrize(("src", "dst", "port"), NEEDED)
def test_what_each_component_needs_is_allowed(src: str, dst: str, port: int) -> None:
    assert allowed(render(ON), src, dst, port)


@pytest.mark.parametrize(("src", "dst", "port"), FORBIDDEN)
def test_anything_else_between_components_is_denied(src: str, dst: str, port: int) -> None:
    docs = render(ON)
    assert not allowed(docs, src, dst, port)
    assert allowed(render({}), src, dst, port)  # without policies everything is open


def test_without_the_backlog_metric_only_the_operator_reads_the_management_api() -> None:
    docs = render({**ON, "metrics": {"brokerManagement": False}})
    assert allowed(docs, "operator", "rabbitmq", 15672)
    assert not allowed(docs, "api", "rabbitmq", 15672)


SEAWEEDFS = {**ON, "storage": {"backend": "s3", "seaweedfs": {"enabled": True}}}
SEAWEEDFS_NEEDED = [
    ("api", "seaweedfs", 8333),
    ("worker", "seaweedfs", 8333),
    ("seaweedfs-bucket", "seaweedfs", 9333),
    ("seaweedfs-bucket", "seaweedfs", 19333),
    ("seaweedfs-bucket", "seaweedfs", 18888),
    ("seaweedfs", "seaweedfs", 18080),  # its own components, over the pod's address
    ("seaweedfs", "seaweedfs", 19333),
]
SEAWEEDFS_FORBIDDEN = [
    ("frontend", "seaweedfs", 8333),
    ("operator", "seaweedfs", 8333),
    ("migrations", "seaweedfs", 8333),
    ("test", "seaweedfs", 8333),
    ("api", "seaweedfs", 18888),  # the filer and the volume server are not authenticated
    ("api", "seaweedfs", 8080),
    ("worker", "seaweedfs", 19333),
    ("seaweedfs-bucket", "seaweedfs", 8080),
    ("seaweedfs-bucket", "postgres", 5432),
    ("seaweedfs", "postgres", 5432),
]


@pytest.mark.parametrize(("src", "dst", "port"), SEAWEEDFS_NEEDED)
def test_the_bundled_seaweedfs_is_reached_by_what_needs_it(src: str, dst: str, port: int) -> None:
    assert allowed(render(SEAWEEDFS), src, dst, port)


@pytest.mark.parametrize(("src", "dst", "port"), SEAWEEDFS_FORBIDDEN)
def test_the_bundled_seaweedfs_is_closed_to_everything_else(src: str, dst: str, port: int) -> None:
    assert not allowed(render(SEAWEEDFS), src, dst, port)


def test_dns_the_ingress_controller_and_the_api_server() -> None:
    docs = render(ON)
    parts = component_pods(docs)
    for component in ("api", "worker", "operator", "frontend", "migrations", "test"):
        assert egress_allows(docs, parts[component], DNS, 53), component
    controller = {"labels": {"app": "traefik"}, "namespace": "traefik"}
    assert ingress_allows(docs, parts["api"], controller, 8000)
    assert ingress_allows(docs, parts["frontend"], controller, 3000)
    assert not ingress_allows(docs, parts["worker"], controller, 9100)
    apiserver = {"labels": {}, "namespace": "default", "ports": {}}
    assert egress_allows(docs, parts["operator"], apiserver, 443)
    assert not egress_allows(docs, parts["api"], apiserver, 443)


def test_metrics_scrapers_reach_only_the_metrics_ports() -> None:
    prometheus = {"labels": {"app": "prometheus"}, "namespace": "monitoring"}
    values = {
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [
                {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "prometheus"}}}
            ],
        }
    }
    docs = render(values)
    parts = component_pods(docs)
    assert ingress_allows(docs, parts["worker"], prometheus, 9100)
    assert ingress_allows(docs, parts["operator"], prometheus, 9090)
    assert not ingress_allows(docs, parts["postgres"], prometheus, 5432)
    assert not ingress_allows(render(ON), parts["worker"], prometheus, 9100)


def test_external_services_are_reached_through_extra_egress() -> None:
    docs = render(
        {**EXTERNAL_SERVICES, "networkPolicy": {"enabled": True, "extraEgress": EGRESS_TO_EXTERNAL}}
    )
    api = next(p for p in kinds(docs, "NetworkPolicy") if p["metadata"]["name"] == name_of("api"))
    assert all(rule in api["spec"]["egress"] for rule in EGRESS_TO_EXTERNAL)


def test_policies_are_off_by_default() -> None:
    assert kinds(render({}), "NetworkPolicy") == []
