"""The API against its own OpenAPI document: schemathesis, in all its phases (examples,
coverage, fuzzing, stateful: upload, poll, download, cancel, delete, replay), with every check
on, against the real API and a real worker. Zero failures.

`make test` runs it with a fixed seed; `make fuzz` runs it longer with a random one
(IMGCONV_FUZZ_SEED, IMGCONV_FUZZ_MAX_EXAMPLES).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

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
MAX_EXAMPLES = os.environ.get("IMGCONV_FUZZ_MAX_EXAMPLES", "20")


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


def test_the_api_keeps_its_openapi_contract(contract_api: str, log_dir: Path) -> None:
    token = ApiClient(contract_api).token
    report = log_dir / f"schemathesis-{SEED}.log"
    with report.open("w") as out:
        result = subprocess.run(
            [
                str(BIN / "schemathesis"),
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "--no-color",
                "run",
                f"{contract_api}/openapi.json",
                "--checks",
                "all",
                "--seed",
                SEED,
                "--max-examples",
                MAX_EXAMPLES,
                "--workers",
                "1",
                "--request-timeout",
                "30",
                "--output-truncate",
                "true",
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
    output = report.read_text(errors="replace")
    # The report's own summary and failures (request bodies hold binary images: cut short).
    summary = "\n".join(line[:300] for line in output.splitlines())
    assert result.returncode == 0, f"{report}:\n{summary[-15000:]}"
