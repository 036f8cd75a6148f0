"""The chart's CRDs (charts/imgconv/crds/, the only copy) and their schemas as JSON Schema."""

from __future__ import annotations

from functools import cache
from typing import Any

import jsonschema
import yaml

from tests.support.helm import CHART

CRD_DIR = CHART / "crds"


@cache
def crds() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the openAPIV3Schema of that served version, as JSON Schema."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(CRD_DIR.glob("*.yaml")):
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
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = schema.get("x-kubernetes-preserve-unknown-fields", False)
    if schema.get("type") == "object" and "properties" in schema and not preserve:
        out.setdefault("additionalProperties", False)
    return out


def validate_custom_resource(doc: dict[str, Any]) -> None:
    """Validate a custom resource against its CRD's schema (metadata is the apiserver's)."""
    schema = crds()[(doc["apiVersion"], doc["kind"])]
    body = {k: v for k, v in doc.items() if k not in {"apiVersion", "kind", "metadata"}}
    jsonschema.validate(body, schema)
