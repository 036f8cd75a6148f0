"""The API against its own OpenAPI document: schemathesis, in all its phases (examples,
coverage, fuzzing, stateful: upload, poll, download, cancel, delete, replay), with every check
on, against the real API and a real worker. Zero failures.

`make test` runs it with a fixed seed; `make fuzz` runs it longer with a random one
(IMGCONV_FUZZ_SEED, IMGCONV_FUZZ_MAX_EXAMPLES).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.client import ApiClient
from tests.support.services import (
    BIN,
    REDIS_DB,
    ROOT,
    Stack,
    destroy_stack,
    make_stack,
    running,
    start_api,
    start_worker,
)

HERE = Path(__file__).parent
SEED = os.environ.get("IMGCONV_FUZZ_SEED", "20261201")
MAX_EXAMPLES = int(os.environ.get("IMGCONV_FUZZ_MAX_EXAMPLES", "20"))
# A stateful scenario is a few short requests, and only a good number of them reach the paths
# that need two particular steps in a row (an upload replayed, a deleted job asked for).
STATEFUL_SCENARIOS = max(100, 5 * MAX_EXAMPLES)
UPLOAD = ("POST", "/api/v1/jobs")


@pytest.fixture(scope="module")
def contract_stack(log_dir: Path) -> Iterator[Stack]:
    stack = make_stack(log_dir, redis_db=REDIS_DB + 1)
    yield stack
    destroy_stack(stack)


@pytest.fixture(scope="module")
def contract_api(contract_stack: Stack) -> Iterator[str]:
    proc, url = start_api(
        contract_stack,
        # Long polls are part of the contract, but need not take 30 s each here.
        IMGCONV_LONG_POLL_MAX_SECONDS="1",
        IMGCONV_UPLOAD_RATE_PER_TOKEN="1000000/minute",
    )
    with running(proc), running(start_worker(contract_stack)):
        yield url


def run_config(log_dir: Path) -> Path:
    """schemathesis.toml plus this run's example counts: `--max-examples` on the command line
    would set the stateful phase's too."""
    config = log_dir / "schemathesis.toml"
    config.write_text(
        (HERE / "schemathesis.toml").read_text()
        + f"\n[generation]\nmax-examples = {MAX_EXAMPLES}\n"
        + f"\n[phases.stateful.generation]\nmax-examples = {STATEFUL_SCENARIOS}\n"
    )
    return config


@dataclass(frozen=True)
class Exchange:
    """One request of the stateful phase and its answer, as the report recorded them."""

    method: str
    path: str  # the operation's path template
    job_id: Any  # the `job_id` path parameter, if any (generated ones need not be strings)
    status: int
    body: bytes
    at: float
    link: str | None  # the document's link followed to make it, if any


def read_report(ndjson: Path) -> tuple[str | None, list[Exchange]]:
    """The stateful phase's outcome (None if it never finished) and its answered requests."""
    outcome = None
    exchanges = []
    for line in ndjson.read_text().splitlines():
        event = json.loads(line)
        if "PhaseFinished" in event and event["PhaseFinished"]["phase"]["name"] == "stateful":
            outcome = event["PhaseFinished"]["status"]
        scenario = event.get("ScenarioFinished")
        if scenario is None or scenario["phase"] != "stateful":
            continue
        recorder = scenario["recorder"]
        for case_id, interaction in recorder.get("interactions", {}).items():
            response = interaction.get("response")
            if response is None:  # a network error: nothing was answered
                continue
            recorded = recorder["cases"][case_id]
            case = recorded["value"]
            transition = recorded.get("transition") or {}
            content = response.get("content") or {}
            exchanges.append(
                Exchange(
                    method=case["method"],
                    path=case["path"],
                    job_id=(case.get("path_parameters") or {}).get("job_id"),
                    status=response["status_code"],
                    body=base64.b64decode(content.get("$base64", "")),
                    at=interaction["timestamp"],
                    # "POST /api/v1/jobs -> [202] Replay -> POST /api/v1/jobs"
                    link=transition["id"].split(" -> ")[1] if transition.get("id") else None,
                )
            )
    return outcome, sorted(exchanges, key=lambda exchange: exchange.at)


def job_ids(upload: Exchange) -> tuple[str, ...]:
    """The ids of the jobs an accepted upload answered."""
    return tuple(job["id"] for job in json.loads(upload.body)["jobs"])


def replays(exchanges: list[Exchange]) -> list[Exchange]:
    """Uploads sent by the `Replay` link that answered exactly the jobs of an earlier one."""
    seen: set[tuple[str, ...]] = set()
    found = []
    for exchange in exchanges:
        if (exchange.method, exchange.path) == UPLOAD and exchange.status == 202:
            ids = job_ids(exchange)
            if ids in seen and exchange.link == "[202] Replay":
                found.append(exchange)
            seen.add(ids)
    return found


def after_delete(exchanges: list[Exchange]) -> list[Exchange]:
    """Requests about a job made after a DELETE of it was answered 204."""
    deleted = set()
    found = []
    for exchange in exchanges:
        if exchange.job_id is None or not isinstance(exchange.job_id, str):
            continue
        if exchange.job_id in deleted:
            found.append(exchange)
        elif exchange.method == "DELETE" and exchange.status == 204:
            deleted.add(exchange.job_id)
    return found


def test_the_api_keeps_its_openapi_contract(contract_api: str, log_dir: Path) -> None:
    token = ApiClient(contract_api).token
    log = log_dir / f"schemathesis-{SEED}.log"
    ndjson = log_dir / f"schemathesis-{SEED}.ndjson"
    with log.open("w") as out:
        result = subprocess.run(
            [
                str(BIN / "schemathesis"),
                "--config-file",
                str(run_config(log_dir)),
                "--no-color",
                "run",
                f"{contract_api}/openapi.json",
                "--checks",
                "all",
                "--seed",
                SEED,
                "--workers",
                "1",
                "--request-timeout",
                "30",
                "--output-truncate",
                "true",
                "--report",
                "ndjson",
                "--report-ndjson-path",
                str(ndjson),
                "--header",
                f"Authorization: Bearer {token}",
                *os.environ.get("IMGCONV_FUZZ_EXTRA", "").split(),
            ],
            cwd=log_dir,  # its crash cache goes there, not into the checkout
            env={
                **os.environ,
                "PYTHONPATH": str(ROOT),
                "SCHEMATHESIS_HOOKS": "tests.integration.contract_hooks",
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=1800,
            check=False,
        )
    output = log.read_text(errors="replace")
    # The report's own summary and failures (request bodies hold binary images: cut short).
    summary = "\n".join(line[:300] for line in output.splitlines())
    assert result.returncode == 0, f"{log}:\n{summary[-15000:]}"

    # Exit code 0 would also hide a stateful phase that never ran or never got far.
    outcome, exchanges = read_report(ndjson)
    assert outcome == "success", f"the stateful phase: {outcome} ({ndjson})"
    uploads = [e for e in exchanges if (e.method, e.path) == UPLOAD]
    assert replays(exchanges), (
        "no upload was replayed with its Idempotency-Key and answered its first jobs: "
        f"{len(uploads)} uploads, statuses {sorted(e.status for e in uploads)} ({ndjson})"
    )
    gone = after_delete(exchanges)
    assert any(e.status in (404, 410) for e in gone), f"no request for a deleted job ({ndjson})"
    # Once deleted, a job stays deleted: 404 for the job, 410 for its images.
    assert all(e.status >= 400 for e in gone), [(e.method, e.path, e.status) for e in gone]
