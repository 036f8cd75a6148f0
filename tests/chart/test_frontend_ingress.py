"""The web UI and the way in: the frontend Deployment/Service, the portable Ingress (/api to the
API, / to the web UI) and the optional Gateway API HTTPRoute."""

from __future__ import annotations

from tests.chart.objects import container, env_of, find, has, kinds, name_of
from tests.support.helm import CHART, helm, render

FRONTEND = name_of("frontend")


def test_frontend_serves_on_its_port_and_forwards_api_to_the_api_service() -> None:
    docs = render({"frontend": {"port": 3100, "replicas": 2}})
    deployment = find(docs, "Deployment", FRONTEND)
    assert deployment["spec"]["replicas"] == 2
    web = container(deployment, "frontend")
    env = env_of(web)
    assert env["PORT"]["value"] == "3100"
    assert env["HOSTNAME"]["value"] == "0.0.0.0"  # not the pod name Kubernetes sets
    assert env["IMGCONV_API_URL"]["value"] == f"http://{name_of('api')}:8000"
    assert web["ports"][0]["containerPort"] == 3100
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert web[probe]["httpGet"]["port"] == "http"
    assert find(docs, "Service", FRONTEND)["spec"]["ports"][0]["targetPort"] == "http"
    assert find(docs, "PodDisruptionBudget", FRONTEND)


def test_the_api_url_can_be_given() -> None:
    web = container(
        find(render({"frontend": {"apiUrl": "http://127.0.0.1:8111"}}), "Deployment", FRONTEND),
        "frontend",
    )
    assert env_of(web)["IMGCONV_API_URL"]["value"] == "http://127.0.0.1:8111"


def test_ingress_routes_api_to_the_api_and_the_rest_to_the_frontend() -> None:
    ingress = find(render({}), "Ingress")
    spec = ingress["spec"]
    assert "ingressClassName" not in spec  # the cluster's default class
    assert "annotations" not in ingress["metadata"]  # nothing controller-specific
    assert "tls" not in spec
    (rule,) = spec["rules"]
    assert "host" not in rule
    paths = {(p["path"], p["pathType"]): p["backend"]["service"] for p in rule["http"]["paths"]}
    assert paths == {
        ("/api", "Prefix"): {"name": name_of("api"), "port": {"name": "http"}},
        ("/", "Prefix"): {"name": FRONTEND, "port": {"name": "http"}},
    }


def test_ingress_class_host_annotations_and_tls() -> None:
    values = {
        "ingress": {
            "className": "haproxy",
            "host": "img.example.com",
            "annotations": {"haproxy.org/timeout-server": "600s"},
            "tls": {"enabled": True, "secretName": "img-tls"},
        }
    }
    ingress = find(render(values), "Ingress")
    assert ingress["spec"]["ingressClassName"] == "haproxy"
    assert ingress["metadata"]["annotations"] == {"haproxy.org/timeout-server": "600s"}
    assert ingress["spec"]["tls"] == [{"hosts": ["img.example.com"], "secretName": "img-tls"}]
    assert ingress["spec"]["rules"][0]["host"] == "img.example.com"


def test_without_the_frontend_only_api_is_routed() -> None:
    docs = render({"frontend": {"enabled": False}})
    assert not has(docs, "Deployment", FRONTEND)
    assert not has(docs, "Service", FRONTEND)
    paths = find(docs, "Ingress")["spec"]["rules"][0]["http"]["paths"]
    assert [p["path"] for p in paths] == ["/api"]


def test_ingress_off() -> None:
    assert kinds(render({"ingress": {"enabled": False}}), "Ingress") == []


def test_httproute_has_the_same_routes() -> None:
    docs = render(
        {
            "httpRoute": {
                "enabled": True,
                "parentRefs": [{"name": "eg", "namespace": "gw", "sectionName": "http"}],
                "hostnames": ["img.example.com"],
            }
        }
    )
    route = find(docs, "HTTPRoute")
    assert route["spec"]["parentRefs"] == [{"name": "eg", "namespace": "gw", "sectionName": "http"}]
    assert route["spec"]["hostnames"] == ["img.example.com"]
    routes = {r["matches"][0]["path"]["value"]: r["backendRefs"][0] for r in route["spec"]["rules"]}
    assert routes == {
        "/api": {"name": name_of("api"), "port": 8000},
        "/": {"name": FRONTEND, "port": 3000},
    }
    assert "timeouts" not in route["spec"]["rules"][0]
    assert kinds(render({}), "HTTPRoute") == []


def test_httproute_api_timeouts_for_long_polls_and_uploads() -> None:
    values = {
        "httpRoute": {
            "enabled": True,
            "parentRefs": [{"name": "eg"}],
            "apiTimeouts": {"request": "600s"},
        }
    }
    api_rule, ui_rule = find(render(values), "HTTPRoute")["spec"]["rules"]
    assert api_rule["timeouts"] == {"request": "600s"}
    assert "timeouts" not in ui_rule


def test_notes_print_the_url_and_the_next_commands() -> None:
    def notes(*args: str) -> str:
        done = helm("install", "--dry-run=client", "r", str(CHART), "-n", "media", *args)
        return done.stdout[done.stdout.index("NOTES:") :]

    hosted = notes("--set", "ingress.host=img.example.com")
    assert "http://img.example.com/" in hosted
    assert "helm test r -n media --logs" in hosted
    assert "kubectl -n media get workerautoscalers -w" in hosted
    tls = notes(
        "--set", "ingress.host=img.example.com",
        "--set", "ingress.tls.enabled=true", "--set", "ingress.tls.secretName=t",
    )  # fmt: skip
    assert "https://img.example.com/" in tls
    forwarded = notes("--set", "ingress.enabled=false", "--set", "operator.enabled=false")
    assert "kubectl -n media port-forward svc/r-imgconv-frontend 3000" in forwarded
    assert "workerautoscalers" not in forwarded
