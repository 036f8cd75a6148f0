"""Dashboards and alert rules as code: the committed files are exactly what the code makes,
the rules load in promtool and pass their unit tests, the dashboards show what the issue asks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard

from observability import __main__ as generate
from observability import alerts, dashboards
from tests.support.observability import tool

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "observability/alerts/imgconv-alerts.yaml"
RULE_TESTS = ROOT / "observability/alerts/tests/imgconv-alerts.test.yaml"


@pytest.mark.parametrize(
    "path", sorted(generate.generated()), ids=lambda p: str(p.relative_to(ROOT))
)
def test_committed_file_is_what_the_code_generates(path: Path) -> None:
    assert path.is_file(), f"{path} is missing: run `python -m observability`"
    assert path.read_text() == generate.generated()[path], (
        f"{path.name} differs from its code: run `python -m observability` and commit"
    )


def test_the_helm_chart_gets_a_generated_copy_of_every_dashboard_and_the_rules() -> None:
    """Helm's .Files cannot read outside the chart: the copies the chart templates read are
    generated files too, so the test above keeps them equal to the code."""
    chart_files = ROOT / "charts/imgconv/files"
    generated = {path.relative_to(ROOT) for path in generate.generated()}
    for uid in dashboards.DASHBOARDS:
        assert (chart_files / f"dashboards/{uid}.json").relative_to(ROOT) in generated, uid
    assert (chart_files / "alerts/imgconv-alerts.yaml").relative_to(ROOT) in generated


def test_rules_load_in_promtool() -> None:
    result = subprocess.run(
        [tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(alerts.rules())} rules found" in result.stdout


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    result = subprocess.run(
        [tool("promtool"), "test", "rules", str(RULE_TESTS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    for rule in alerts.rules():
        checks = [
            check
            for case in cases
            for check in case["alert_rule_test"]
            if check["alertname"] == rule["alert"]
        ]
        assert any(check["exp_alerts"] for check in checks), f"{rule['alert']}: no firing case"
        assert any(not check["exp_alerts"] for check in checks), f"{rule['alert']}: no quiet case"


@pytest.mark.parametrize("uid", sorted(dashboards.DASHBOARDS))
def test_dashboard_json_is_a_grafana_dashboard(uid: str) -> None:
    text = (ROOT / f"observability/dashboards/{uid}.json").read_text()
    model = Dashboard.from_json(json.loads(text))
    assert model.uid == uid
    ids = [panel["id"] for panel in json.loads(text)["panels"]]
    assert len(ids) == len(set(ids))
    for title, expr in dashboards.queries(text):
        assert "${datasource}" not in expr, title
    for panel in json.loads(text)["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def _titles(uid: str) -> set[str]:
    text = dashboards.render(uid)
    return {panel["title"] for panel in json.loads(text)["panels"]}


def test_overview_shows_what_users_watch() -> None:
    titles = _titles("imgconv-overview")
    for wanted in (
        "Poll rate by outcome",
        "Polls per active job",
        "Latency by phase, p95",
        "Result discovery (terminal to first poll that saw it)",
        "Backlog",
        "Queue wait p95 by target format",
        "Jobs ended by target format and outcome",
        "Failure ratio by code",
        "Worker processes",
        "Replicas",
    ):
        assert wanted in titles


def test_autoscaling_shows_the_operators_work() -> None:
    titles = _titles("imgconv-autoscaling")
    for wanted in (
        "Backlog against replicas",
        "Decisions by reason",
        "Busy worker pods",
        "Scale events",
    ):
        assert wanted in titles
