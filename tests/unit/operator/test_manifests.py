"""The operator's CRDs (charts/imgconv/crds/, the only copy in the repository): valid
Kubernetes objects, and a schema that refuses typos and out-of-range values. How the chart
deploys the operator is tested in tests/chart/test_operator.py."""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.crds import CRD_DIR, to_json_schema


def crd_documents() -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in the chart's crds/."""
    docs: list[dict[str, Any]] = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    return docs


def crd(name: str) -> dict[str, Any]:
    """A CustomResourceDefinition by metadata.name."""
    return next(d for d in crd_documents() if d["metadata"]["name"] == name)


EXAMPLE: dict[str, Any] = {
    "spec": {
        "targetRef": {"name": "imgconv-worker"},
        "source": {
            "rabbitmq": {
                "managementUrl": "http://rabbitmq:15672",
                "amqpUrl": "amqp://rabbitmq:5672",
                "drain": {"celeryNodeName": "imgconv@{pod}"},
                "credentialsSecret": {"name": "imgconv-rabbitmq"},
            }
        },
        "concurrencyPerReplica": 2,
        "targetUtilization": 0.8,
        "minReplicas": 1,
        "maxReplicas": 20,
        "idleReplicas": 0,
        "scaleDown": {"stabilizationWindowSeconds": 60, "cooldownSeconds": 60},
        "fallback": {"failureThreshold": 3},
    }
}


@pytest.mark.parametrize("version", ["1.30.0", "1.37.0"])
@pytest.mark.parametrize("name", ["workerautoscalers.imgconv.io", "kopfpeerings.kopf.dev"])
def test_crds_are_valid_kubernetes_objects(name: str, version: str) -> None:
    kubernetes_validate.validate(crd(name), version, strict=True)


def workerautoscaler_schema() -> dict[str, Any]:
    version = crd("workerautoscalers.imgconv.io")["spec"]["versions"][0]
    return to_json_schema(version["schema"]["openAPIV3Schema"])  # type: ignore[no-any-return]


def test_an_example_workerautoscaler_matches_the_schema() -> None:
    jsonschema.validate(EXAMPLE, workerautoscaler_schema())


def test_the_schema_rejects_a_typo_and_a_bad_value() -> None:
    typo = copy.deepcopy(EXAMPLE)
    typo["spec"]["maxReplica"] = 3
    bad = copy.deepcopy(EXAMPLE)
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
