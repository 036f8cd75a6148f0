"""skaffold.yaml (validated against skaffold's own v4beta14 schema) and the kind/minikube files
agree with the chart: the values they set exist, the images they build are the ones the chart
runs, file sync lands where the chart puts the Python packages, port forwards name real
Services, and the kind node's published ports are the ones Traefik binds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.objects import container, env_of, find, name_of
from tests.support.helm import CHART, ROOT, render

SKAFFOLD_SCHEMA = Path(__file__).parent / "schemas" / "skaffold-v4beta14.json"
SKAFFOLD: dict[str, Any] = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
RELEASE = SKAFFOLD["deploy"]["helm"]["releases"][0]
VALUES_SCHEMA = json.loads((CHART / "values.schema.json").read_text())


def schema_has(path: str) -> bool:
    node: dict[str, Any] = VALUES_SCHEMA
    for part in path.split("."):
        if "$ref" in node:
            node = VALUES_SCHEMA["definitions"][node["$ref"].rsplit("/", 1)[1]]
        properties = node.get("properties") or {}
        if part not in properties:
            return False
        node = properties[part]
    return True


def values_from_sets(sets: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for dotted, value in sets.items():
        node = values
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


def glob_matches(pattern: str, path: str) -> bool:
    """Skaffold's sync globs: `**/` is zero or more directories, `*` stays within one."""
    regex = ""
    for token in re.split(r"(\*\*/|\*)", pattern):
        regex += {"**/": "(?:.*/)?", "*": "[^/]*"}.get(token, re.escape(token))
    return re.fullmatch(regex, path) is not None


def test_skaffold_yaml_is_valid_v4beta14() -> None:
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta14"
    jsonschema.validate(SKAFFOLD, json.loads(SKAFFOLD_SCHEMA.read_text()))


def test_it_builds_both_images_from_their_dockerfiles() -> None:
    artifacts = {a["image"]: a for a in SKAFFOLD["build"]["artifacts"]}
    assert set(artifacts) == {"imgconv", "imgconv-frontend"}
    for artifact in artifacts.values():
        assert (ROOT / artifact["context"] / artifact["docker"]["dockerfile"]).is_file()
    assert artifacts["imgconv"]["context"] == "."
    assert artifacts["imgconv-frontend"]["context"] == "frontend"
    assert SKAFFOLD["build"]["local"]["push"] is False


def test_the_images_it_builds_are_the_ones_the_chart_runs() -> None:
    templates = RELEASE["setValueTemplates"]
    for artifact in SKAFFOLD["build"]["artifacts"]:
        key = re.sub(r"[/.-]", "_", artifact["image"])
        values = "frontend" if artifact["image"].endswith("frontend") else "imgconv"
        assert templates[f"images.{values}.repository"] == f"{{{{.IMAGE_REPO_{key}}}}}"
        assert templates[f"images.{values}.tag"] == f"{{{{.IMAGE_TAG_{key}}}}}"
    for dotted in [*templates, *RELEASE["setValues"]]:
        assert schema_has(dotted), f"skaffold sets {dotted}, which the chart does not have"


def test_the_deployed_chart_renders_with_skaffolds_values() -> None:
    values = values_from_sets(RELEASE["setValues"])
    values["images"]["imgconv"].update(repository="imgconv", tag="abc123")
    values["images"]["frontend"].update(repository="imgconv-frontend", tag="abc123")
    docs = render(values, release=RELEASE["name"], namespace=RELEASE["namespace"])
    api = find(docs, "Deployment", name_of("api"))
    assert container(api, "api")["image"] == "imgconv:abc123"
    for forward in SKAFFOLD["portForward"]:
        service = find(docs, "Service", forward["resourceName"])
        assert forward["namespace"] == RELEASE["namespace"]
        assert forward["port"] in [p["port"] for p in service["spec"]["ports"]]


