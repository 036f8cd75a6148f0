"""The manifests in k8s/: valid Kubernetes objects, the example valid against our CRD."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

K8S = Path(__file__).resolve().parents[3] / "k8s"
CUSTOM_KINDS = {"WorkerAutoscaler", "KopfPeering"}


def documents() -> list[tuple[str, dict[str, Any]]]:
    """Every YAML document under k8s/ with its file name."""
    docs = []
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((str(path.relative_to(K8S)), doc))
    return docs


def crd(name: str) -> dict[str, Any]:
    """A CustomResourceDefinition from k8s/crds by metadata.name."""
    return next(
        d
        for _, d in documents()
        if d["kind"] == "CustomResourceDefinition" and d["metadata"]["name"] == name
    )


def to_json_schema(schema: Any) -> Any:
    """openAPIV3Schema -> JSON Schema: nullable becomes a null type, x-kubernetes-* dropped."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_json_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    if schema.get("type") == "object" and "properties" in schema:
        out.setdefault("additionalProperties", False)  # structural schemas prune unknown fields
    return out


@pytest.mark.parametrize(
    ("where", "doc"),
    [(w, d) for w, d in documents() if d["kind"] not in CUSTOM_KINDS],
    ids=lambda v: v if isinstance(v, str) else v["kind"],
)
def test_builtin_objects_are_valid_for_kubernetes_1_30(where: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, "1.30.0", strict=True)


def workerautoscaler_schema() -> dict[str, Any]:
    version = crd("workerautoscalers.imgconv.io")["spec"]["versions"][0]
    return to_json_schema(version["schema"]["openAPIV3Schema"])  # type: ignore[no-any-return]


def test_example_workerautoscaler_matches_the_crd_schema() -> None:
    example = next(d for _, d in documents() if d["kind"] == "WorkerAutoscaler")
    body = {k: v for k, v in example.items() if k not in {"apiVersion", "kind", "metadata"}}
    jsonschema.validate(body, workerautoscaler_schema())


def test_the_schema_rejects_a_typo_and_a_bad_value() -> None:
    example = next(d for _, d in documents() if d["kind"] == "WorkerAutoscaler")
    body = {k: v for k, v in example.items() if k not in {"apiVersion", "kind", "metadata"}}
    typo = copy.deepcopy(body)
    typo["spec"]["maxReplica"] = 3
    bad = copy.deepcopy(body)
    bad["spec"]["targetUtilization"] = 1.5
    for wrong in (typo, bad):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(wrong, workerautoscaler_schema())


def test_printer_columns_and_status_subresource() -> None:
    version = crd("workerautoscalers.imgconv.io")["spec"]["versions"][0]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    for wanted in ("Target", "Backlog", "Desired", "Current", "Active", "Age"):
        assert wanted in columns
    assert version["subresources"] == {"status": {}}
    assert crd("workerautoscalers.imgconv.io")["spec"]["group"] == "imgconv.io"


def test_operator_deployment_is_single_guarded_and_runs_the_handlers_module() -> None:
    dep = next(d for w, d in documents() if d["kind"] == "Deployment" and "operator" in w)
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"]["type"] == "Recreate"
    assert pod["serviceAccountName"] == "imgconv-operator"
    assert container["command"][:4] == ["kopf", "run", "-m", "imgconv_operator.handlers"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
