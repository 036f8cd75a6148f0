"""The API: Deployment + Service, replicas or an HPA, PDB, topology spread, probes, migrations
before it serves, connection settings from Secrets."""

from __future__ import annotations

from tests.chart.objects import container, env_of, find, has, kinds, name_of
from tests.support.helm import render

API = name_of("api")


def test_fixed_replicas_without_an_hpa() -> None:
    docs = render({"api": {"replicas": 3}})
    assert find(docs, "Deployment", API)["spec"]["replicas"] == 3
    assert kinds(docs, "HorizontalPodAutoscaler") == []


def test_the_hpa_owns_replicas_when_enabled() -> None:
    docs = render(
        {
            "api": {
                "autoscaling": {
                    "enabled": True,
                    "minReplicas": 3,
                    "maxReplicas": 7,
                    "targetCPUUtilizationPercentage": 60,
                }
            }
        }
    )
    assert "replicas" not in find(docs, "Deployment", API)["spec"]
    hpa = find(docs, "HorizontalPodAutoscaler", API)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": API,
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 7)
    target = hpa["spec"]["metrics"][0]["resource"]
    assert target["name"] == "cpu"
    assert target["target"] == {"type": "Utilization", "averageUtilization": 60}


def test_pdb_and_topology_spread_toggle() -> None:
    docs = render({})
    pdb = find(docs, "PodDisruptionBudget", API)
    assert pdb["spec"]["maxUnavailable"] == 1
    spread = find(docs, "Deployment", API)["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert spread[0]["topologyKey"] == "kubernetes.io/hostname"
    assert spread[0]["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread[0]["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"

    off = render(
        {"api": {"podDisruptionBudget": {"enabled": False}, "topologySpread": {"enabled": False}}}
    )
    assert not has(off, "PodDisruptionBudget", API)
    assert (
        "topologySpreadConstraints" not in find(off, "Deployment", API)["spec"]["template"]["spec"]
    )


def test_probes_use_healthz_and_readyz() -> None:
    api = container(find(render({}), "Deployment", API), "api")
    assert api["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # A slow start is the startup probe's business, not a liveness restart loop.
    start = api["startupProbe"]
    assert start["periodSeconds"] * start["failureThreshold"] >= 60


def test_runs_imgconv_api_on_the_configured_port() -> None:
    docs = render({"api": {"port": 8123, "processes": 2, "service": {"port": 80}}})
    api = container(find(docs, "Deployment", API), "api")
    assert api["args"][:4] == ["api", "--host=0.0.0.0", "--port=8123", "--workers=2"]
    assert "--proxy-headers" in api["args"]
    assert api["ports"] == [{"name": "http", "containerPort": 8123, "protocol": "TCP"}]
    service = find(docs, "Service", API)
    assert service["spec"]["ports"][0]["port"] == 80
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_no_proxy_headers_without_trusted_proxies() -> None:
    api = container(find(render({"config": {"trustedProxies": []}}), "Deployment", API), "api")
    assert "--proxy-headers" not in api["args"]


def test_migrations_run_before_the_api_process_starts() -> None:
    pod = find(render({}), "Deployment", API)["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["initContainers"]] == ["migrate"]
    assert pod["initContainers"][0]["args"][0] == "migrate"


def test_settings_come_from_the_configmap_and_connections_from_secrets() -> None:
    api = container(find(render({}), "Deployment", API), "api")
    assert api["envFrom"] == [{"configMapRef": {"name": name_of("config")}}]
    env = env_of(api)
    assert env["IMGCONV_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == name_of("secret-key")
    assert env["IMGCONV_DATABASE_URL"]["value"] == (
        f"postgresql+psycopg://imgconv:$(POSTGRES_PASSWORD)@{name_of('postgres')}:5432/imgconv"
    )
    assert (
        env["IMGCONV_REDIS_URL"]["value"] == f"redis://:$(REDIS_PASSWORD)@{name_of('redis')}:6379/0"
    )
    assert env["IMGCONV_BROKER_URL"]["value"] == (
        f"amqp://$(RABBITMQ_USERNAME):$(RABBITMQ_PASSWORD)@{name_of('rabbitmq')}:5672/%2F"
    )


def test_upload_spill_space_is_an_emptydir_of_the_configured_size() -> None:
    pod = find(render({"api": {"tmpSizeLimit": "5Gi"}}), "Deployment", API)["spec"]["template"][
        "spec"
    ]
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["sizeLimit"] == "5Gi"


def test_each_api_process_gets_the_upload_budget() -> None:
    objects = render({"api": {"uploadBudgetBytes": 536870912, "processes": 3}})
    api = container(find(objects, "Deployment", API), "api")
    assert env_of(api)["IMGCONV_UPLOAD_BUDGET_BYTES"]["value"] == "536870912"
    # A /tmp that holds exactly one budget is enough (one byte more fails: test_values.py).
    render({"api": {"tmpSizeLimit": "512Mi", "uploadBudgetBytes": 536870912}})


def test_rollouts_keep_capacity() -> None:
    strategy = find(render({}), "Deployment", API)["spec"]["strategy"]
    assert strategy["rollingUpdate"]["maxUnavailable"] == 0


def test_the_config_map_carries_the_settings() -> None:
    config = find(
        render(
            {
                "config": {
                    "maxFiles": 5,
                    "trustedProxies": ["10.1.0.0/16", "10.2.0.0/16"],
                    "extraEnv": {
                        "IMGCONV_MAX_PIXELS": 80000000,
                        "IMGCONV_CORS_ORIGINS": "https://a",
                    },
                }
            }
        ),
        "ConfigMap",
        name_of("config"),
    )
    data = config["data"]
    assert data["IMGCONV_MAX_FILES"] == "5"
    assert data["IMGCONV_MAX_FILE_BYTES"] == "26214400"
    assert data["IMGCONV_TRUSTED_PROXIES"] == "10.1.0.0/16,10.2.0.0/16"
    assert data["IMGCONV_MAX_PIXELS"] == "80000000"
    assert data["IMGCONV_CORS_ORIGINS"] == "https://a"
    assert data["IMGCONV_MODE"] == "production"