def test_file_sync_lands_in_the_charts_python_sync_dir_of_every_python_pod() -> None:
    docs = render({"dev": {"pythonSync": True}})
    (artifact,) = [a for a in SKAFFOLD["build"]["artifacts"] if a["image"] == "imgconv"]
    rules = artifact["sync"]["manual"]
    tracked = [str(p.relative_to(ROOT)) for p in ROOT.glob("*/imgconv_*/**/*.py")]
    for rule in rules:
        matched = [p for p in tracked if glob_matches(rule["src"], p)]
        assert matched, f"{rule['src']} matches no file"
        package = rule["src"].removeprefix(rule["strip"]).split("/")[0]
        assert (ROOT / rule["strip"] / package / "__init__.py").exists()
    synced = {r["src"].removeprefix(r["strip"]).split("/")[0] for r in rules}
    for component in ("api", "worker", "operator"):
        deployment = find(docs, "Deployment", name_of(component))
        main = container(deployment, component)
        (mount,) = [m for m in main["volumeMounts"] if m["name"] == "python-sync"]
        assert {r["dest"] for r in rules} == {mount["mountPath"]}
        assert env_of(main)["PYTHONPATH"]["value"] == mount["mountPath"]
        copier = container(deployment, "python-sync")
        for package in synced:  # the init container copies every package the sync updates
            assert f'"{package}"' in copier["command"][2]
    off = render({})
    assert "PYTHONPATH" not in env_of(container(find(off, "Deployment", name_of("api")), "api"))


def test_profiles_follow_the_kind_and_minikube_contexts() -> None:
    kind = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
    profiles = {p["name"]: p for p in SKAFFOLD["profiles"]}
    assert profiles["kind"]["activation"] == [{"kubeContext": f"kind-{kind['name']}"}]
    assert profiles["minikube"]["activation"] == [{"kubeContext": "minikube"}]
    for profile in profiles.values():
        (patch,) = profile["patches"]
        assert patch["path"] == "/deploy/helm/releases/0/valuesFiles"
        for values_file in patch["value"]:
            assert (ROOT / values_file).is_file()


@pytest.mark.parametrize("values_file", ["k8s/values-kind.yaml", "k8s/values-minikube.yaml"])
def test_the_cluster_values_render(values_file: str) -> None:
    values = yaml.safe_load((ROOT / values_file).read_text())
    docs = render(values)
    ingress = find(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] in {"traefik", "nginx"}
    api = container(find(docs, "Deployment", name_of("api")), "api")
    assert api["image"] == "localhost/imgconv:dev"
    assert api["imagePullPolicy"] == "Never"  # loaded into the node, never pulled


def test_minikube_values_allow_20_files_of_25_mib() -> None:
    values = yaml.safe_load((ROOT / "k8s" / "values-minikube.yaml").read_text())
    body = values["ingress"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body.endswith("m")
    chart = yaml.safe_load((CHART / "values.yaml").read_text())["config"]
    assert int(body[:-1]) * 1024 * 1024 >= chart["maxFiles"] * chart["maxFileBytes"] * 1.05


def test_the_kind_node_publishes_the_ports_traefik_binds() -> None:
    kind = yaml.safe_load((ROOT / "k8s" / "kind-config.yaml").read_text())
    traefik = yaml.safe_load((ROOT / "k8s" / "traefik-values.yaml").read_text())
    (node,) = kind["nodes"]
    published = {m["containerPort"] for m in node["extraPortMappings"]}
    assert published == {
        traefik["ports"]["web"]["hostPort"],
        traefik["ports"]["websecure"]["hostPort"],
    }
    label = next(iter(traefik["nodeSelector"].items()))
    assert f"{label[0]}={label[1]}" in node["kubeadmConfigPatches"][0]
    assert traefik["ingressClass"]["isDefaultClass"] is True


def test_make_kind_uses_these_files() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "bash scripts/kind.sh up" in makefile[makefile.index("\nkind:") :]
    assert "bash scripts/kind.sh down" in makefile[makefile.index("\nkind-down:") :]
    kind = (ROOT / "scripts" / "kind.sh").read_text()
    for needed in (
        "k8s/kind-config.yaml",
        "k8s/traefik-values.yaml",
        "k8s/values-kind.yaml",
        "--wait",
    ):
        assert needed in kind, needed
