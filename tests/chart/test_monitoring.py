"""Issue 11 in the chart: ServiceMonitors (API, operator), a PodMonitor (workers) and the
PrometheusRule behind monitoring.enabled, with the Prometheus' selector labels; the dashboards
as ConfigMaps for Grafana's sidecar; scrape jobs named with "imgconv"; the broker's management
URL, the API's multiprocess directory and the OTEL_* variables of traces."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from observability import alerts, dashboards
from tests.chart.objects import Obj, container, env_of, find, kinds, name_of, pod_template
from tests.chart.scenarios import EXTERNAL_SERVICES
from tests.support.helm import render

ON: dict[str, Any] = {"monitoring": {"enabled": True}}
MONITOR_KINDS = ("ServiceMonitor", "PodMonitor", "PrometheusRule")
# What the ImgconvTargetDown rule selects (observability/alerts.py).
TARGET_DOWN_JOBS = re.compile(r".*imgconv.*")


def monitors(docs: list[Obj]) -> list[Obj]:
    return [d for d in docs if d["kind"] in ("ServiceMonitor", "PodMonitor")]


def endpoints(monitor: Obj) -> list[Obj]:
    spec = monitor["spec"]
    found: list[Obj] = spec.get("endpoints") or spec["podMetricsEndpoints"]
    return found


def job_of(endpoint: Obj) -> str:
    """The job label Prometheus gives the endpoint's targets: the relabeling that sets it."""
    (rule,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "job"]
    assert rule["action"] == "replace"
    assert "sourceLabels" not in rule
    return str(rule["replacement"])


def dashboard_configmaps(docs: list[Obj]) -> list[Obj]:
    return [
        d
        for d in kinds(docs, "ConfigMap")
        if d["metadata"]["labels"]["app.kubernetes.io/component"] == "dashboards"
    ]


def test_off_by_default() -> None:
    docs = render({})
    assert not [d for d in docs if d["kind"] in MONITOR_KINDS]
    assert dashboard_configmaps(docs) == []


