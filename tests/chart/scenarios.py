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
    {"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 443}]},  # S3
]
EXTERNAL_S3: dict[str, Any] = {
    "backend": "s3",
    "s3": {
        "endpoint": "https://s3.eu-west-1.amazonaws.com",
        "bucket": "imgconv-prod",
        "region": "eu-west-1",
        "prefix": "imgconv/",
        "existingSecret": "s3-keys",
        "accessKeyIdKey": "id",
        "secretAccessKeyKey": "secret",
        "presignedDownloads": True,
        "presignExpiresSeconds": 120,
        "orphanGraceSeconds": 1800,
    },
}
MONITORING_ON: dict[str, Any] = {
    "enabled": True,
    "additionalLabels": {"release": "monitoring"},
    "dashboards": {"annotations": {"grafana_folder": "imgconv"}},
}
TRACING_ON: dict[str, Any] = {
    "enabled": True,
    "endpoint": "http://otel-collector.observability:4318",
    "sampler": "parentbased_traceidratio",
    "samplerArg": "0.25",
    "resourceAttributes": {"deployment.environment": "test"},
    "extraEnv": {"OTEL_BSP_MAX_QUEUE_SIZE": 4096},
}
EGRESS_TO_COLLECTOR = {
    "to": [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "observability"}}}
    ],
    "ports": [{"port": 4318}],
}

SCENARIOS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything-on": {
        "api": {"autoscaling": {"enabled": True}, "processes": 2},
        "networkPolicy": {
            "enabled": True,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
            "extraEgress": [EGRESS_TO_COLLECTOR],
        },
        "monitoring": MONITORING_ON,
        "tracing": TRACING_ON,
        "storage": {"backend": "s3", "seaweedfs": {"enabled": True}},
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
        "metrics": {"brokerManagement": False},
        "monitoring": {"enabled": True, "prometheusRule": {"enabled": False}},
        "storage": {
            "backend": "s3",
            "seaweedfs": {"enabled": True, "persistence": {"enabled": False}},
        },
    },
    "external-services": {
        **EXTERNAL_SERVICES,
        "networkPolicy": {"enabled": True, "extraEgress": EGRESS_TO_EXTERNAL},
        "storage": EXTERNAL_S3,
    },
    "existing-secrets": {
        "secretKey": {"existingSecret": "app-secret", "existingSecretKey": "key"},
        "postgres": {"auth": {"existingSecret": "pg-secret", "passwordKey": "pw"}},
        "redis": {"auth": {"existingSecret": "redis-secret"}},
        "rabbitmq": {
            "auth": {"existingSecret": "mq-secret", "usernameKey": "u", "passwordKey": "p"}
        },
        "storage": {
            "backend": "s3",
            "s3": {
                "existingSecret": "s3-keys",
                "accessKeyIdKey": "id",
                "secretAccessKeyKey": "secret",
            },
            "seaweedfs": {"enabled": True},
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
        # S3 with the pods' own identity (IRSA): no key pair anywhere.
        "storage": {
            "backend": "s3",
            "s3": {
                "endpoint": "https://s3.us-east-2.amazonaws.com",
                "region": "us-east-2",
                "serviceAccount": {
                    "create": True,
                    "annotations": {
                        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/imgconv"
                    },
                },
            },
        },
        "monitoring": MONITORING_ON,
    },
}
