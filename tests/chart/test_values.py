"""helm lint --strict, values.yaml against values.schema.json, and bad values failing the
render with a message that names the value."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.support.helm import CHART, RenderError, helm, render

SCHEMA = json.loads((CHART / "values.schema.json").read_text())
VALUES = yaml.safe_load((CHART / "values.yaml").read_text())


def test_helm_lint_strict_passes() -> None:
    done = helm("lint", "--strict", str(CHART), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_values_yaml_matches_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(VALUES, SCHEMA)


def schema_paths(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of every leaf value the schema describes under `properties`."""
    if "$ref" in schema:
        schema = SCHEMA["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    properties = schema.get("properties")
    if not properties or schema.get("type") != "object":
        return {prefix}
    paths: set[str] = set()
    for key, sub in properties.items():
        paths |= schema_paths(sub, f"{prefix}.{key}" if prefix else key)
    return paths


def value_paths(values: Any, prefix: str = "") -> set[str]:
    if not isinstance(values, dict) or not values:
        return {prefix}
    paths: set[str] = set()
    for key, sub in values.items():
        paths |= value_paths(sub, f"{prefix}.{key}" if prefix else key)
    return paths


def test_the_schema_covers_every_value_and_refuses_unknown_keys() -> None:
    described = schema_paths(SCHEMA)
    for path in value_paths(VALUES):
        # A value is described when the schema has it or an enclosing map of free keys (or,
        # for a map left empty in values.yaml, the keys it may hold).
        assert any(
            path == d or path.startswith(d + ".") or d.startswith(path + ".") for d in described
        ), f"{path} is not in values.schema.json"
    written = value_paths(VALUES)
    for path in described:  # and values.yaml shows (and comments) every value there is
        assert any(
            v == path or v.startswith(path + ".") or path.startswith(v + ".") for v in written
        ), path

    def closed(schema: dict[str, Any], where: str) -> None:
        if "$ref" in schema:
            return
        if schema.get("type") == "object" and "properties" in schema:
            assert schema.get("additionalProperties") is False, f"{where} accepts unknown keys"
            for key, sub in schema["properties"].items():
                closed(sub, f"{where}.{key}")

    closed(SCHEMA, "values")
    for name, definition in SCHEMA["definitions"].items():
        closed(definition, f"definitions.{name}")


@pytest.mark.parametrize(
    ("values_file", "message"),
    [
        ("api:\n  replicas: two\n", "at '/api/replicas': got string, want integer"),
        ("api:\n  replica: 2\n", "at '/api': additional properties 'replica' not allowed"),
        ("worker:\n  concurrency: null\n", "at '/worker': missing property 'concurrency'"),
        ("ingress:\n  enabled: yes please\n", "at '/ingress/enabled': got string, want boolean"),
        ("worker:\n  pool: gevent\n", "at '/worker/pool'"),
        ("postgres:\n  persistence:\n    size: lots\n", "at '/postgres/persistence/size'"),
        ("config:\n  extraEnv:\n    MAX_FILES: '3'\n", "at '/config/extraEnv'"),
        ("storage:\n  backend: minio\n", "at '/storage/backend'"),
        ("storage:\n  s3:\n    bucket: My_Bucket\n", "at '/storage/s3/bucket'"),
        ("monitoring:\n  interval: often\n", "at '/monitoring/interval'"),
        ("tracing:\n  extraEnv:\n    SERVICE_NAME: x\n", "at '/tracing/extraEnv'"),
    ],
    ids=[
        "wrong-type",
        "unknown-key",
        "required-missing",
        "not-a-bool",
        "enum",
        "quantity",
        "env",
        "storage-backend",
        "bucket-name",
        "duration",
        "otel-env",
    ],
)
def test_a_bad_values_file_fails_against_the_schema(
    tmp_path: Path, values_file: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(values_file)
    done = helm("template", "x", str(CHART), "--values", str(path), check=False)
    assert done.returncode != 0
    assert "values don't meet the specifications of the schema" in done.stderr
    assert message in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"postgres": {"enabled": False}},
            "postgres.enabled is false: set postgres.external.url or postgres.external.existingS",
        ),
        ({"redis": {"enabled": False}}, "redis.enabled is false: set redis.external.url"),
        ({"rabbitmq": {"enabled": False}}, "rabbitmq.enabled is false: set rabbitmq.external.url"),
        (
            {
                "postgres": {
                    "enabled": False,
                    "external": {"url": "postgresql://a@b/c", "existingSecret": "s"},
                }
            },
            "set only one of postgres.external.url and postgres.external.existingSecret",
        ),
        (
            {"config": {"taskSoftTimeLimitSeconds": 200, "taskHardTimeLimitSeconds": 150}},
            "config.taskHardTimeLimitSeconds (150) must exceed config.taskSoftTimeLimitSeconds",
        ),
        (
            {"api": {"autoscaling": {"enabled": True, "minReplicas": 4, "maxReplicas": 2}}},
            "api.autoscaling.minReplicas (4) must not exceed maxReplicas (2)",
        ),
        (
            {"ingress": {"tls": {"enabled": True}, "host": "a.example"}},
            "ingress.tls.enabled needs ingress.tls.secretName",
        ),
        (
            {"ingress": {"tls": {"enabled": True, "secretName": "t"}}},
            "ingress.tls.enabled needs ingress.host",
        ),
        ({"httpRoute": {"enabled": True}}, "httpRoute.enabled needs httpRoute.parentRefs"),
        (
            {
                "networkPolicy": {"enabled": True},
                "redis": {"enabled": False, "external": {"url": "redis://r:6379/0"}},
            },
            "networkPolicy.enabled with an external Postgres, Redis or RabbitMQ",
        ),
        (
            {"config": {"extraEnv": {"IMGCONV_DATABASE_URL": "postgresql://x"}}},
            "config.extraEnv.IMGCONV_DATABASE_URL: connections and the secret key come from",
        ),
        (
            {"hostNetwork": True, "networkPolicy": {"enabled": True}},
            "hostNetwork (for podman kube play only) and networkPolicy.enabled exclude each other",
        ),
        (
            {"storage": {"backend": "s3"}},
            "storage.backend=s3 needs a store: set storage.s3.endpoint",
        ),
        (
            {"storage": {"seaweedfs": {"enabled": True}, "s3": {"endpoint": "https://s3.example"}}},
            "set only one of storage.seaweedfs.enabled (the bundled SeaweedFS) and storage.s3.end",
        ),
        (
            {"storage": {"seaweedfs": {"enabled": True}, "s3": {"presignedDownloads": True}}},
            "storage.s3.presignedDownloads redirects clients to the S3 endpoint, but the bundled",
        ),
        (
            {"storage": {"s3": {"serviceAccount": {"create": True, "name": "x"}}}},
            "set only one of storage.s3.serviceAccount.create and storage.s3.serviceAccount.name",
        ),
        (
            {
                "networkPolicy": {"enabled": True},
                "storage": {"backend": "s3", "s3": {"endpoint": "https://s3.example"}},
            },
            "networkPolicy.enabled with an external S3 (storage.s3.endpoint): the API and worker",
        ),
        (
            {"config": {"extraEnv": {"IMGCONV_S3_SECRET_ACCESS_KEY": "x"}}},
            "config.extraEnv.IMGCONV_S3_SECRET_ACCESS_KEY: the S3 key pair comes from a Secret",
        ),
        (
            {"config": {"extraEnv": {"IMGCONV_STORAGE": "s3"}}},
            "config.extraEnv.IMGCONV_STORAGE is set by the chart from its values",
        ),
        (
            {"config": {"extraEnv": {"IMGCONV_MAX_FILES": "3"}}},
            "config.extraEnv.IMGCONV_MAX_FILES is set by the chart from its values",
        ),
        (
            {"monitoring": {"enabled": True}, "networkPolicy": {"enabled": True}},
            "monitoring.enabled with networkPolicy.enabled: Prometheus could not scrape the pods",
        ),
        ({"tracing": {"enabled": True}}, "tracing.enabled needs tracing.endpoint"),
        (
            {
                "tracing": {"enabled": True, "endpoint": "http://c:4318"},
                "networkPolicy": {"enabled": True},
            },
            "tracing.enabled with networkPolicy.enabled: the API and worker pods could not reach",
        ),
        (
            {
                "tracing": {
                    "enabled": True,
                    "endpoint": "http://c:4318",
                    "extraEnv": {"OTEL_RESOURCE_ATTRIBUTES": "a=b"},
                }
            },
            "tracing.extraEnv.OTEL_RESOURCE_ATTRIBUTES is set by the chart from tracing.endpoint",
        ),
        (
            {"api": {"processes": 5}},  # 5 x the default 512 MiB budget in a 2Gi /tmp
            "api.tmpSizeLimit (2Gi) must hold api.processes (5) x api.uploadBudgetBytes",
        ),
        (
            {"api": {"tmpSizeLimit": "512Mi", "uploadBudgetBytes": 536870913}},
            "raise tmpSizeLimit or lower uploadBudgetBytes",
        ),
        (
            {"config": {"extraEnv": {"IMGCONV_UPLOAD_BUDGET_BYTES": "1"}}},
            "set api.uploadBudgetBytes",
        ),
    ],
    ids=[
        "no-postgres",
        "no-redis",
        "no-rabbitmq",
        "two-postgres-sources",
        "time-limits",
        "hpa-bounds",
        "tls-secret",
        "tls-host",
        "route-parent",
        "policy-external",
        "extra-env-url",
        "host-network-policy",
        "s3-without-store",
        "two-s3-stores",
        "presigned-bundled",
        "two-service-accounts",
        "policy-external-s3",
        "extra-env-s3-key",
        "extra-env-storage",
        "extra-env-twice",
        "monitoring-policy",
        "tracing-endpoint",
        "tracing-policy",
        "otel-env-twice",
        "budgets-over-tmp",
        "budget-over-tmp-by-a-byte",
        "extra-env-budget",
    ],
)
def test_inconsistent_values_fail_the_render_with_what_to_change(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(RenderError) as failed:
        render(values)
    assert message in str(failed.value)