def test_the_api_and_the_operator_through_their_services_the_workers_through_their_pods() -> None:
    docs = render(ON)
    api = find(docs, "ServiceMonitor", name_of("api"))
    service = find(docs, "Service", name_of("api"))
    assert api["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    # The selector picks that Service only (not the frontend's or a data service's).
    selected = [
        s
        for s in kinds(docs, "Service")
        if api["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert selected == [service]
    assert [e["port"] for e in endpoints(api)] == [service["spec"]["ports"][0]["name"]]

    operator = find(docs, "ServiceMonitor", name_of("operator"))
    metrics = find(docs, "Service", f"{name_of('operator')}-metrics")
    assert (
        operator["spec"]["selector"]["matchLabels"].items() <= metrics["metadata"]["labels"].items()
    )
    assert [e["port"] for e in endpoints(operator)] == ["metrics"]
    assert "metrics" in [p["name"] for p in metrics["spec"]["ports"]]

    workers = find(docs, "PodMonitor", name_of("worker"))
    deployment = find(docs, "Deployment", name_of("worker"))
    labels = pod_template(deployment)["metadata"]["labels"]
    assert workers["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = endpoints(workers)
    worker = container(deployment, "worker")
    assert endpoint["port"] in [p["name"] for p in worker["ports"]]
    for monitor in monitors(docs):
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["imgconv"]}
        for e in endpoints(monitor):
            assert e["path"] == "/metrics"


def test_no_operator_no_operator_monitor() -> None:
    docs = render({**ON, "operator": {"enabled": False}})
    names = sorted(m["metadata"]["name"] for m in monitors(docs))
    assert names == [name_of("api"), name_of("worker")]


@pytest.mark.parametrize(
    ("release", "values"),
    [
        ("imgconv", {}),
        ("prod", {}),
        ("prod", {"fullnameOverride": "media"}),
        ("web", {"nameOverride": "convert"}),
    ],
    ids=["chart-name", "other-release", "fullname-override", "name-override"],
)
def test_every_scrape_job_matches_the_target_down_rule(release: str, values: Obj) -> None:
    docs = render({**ON, **values}, release=release)
    jobs = [job_of(e) for m in monitors(docs) for e in endpoints(m)]
    assert len(jobs) == 3
    assert len(set(jobs)) == 3  # one job per component: the rule says which one is down
    for job in jobs:
        assert TARGET_DOWN_JOBS.fullmatch(job), job
    (rule,) = [r for r in alerts.rules() if r["alert"] == "ImgconvTargetDown"]
    assert 'up{job=~".*imgconv.*"}' in rule["expr"]  # what the pattern above stands for


def test_extra_labels_for_the_prometheus_selectors_and_the_scrape_timing() -> None:
    values = {
        "monitoring": {
            "enabled": True,
            "additionalLabels": {"release": "monitoring"},
            "interval": "15s",
            "scrapeTimeout": "5s",
        }
    }
    docs = render(values)
    for doc in (d for d in docs if d["kind"] in MONITOR_KINDS):
        assert doc["metadata"]["labels"]["release"] == "monitoring"
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "imgconv"
    for monitor in monitors(docs):
        # ...on the monitors, never in what they select.
        assert "release" not in monitor["spec"]["selector"]["matchLabels"]
        for e in endpoints(monitor):
            assert (e["interval"], e["scrapeTimeout"]) == ("15s", "5s")
    untimed = render({"monitoring": {"enabled": True, "interval": "", "scrapeTimeout": ""}})
    for monitor in monitors(untimed):
        assert not {"interval", "scrapeTimeout"} & set(endpoints(monitor)[0])


def test_the_rule_holds_exactly_the_generated_alert_rules() -> None:
    (rule,) = kinds(render(ON), "PrometheusRule")
    source = yaml.safe_load(alerts.render())
    assert rule["spec"]["groups"] == source["groups"]
    (group,) = rule["spec"]["groups"]
    assert group["rules"] == alerts.rules()  # every expression, duration, label, annotation
    assert {r["alert"] for r in group["rules"]} >= {"ImgconvTargetDown", "ImgconvQueueWaitHigh"}
    off = render({"monitoring": {"enabled": True, "prometheusRule": {"enabled": False}}})
    assert kinds(off, "PrometheusRule") == []


def test_each_dashboard_is_a_configmap_with_the_generated_panels_and_queries() -> None:
    docs = render(ON)
    maps = dashboard_configmaps(docs)
    shown = {}
    for configmap in maps:
        assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
        ((key, text),) = configmap["data"].items()
        shown[key.removesuffix(".json")] = text
    assert sorted(shown) == sorted(dashboards.DASHBOARDS)
    for uid, text in shown.items():
        generated = dashboards.render(uid)
        assert json.loads(text) == json.loads(generated), uid
        queries = dashboards.queries(text)
        assert queries == dashboards.queries(generated)
        assert len(queries) >= 4, uid
        assert len(text.encode()) < 1024 * 1024  # a ConfigMap's limit


def test_dashboard_label_namespace_and_annotations_are_configurable() -> None:
    values = {
        "monitoring": {
            "enabled": True,
            "dashboards": {
                "label": "grafana.example/dashboard",
                "labelValue": "imgconv",
                "namespace": "monitoring",
                "annotations": {"grafana_folder": "imgconv"},
            },
        }
    }
    maps = dashboard_configmaps(render(values))
    assert len(maps) == len(dashboards.DASHBOARDS)
    for configmap in maps:
        meta = configmap["metadata"]
        assert meta["labels"]["grafana.example/dashboard"] == "imgconv"
        assert "grafana_dashboard" not in meta["labels"]
        assert meta["namespace"] == "monitoring"
        assert meta["annotations"] == {"grafana_folder": "imgconv"}
    off = render({"monitoring": {"enabled": True, "dashboards": {"enabled": False}}})
    assert dashboard_configmaps(off) == []


def test_the_api_reads_unacked_messages_from_the_charts_rabbitmq_management_api() -> None:
    docs = render({})
    config = find(docs, "ConfigMap", name_of("config"))["data"]
    url = config["IMGCONV_BROKER_MANAGEMENT_URL"]
    service = find(docs, "Service", name_of("rabbitmq"))
    management = next(p for p in service["spec"]["ports"] if p["name"] == "management")
    assert url == f"http://{service['metadata']['name']}:{management['port']}"
    off = render({"metrics": {"brokerManagement": False}})
    assert "IMGCONV_BROKER_MANAGEMENT_URL" not in find(off, "ConfigMap", name_of("config"))["data"]


def test_an_external_broker_gives_its_management_url_or_none() -> None:
    docs = render({**EXTERNAL_SERVICES, "operator": {"enabled": False}})
    config = find(docs, "ConfigMap", name_of("config"))["data"]
    assert config["IMGCONV_BROKER_MANAGEMENT_URL"] == "http://mq.example:15672"
    bare = {"rabbitmq": {"enabled": False, "external": {"url": "amqp://a:b@mq:5672/%2F"}}}
    docs = render({**bare, "operator": {"enabled": False}})
    assert "IMGCONV_BROKER_MANAGEMENT_URL" not in find(docs, "ConfigMap", name_of("config"))["data"]


def test_several_api_processes_share_a_multiprocess_directory() -> None:
    single = container(find(render({}), "Deployment", name_of("api")), "api")
    assert "PROMETHEUS_MULTIPROC_DIR" not in env_of(single)
    docs = render({"api": {"processes": 3}})
    deployment = find(docs, "Deployment", name_of("api"))
    api = container(deployment, "api")
    assert "--workers=3" in api["args"]
    directory = env_of(api)["PROMETHEUS_MULTIPROC_DIR"]["value"]
    (mount,) = [m for m in api["volumeMounts"] if m["mountPath"] == directory]
    volumes = {v["name"]: v for v in pod_template(deployment)["spec"]["volumes"]}
    assert "emptyDir" in volumes[mount["name"]]  # writable under the read-only root
    assert not mount.get("readOnly")
    # The migrate init container never serves metrics.
    assert "PROMETHEUS_MULTIPROC_DIR" not in env_of(container(deployment, "migrate"))


def otel_env(docs: list[Obj]) -> dict[str, dict[str, Obj]]:
    """container -> its OTEL_* env, over every pod."""
    found = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "StatefulSet", "Job", "Pod"):
            continue
        spec = pod_template(doc)["spec"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            found[f"{doc['metadata']['name']}/{c['name']}"] = {
                name: e for name, e in env_of(c).items() if name.startswith("OTEL_")
            }
    return found


def test_tracing_is_off_by_default() -> None:
    assert all(env == {} for env in otel_env(render({})).values())


def test_tracing_gives_the_api_and_the_workers_the_otel_variables() -> None:
    values = {
        "tracing": {
            "enabled": True,
            "endpoint": "http://otel-collector.observability:4318",
            "sampler": "parentbased_traceidratio",
            "samplerArg": "0.1",
            "resourceAttributes": {"deployment.environment": "production"},
            "extraEnv": {"OTEL_BSP_MAX_QUEUE_SIZE": 4096},
        }
    }
    found = otel_env(render(values))
    traced = {name for name, env in found.items() if env}
    assert traced == {f"{name_of('api')}/api", f"{name_of('worker')}/worker"}
    for name in traced:
        env = found[name]
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"] == (
            "http://otel-collector.observability:4318"
        )
        assert env["OTEL_TRACES_SAMPLER"]["value"] == "parentbased_traceidratio"
        assert env["OTEL_TRACES_SAMPLER_ARG"]["value"] == "0.1"
        assert env["OTEL_BSP_MAX_QUEUE_SIZE"]["value"] == "4096"
        attributes = env["OTEL_RESOURCE_ATTRIBUTES"]["value"].split(",")
        assert attributes == [
            "k8s.namespace.name=imgconv",
            "k8s.pod.name=$(OTEL_POD_NAME)",
            "deployment.environment=production",
        ]
        assert env["OTEL_POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        # The service names stay the code's own (imgconv-api, imgconv-worker).
        assert "OTEL_SERVICE_NAME" not in env


def test_tracing_leaves_the_sampler_to_the_sdk_unless_given() -> None:
    values = {"tracing": {"enabled": True, "endpoint": "http://collector:4318"}}
    env = otel_env(render(values))[f"{name_of('api')}/api"]
    assert set(env) == {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_POD_NAME", "OTEL_RESOURCE_ATTRIBUTES"}
