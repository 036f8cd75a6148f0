"""Write the dashboards' JSON and the alert rule file from their code, and the Helm chart's
copies of them (`--check`: only say whether the committed files are up to date, exit 1 if not)."""

from __future__ import annotations

import sys
from pathlib import Path

from observability import alerts, dashboards

ROOT = Path(__file__).resolve().parent
DASHBOARD_DIR = ROOT / "dashboards"
RULE_FILE = ROOT / "alerts" / "imgconv-alerts.yaml"
# Helm's .Files reads only inside the chart: the chart gets copies, written from the same code.
CHART_FILES = ROOT.parent / "charts" / "imgconv" / "files"
CHART_DASHBOARD_DIR = CHART_FILES / "dashboards"
CHART_RULE_FILE = CHART_FILES / "alerts" / "imgconv-alerts.yaml"


def generated() -> dict[Path, str]:
    """Every generated file and its content."""
    files: dict[Path, str] = {}
    for uid in dashboards.DASHBOARDS:
        text = dashboards.render(uid)
        files[DASHBOARD_DIR / f"{uid}.json"] = text
        files[CHART_DASHBOARD_DIR / f"{uid}.json"] = text
    rules = alerts.render()
    files[RULE_FILE] = rules
    files[CHART_RULE_FILE] = rules
    return files


def main(argv: list[str]) -> int:
    """Write (or with --check, compare) the generated files."""
    stale = [
        path for path, text in generated().items() if not path.is_file() or path.read_text() != text
    ]
    if "--check" in argv:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT.parent)} (run `python -m observability`)")
        return 1 if stale else 0
    for path, text in generated().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
