"""Value sets that together switch every toggle of the chart on and off."""

from __future__ import annotations

from typing import Any

EXTERNAL_SERVICES: dict[str, Any] = {
    "postgres": {
        "enabled": False,
        "external": {"url": "postgresql+psycopg://app:pw@db.example:5432/imgconv"},
    },
    "redis": {"enabled": False, "external": {"url": "redis://:pw@cache.example:6379/0"}},
    "rabbitmq": {
        "enabled": False,
        "external": {
            "url": "amqp://app:pw@mq.example:5672/%2F",
            "managementUrl": "http://mq.example:15672",
            "amqpUrl": "amqp://mq.example:5672",
            "credentialsSecret": {"name": "mq-monitoring"},
        },
    },
}

EGRESS_TO_EXTERNAL = [
    {"to": [{"ipBlock": {"cidr": "10.20.0.0/16"}}], "ports": [{"port": p} for p in (5432, 6379)]},
    {"to": [{"ipBlock": {"cidr": "10.30.0.0/16"}}], "ports": [{"port": 5672}, {"port": 15672}]},
]

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything-on": {
        "api": {"autoscaling": {"enabled": True}},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
        },
        "ingress": {
            "className": "traefik",
            "host": "imgconv.example.com",
            "annotations": {"example.io/anything": "x"},
            "tls": {"enabled": True, "secretName": "imgconv-tls"},
        },
        "httpRoute": {
            "enabled": True,
            "parentRefs": [{"name": "eg", "namespace": "gateway-system"}],
            "hostnames": ["imgconv.example.com"],
        },
        "operator": {"workerAutoscaler": {"idleReplicas": 0, "fallback": {"replicas": 2}}},
        "imagePullSecrets": [{"name": "registry"}],
    },
    "everything-off": {
        "operator": {"enabled": False},
        "frontend": {"enabled": False},
        "ingress": {"enabled": False},
        "migrations": {"job": {"enabled": False}},
        "api": {"podDisruptionBudget": {"enabled": False}, "topologySpread": {"enabled": False}},
        "postgres": {"persistence": {"enabled": False}},
        "redis": {"persistence": {"enabled": False}},
        "rabbitmq": {"persistence": {"enabled": False}},
    },
    "external-services": {
        **EXTERNAL_SERVICES,
        "networkPolicy": {"enabled": True, "extraEgress": EGRESS_TO_EXTERNAL},
    },
    "existing-secrets": {
        "secretKey": {"existingSecret": "app-secret", "existingSecretKey": "key"},
        "postgres": {"auth": {"existingSecret": "pg-secret", "passwordKey": "pw"}},
        "redis": {"auth": {"existingSecret": "redis-secret"}},
        "rabbitmq": {
            "auth": {"existingSecret": "mq-secret", "usernameKey": "u", "passwordKey": "p"}
        },
    },
    "skaffold-dev": {"dev": {"pythonSync": True}},
    "external-existing-secrets": {
        "postgres": {"enabled": False, "external": {"existingSecret": "urls"}},
        "redis": {"enabled": False, "external": {"existingSecret": "urls"}},
        "rabbitmq": {
            "enabled": False,
            "external": {
                "existingSecret": "urls",
                "managementUrl": "https://mq.example:15671",
                "amqpUrl": "amqps://mq.example:5671",
                "credentialsSecret": {"name": "urls", "usernameKey": "mq-user"},
            },
        },
    },
}
