"""The API's URL paths: its version prefix and a job's resources."""

from __future__ import annotations

import uuid

API_PREFIX = "/api/v1"


def job_path(job_id: uuid.UUID | str) -> str:
    """The path of a job's resource."""
    return f"{API_PREFIX}/jobs/{job_id}"


def with_links(job_json: bytes, job_id: uuid.UUID | str) -> bytes:
    """A job's JSON (as services and the status cache hold it) with its `links` added, last:
    the `Job` the API answers with, without parsing the JSON again."""
    base = job_path(job_id)
    links = f',"links":{{"self":"{base}","result":"{base}/result","source":"{base}/source"}}}}'
    return job_json[:-1] + links.encode()
