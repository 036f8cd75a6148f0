"""Migrations before new code serves, without hooks that deadlock `--wait`; the helm test pod."""

from __future__ import annotations

from tests.chart.objects import container, env_of, find, kinds, name_of
from tests.support.helm import CHART, render


def test_the_migration_job_is_a_plain_resource_named_per_revision() -> None:
    docs = render({})
    (job,) = kinds(docs, "Job")
    assert job["metadata"]["name"] == f"{name_of('migrations')}-r1"
    # Not a hook: helm creates it with everything else, so --wait never waits on it first.
    assert "helm.sh/hook" not in (job["metadata"].get("annotations") or {})
    migrate = container(job, "migrate")
    assert migrate["args"] == ["migrate", "--wait-seconds", "120"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    assert kinds(render({"migrations": {"job": {"enabled": False}}}), "Job") == []


def test_every_pod_using_the_schema_migrates_first_with_the_same_settings() -> None:
    docs = render({"migrations": {"waitSeconds": 30}})
    for component in ("api", "worker"):
        deployment = find(docs, "Deployment", name_of(component))
        init = container(deployment, "migrate")
        main = container(deployment, component)
        assert init["args"] == ["migrate", "--wait-seconds", "30"]
        assert init["image"] == main["image"]
        assert init["envFrom"] == main["envFrom"]
        main_env = env_of(main)
        for name, entry in env_of(init).items():
            assert main_env[name] == entry


def test_no_template_is_a_hook_except_the_helm_test() -> None:
    for doc in render({}):
        hook = (doc["metadata"].get("annotations") or {}).get("helm.sh/hook")
        if hook is not None:
            assert hook == "test", doc["metadata"]["name"]


def test_the_helm_test_pod_converts_through_the_api_service() -> None:
    docs = render({})
    pod = find(docs, "Pod", f"{name_of('test')}-convert")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    convert = container(pod, "convert")
    assert convert["command"] == ["python", "/helm-test/convert_one.py"]
    assert env_of(convert)["IMGCONV_TEST_API_URL"]["value"] == f"http://{name_of('api')}:8000"
    script = find(docs, "ConfigMap", f"{name_of('test')}-script")
    assert script["data"]["convert_one.py"] == (CHART / "files" / "convert_one.py").read_text()
    assert pod["spec"]["restartPolicy"] == "Never"
