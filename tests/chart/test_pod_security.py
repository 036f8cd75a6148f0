"""Every pod the chart renders, in every scenario: PSS restricted, a read-only root with /tmp
an emptyDir, resources on every container, the config checksum, the recommended labels."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chart.objects import all_containers, label, pods
from tests.chart.pss import restricted_violations
from tests.chart.scenarios import SCENARIOS
from tests.support.helm import render

RECOMMENDED_LABELS = {
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/version",
    "app.kubernetes.io/managed-by",
}
# Pods of the chart's own image read the settings ConfigMap: they roll when it changes.
CONFIG_READERS = {"api", "worker", "frontend", "migrations"}


def every_pod() -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    found = []
    for scenario, values in SCENARIOS.items():
        for obj, template in pods(render(values)):
            found.append((scenario, obj, template))
    return found


POD_CASES = every_pod()
IDS = [f"{s}-{label(o)}" for s, o, _ in POD_CASES]


@pytest.mark.parametrize(("scenario", "obj", "template"), POD_CASES, ids=IDS)
def test_pod_is_pss_restricted(
    scenario: str, obj: dict[str, Any], template: dict[str, Any]
) -> None:
    assert restricted_violations(template["spec"]) == []


@pytest.mark.parametrize(("scenario", "obj", "template"), POD_CASES, ids=IDS)
def test_root_is_read_only_and_tmp_is_an_emptydir(
    scenario: str, obj: dict[str, Any], template: dict[str, Any]
) -> None:
    spec = template["spec"]
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for c in all_containers(spec):
        assert c["securityContext"]["readOnlyRootFilesystem"] is True, c["name"]
        tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert len(tmp) == 1, f"{c['name']} has no /tmp"
        assert "emptyDir" in volumes[tmp[0]["name"]], f"{c['name']}: /tmp is not an emptyDir"
        assert volumes[tmp[0]["name"]]["emptyDir"].get("sizeLimit"), "unbounded /tmp"


@pytest.mark.parametrize(("scenario", "obj", "template"), POD_CASES, ids=IDS)
def test_every_container_has_resources(
    scenario: str, obj: dict[str, Any], template: dict[str, Any]
) -> None:
    for c in all_containers(template["spec"]):
        resources = c["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), c["name"]
        assert "memory" in resources["limits"], c["name"]


@pytest.mark.parametrize(("scenario", "obj", "template"), POD_CASES, ids=IDS)
def test_labels_and_config_checksum(
    scenario: str, obj: dict[str, Any], template: dict[str, Any]
) -> None:
    for labels in (obj["metadata"]["labels"], template["metadata"]["labels"]):
        assert set(labels) >= RECOMMENDED_LABELS
        assert labels["app.kubernetes.io/part-of"] == "imgconv"
    component = template["metadata"]["labels"]["app.kubernetes.io/component"]
    annotations = template["metadata"].get("annotations") or {}
    if component in CONFIG_READERS:
        assert len(annotations["checksum/config"]) == 64


def test_the_checksum_follows_the_settings() -> None:
    def checksum(values: dict[str, Any]) -> str:
        api = next(o for o, _ in pods(render(values)) if o["metadata"]["name"] == "imgconv-api")
        return str(api["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"config": {"maxFiles": 5}})


def test_the_pss_check_catches_what_it_should() -> None:
    bad = {
        "hostNetwork": True,
        "securityContext": {"runAsUser": 0},
        "volumes": [{"name": "host", "hostPath": {"path": "/"}}],
        "containers": [
            {
                "name": "c",
                "securityContext": {
                    "privileged": True,
                    "capabilities": {"add": ["SYS_ADMIN"]},
                    "seccompProfile": {"type": "Unconfined"},
                },
                "ports": [{"containerPort": 80, "hostPort": 80}],
            }
        ],
    }
    problems = " | ".join(restricted_violations(bad))
    for expected in (
        "hostNetwork",
        "pod runAsUser is 0",
        "volume host",
        "privileged",
        "allowPrivilegeEscalation",
        "drop ALL",
        "SYS_ADMIN",
        "runAsNonRoot",
        "seccomp profile is Unconfined",
        "hostPort 80",
    ):
        assert expected in problems


def test_host_network_is_only_for_podman_and_breaks_the_profile() -> None:
    docs = render({"hostNetwork": True})
    api = next(t for o, t in pods(docs) if o["metadata"]["name"] == "imgconv-api")
    assert "hostNetwork is set" in restricted_violations(api["spec"])
