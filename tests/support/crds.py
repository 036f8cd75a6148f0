"""The CRDs of the custom resources the chart renders, their schemas as JSON Schema: the chart's
own (charts/imgconv/crds/, the only copy) and the prometheus-operator's (tests/chart/schemas/,
offline copies), plus the Kubernetes ObjectMeta schema every custom resource's metadata meets."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

from tests.support.helm import CHART, ROOT

CRD_DIR = CHART / "crds"
SCHEMA_DIR = ROOT / "tests" / "chart" / "schemas"
OBJECT_META = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


@cache
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the openAPIV3Schema of that served version, as JSON Schema."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    paths = [*sorted(CRD_DIR.glob("*.yaml")), *sorted(SCHEMA_DIR.glob("monitoring.coreos.com_*"))]
    for path in paths:
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd:
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                schema = version["schema"]["openAPIV3Schema"]
                found[(f"{group}/{version['name']}", kind)] = to_json_schema(schema)
    return found


def to_json_schema(schema: Any) -> Any:
    """openAPIV3Schema -> JSON Schema: nullable becomes a null type, x-kubernetes-* dropped,
    unknown fields refused where the structural schema would prune them."""
    if isinstance(schema, list):
        return [to_json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: to_json_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if isinstance(out.get("pattern"), str):
        out["pattern"] = python_pattern(out["pattern"])
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if schema.get("type") == "object" and "properties" in schema and not preserve:
        out.setdefault("additionalProperties", False)
    return out


def python_pattern(pattern: str) -> str:
    """A CRD's pattern (Go RE2) for Python's re: RE2 takes a flag group anywhere, Python only
    at the start (prometheus-operator writes `^(?i)(abort|warn)?$`)."""
    for flags in ("(?i)",):
        if flags in pattern and not pattern.startswith(flags):
            pattern = flags + pattern.replace(flags, "")
    return pattern


@cache
def _object_meta_validator(kube_version: str) -> jsonschema.protocols.Validator:
    definitions = schema_contents(
        f"kubernetes-json-schema/v{kube_version}-local-strict/_definitions.json", kube_version
    )
    resource = Resource.from_contents(definitions)
    registry: Registry[Any] = resource @ Registry()
    schema = {"$ref": f"{definitions['$id']}#/$defs/{OBJECT_META}"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate_custom_resource(doc: dict[str, Any], kube_version: str = "1.30.0") -> None:
    """Validate a custom resource against its CRD's schema, and its metadata against the
    Kubernetes ObjectMeta schema of `kube_version` (strict: unknown fields fail)."""
    schema = crds()[(doc["apiVersion"], doc["kind"])]
    body = {k: v for k, v in doc.items() if k not in {"apiVersion", "kind", "metadata"}}
    jsonschema.validate(body, schema)
    _object_meta_validator(kube_version).validate(doc["metadata"])
