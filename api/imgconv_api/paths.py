"""The API's URL paths: its version prefix and a job's resources."""

from __future__ import annotations

import functools
import uuid

API_PREFIX = "/api/v1"


def job_path(job_id: uuid.UUID | str) -> str:
    """The path of a job's resource."""
    return f"{API_PREFIX}/jobs/{job_id}"


def with_links(job_json: bytes, job_id: uuid.UUID | str) -> bytes:
    """A job's JSON (as services and the status cache hold it) with its `links` added, last:
    the `Job` the API answers with, without parsing the JSON again."""
    return job_json[:-1] + _links_member(job_id)


@functools.lru_cache(maxsize=16384)
def _links_member(job_id: uuid.UUID | str) -> bytes:
    """`,"links":{...}}` for a job. Kept for the ids asked about lately: a poller asks for the
    same ids every second, and formatting a UUID is most of the cost."""
    base = job_path(job_id)
    links = f',"links":{{"self":"{base}","result":"{base}/result","source":"{base}/source"}}}}'
    return links.encode()
