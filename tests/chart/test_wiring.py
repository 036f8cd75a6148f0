"""The rendered objects fit together: Services and policies select real pods, every port a
probe, Service, Ingress or route names exists on its container, every Secret and ConfigMap a
pod reads is rendered (or is the existing one the values name) and has the key."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.chart.objects import Obj, all_containers, find, kinds, label, pods
from tests.chart.scenarios import SCENARIOS
from tests.support.helm import render

# Secrets the scenarios name as existing ones (not rendered by the chart).
EXISTING = {
    "app-secret",
    "pg-secret",
    "redis-secret",
    "mq-secret",
    "urls",
    "mq-monitoring",
    "s3-keys",
}
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def workloads_selected_by(docs: list[Obj], selector: dict[str, str]) -> list[Obj]:
    return [
        o for o, t in pods(docs) if selector.items() <= (t["metadata"].get("labels") or {}).items()
    ]


def container_port(c: Obj, port: int | str) -> bool:
    return any(p["containerPort"] == port or p.get("name") == port for p in c.get("ports", []))


@pytest.fixture(params=list(SCENARIOS), ids=list(SCENARIOS))
def docs(request: pytest.FixtureRequest) -> list[Obj]:
    return render(SCENARIOS[request.param])


def test_every_service_selects_one_workload_whose_pods_have_the_target_ports(
    docs: list[Obj],
) -> None:
    for service in kinds(docs, "Service"):
        selected = workloads_selected_by(docs, service["spec"]["selector"])
        assert len(selected) == 1, f"{label(service)} selects {[label(o) for o in selected]}"
        spec = selected[0]["spec"]["template"]["spec"]
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert any(container_port(c, target) for c in spec["containers"]), (
                f"{label(service)} targets {target}, which no container of "
                f"{label(selected[0])} exposes"
            )


def test_every_probe_port_exists_on_its_container(docs: list[Obj]) -> None:
    probed = 0
    for obj, template in pods(docs):
        for c in all_containers(template["spec"]):
            for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
                probe = c.get(kind)
                if not probe:
                    continue
                probed += 1
                handler = probe.get("httpGet") or probe.get("tcpSocket")
                if handler is not None:
                    assert container_port(c, handler["port"]), f"{label(obj)} {c['name']} {kind}"
                else:
                    assert probe["exec"]["command"], f"{label(obj)} {c['name']} {kind}"
    assert probed > 0


def test_every_secret_and_configmap_a_pod_reads_exists_with_the_key(docs: list[Obj]) -> None:
    secrets = {s["metadata"]["name"]: s for s in kinds(docs, "Secret")}
    configmaps = {c["metadata"]["name"]: c for c in kinds(docs, "ConfigMap")}
    for obj, template in pods(docs):
        spec = template["spec"]
        for c in all_containers(spec):
            for source in c.get("envFrom", []):
                assert source["configMapRef"]["name"] in configmaps, label(obj)
            for env in c.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref is None:
                    continue
                if ref["name"] in EXISTING:
                    continue
                assert ref["name"] in secrets, f"{label(obj)} reads missing Secret {ref['name']}"
                data = secrets[ref["name"]].get("data", {})
                assert ref["key"] in data, f"{label(obj)}: no key {ref['key']} in {ref['name']}"
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert volume["configMap"]["name"] in configmaps, label(obj)
            if "secret" in volume and volume["secret"]["secretName"] not in EXISTING:
                secret = secrets.get(volume["secret"]["secretName"])
                assert secret is not None, f"{label(obj)} mounts a missing Secret"
                for item in volume["secret"].get("items", []):
                    assert item["key"] in secret["data"], f"{label(obj)}: no key {item['key']}"


def test_every_dependent_variable_is_defined_before_its_use(docs: list[Obj]) -> None:
    """Kubernetes expands $(VAR) only from variables defined earlier in the same list."""
    for obj, template in pods(docs):
        for c in all_containers(template["spec"]):
            defined: set[str] = set()
            for env in c.get("env", []):
                for used in VAR_REF.findall(env.get("value", "")):
                    assert used in defined, f"{label(obj)} {c['name']}: {env['name']} uses {used}"
                defined.add(env["name"])
            for arg in [*c.get("args", []), *c.get("command", [])]:
                for used in VAR_REF.findall(str(arg)):
                    assert used in defined, f"{label(obj)} {c['name']}: argument uses {used}"


def test_budgets_autoscalers_and_policies_select_pods(docs: list[Obj]) -> None:
    for pdb in kinds(docs, "PodDisruptionBudget"):
        assert len(workloads_selected_by(docs, pdb["spec"]["selector"]["matchLabels"])) == 1
    for hpa in kinds(docs, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert find(docs, target["kind"], target["name"])
    for policy in kinds(docs, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert workloads_selected_by(docs, selector), f"{label(policy)} selects no pod"
    for autoscaler in kinds(docs, "WorkerAutoscaler"):
        assert find(docs, "Deployment", autoscaler["spec"]["targetRef"]["name"])


def test_ingress_and_route_backends_exist(docs: list[Obj]) -> None:
    services = {s["metadata"]["name"]: s for s in kinds(docs, "Service")}
    for ingress in kinds(docs, "Ingress"):
        for rule in ingress["spec"]["rules"]:
            for path in rule["http"]["paths"]:
                backend = path["backend"]["service"]
                ports = [p["name"] for p in services[backend["name"]]["spec"]["ports"]]
                assert backend["port"]["name"] in ports
    for route in kinds(docs, "HTTPRoute"):
        for rule in route["spec"]["rules"]:
            for backend in rule["backendRefs"]:
                ports = [p["port"] for p in services[backend["name"]]["spec"]["ports"]]
                assert backend["port"] in ports


def test_the_checks_above_can_fail() -> None:
    docs = render({})
    broken: list[dict[str, Any]] = [dict(d) for d in docs]
    service = next(d for d in broken if d["kind"] == "Service" and "api" in d["metadata"]["name"])
    service["spec"] = {**service["spec"], "selector": {"app.kubernetes.io/component": "nope"}}
    with pytest.raises(AssertionError):
        test_every_service_selects_one_workload_whose_pods_have_the_target_ports(broken)
