"""A small HTTP client for the v1 API, as a frontend or script would use it."""

from __future__ import annotations

import time
from typing import Any

import httpx

TERMINAL = {"completed", "failed", "canceled"}


class ApiClient:
    """One anonymous client (its own token) of a running API."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=60)
        if token is None:
            response = self.http.post("/api/v1/tokens")
            assert response.status_code == 201, response.text
            token = response.json()["token"]
        assert token is not None
        self.token = token
        self.http.headers["Authorization"] = f"Bearer {token}"

    def upload(
        self,
        files: list[tuple[str, bytes]],
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> httpx.Response:
        """POST /api/v1/jobs with one `file` part per (name, bytes)."""
        data = {key: str(value) for key, value in fields.items()}
        data.setdefault("format", "png")
        parts = [("file", (name, content, "application/octet-stream")) for name, content in files]
        return self.http.post("/api/v1/jobs", files=parts, data=data, headers=headers)

    def upload_ok(self, files: list[tuple[str, bytes]], **fields: Any) -> list[dict[str, Any]]:
        """Upload and expect 202; returns the jobs."""
        response = self.upload(files, **fields)
        assert response.status_code == 202, response.text
        jobs: list[dict[str, Any]] = response.json()["jobs"]
        return jobs

    def job(self, job_id: str, **params: Any) -> httpx.Response:
        """GET /api/v1/jobs/{id}."""
        return self.http.get(f"/api/v1/jobs/{job_id}", params=params)

    def wait_terminal(self, job_id: str, timeout: float = 60) -> dict[str, Any]:
        """Long-poll until the job is completed, failed or canceled."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.job(job_id, wait=min(10, max(1, int(deadline - time.monotonic()))))
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] in TERMINAL:
                return body
        raise AssertionError(f"job {job_id} did not finish in {timeout} s: {body}")

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()
