"""Postgres, Redis and RabbitMQ: official images, StatefulSets with PVCs, probes, resources,
each replaceable by an external service given by URL or existing Secret."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.chart.objects import container, env_of, find, has, kinds, name_of
from tests.chart.scenarios import EXTERNAL_SERVICES
from tests.support.helm import render

SERVICES = {
    "postgres": ("postgres", "5432"),
    "redis": ("redis", "6379"),
    "rabbitmq": ("rabbitmq", "5672"),
}


@pytest.mark.parametrize("service", SERVICES)
def test_official_image_with_a_pvc_probes_and_resources(service: str) -> None:
    docs = render({})
    statefulset = find(docs, "StatefulSet", name_of(service))
    main = container(statefulset, service)
    repository = main["image"].split(":")[0]
    assert repository == service  # the Docker official image, not bitnami/...
    assert "bitnami" not in main["image"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert probe in main, probe
    assert main["resources"]["requests"]
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert any(m["name"] == "data" for m in main["volumeMounts"])
    assert statefulset["spec"]["serviceName"] == f"{name_of(service)}-headless"
    assert find(docs, "Service", f"{name_of(service)}-headless")["spec"]["clusterIP"] == "None"


def test_rabbitmq_has_the_management_plugin_image_and_port() -> None:
    rabbitmq = container(find(render({}), "StatefulSet", name_of("rabbitmq")), "rabbitmq")
    assert rabbitmq["image"].endswith("-management")
    assert {p["name"]: p["containerPort"] for p in rabbitmq["ports"]} == {
        "amqp": 5672,
        "management": 15672,
    }


def test_storage_class_size_and_no_persistence() -> None:
    docs = render({"postgres": {"persistence": {"size": "50Gi", "storageClass": "fast"}}})
    (claim,) = find(docs, "StatefulSet", name_of("postgres"))["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == "fast"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    ephemeral = find(
        render({"redis": {"persistence": {"enabled": False}}}), "StatefulSet", name_of("redis")
    )
    assert "volumeClaimTemplates" not in ephemeral["spec"]
    data = next(v for v in ephemeral["spec"]["template"]["spec"]["volumes"] if v["name"] == "data")
    assert data == {"name": "data", "emptyDir": {}}
    redis = container(ephemeral, "redis")
    assert redis["args"][redis["args"].index("--save") + 1] == ""  # no snapshots to nowhere


def test_redis_and_postgres_settings() -> None:
    docs = render({"postgres": {"maxConnections": 500}, "redis": {"maxMemory": "200mb"}})
    postgres = container(find(docs, "StatefulSet", name_of("postgres")), "postgres")
    assert postgres["args"] == ["-c", "max_connections=500"]
    assert env_of(postgres)["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    redis = container(find(docs, "StatefulSet", name_of("redis")), "redis")
    assert redis["args"][redis["args"].index("--maxmemory") + 1] == "200mb"
    assert redis["args"][redis["args"].index("--requirepass") + 1] == "$(REDIS_PASSWORD)"


def test_external_services_replace_the_bundled_ones_with_urls_in_a_secret() -> None:
    docs = render(EXTERNAL_SERVICES)
    assert kinds(docs, "StatefulSet") == []
    for service in SERVICES:
        assert not has(docs, "Service", name_of(service))
    secret = find(docs, "Secret", name_of("external"))
    urls = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert urls == {
        "database-url": "postgresql+psycopg://app:pw@db.example:5432/imgconv",
        "redis-url": "redis://:pw@cache.example:6379/0",
        "broker-url": "amqp://app:pw@mq.example:5672/%2F",
    }
    env = env_of(container(find(docs, "Deployment", name_of("api")), "api"))
    for variable, key in (
        ("IMGCONV_DATABASE_URL", "database-url"),
        ("IMGCONV_REDIS_URL", "redis-url"),
        ("IMGCONV_BROKER_URL", "broker-url"),
    ):
        assert env[variable]["valueFrom"]["secretKeyRef"] == {
            "name": name_of("external"),
            "key": key,
        }
    assert not {"POSTGRES_PASSWORD", "REDIS_PASSWORD", "RABBITMQ_PASSWORD"} & set(env)


def test_external_services_from_an_existing_secret() -> None:
    values: dict[str, Any] = {
        "postgres": {
            "enabled": False,
            "external": {"existingSecret": "urls", "existingSecretKey": "pg"},
        },
        "redis": {"enabled": False, "external": {"existingSecret": "urls"}},
        "rabbitmq": {
            "enabled": False,
            "external": {"existingSecret": "urls"},
        },
        "operator": {"enabled": False},
    }
    docs = render(values)
    assert not has(docs, "Secret", name_of("external"))
    env = env_of(container(find(docs, "Deployment", name_of("worker")), "worker"))
    assert env["IMGCONV_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "urls", "key": "pg"}
    assert env["IMGCONV_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "urls",
        "key": "redis-url",
    }
