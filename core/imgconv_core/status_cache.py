"""Job status in Redis: what polls are answered from, and the pub/sub that wakes long polls.

An entry is `<owner hex>|<version>|<terminal 0/1>|<job JSON>` so the API answers a poll with one
GET and no JSON round trip (the API adds the job's links). A write only lands if its version is
newer than the cached one, so a slow writer never overwrites a newer status. An unknown id is
cached as `-` for a short while; a deleted job leaves `~`, which no write replaces, so a worker's
late write cannot bring a deleted job back.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import redis
from redis.commands.core import Script

from imgconv_core.jobs import JobView

JOB_EVENTS_CHANNEL = "imgconv:job-events"
UNKNOWN = b"-"
DELETED = b"~"

# KEYS[1] entry key; ARGV: entry, version, ttl, channel, job id
WRITE_IF_NEWER = """
local cur = redis.call('GET', KEYS[1])
if cur == '~' then return 0 end
if cur and cur ~= '-' then
  local v = tonumber(string.match(cur, '^[^|]*|(%d+)|'))
  if v and v >= tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""


def job_key(job_id: uuid.UUID | str) -> str:
    """The Redis key of a job's cached status."""
    # v2: entries without links (the API adds them).
    return f"imgconv:job:v2:{job_id}"


@dataclass(frozen=True)
class CachedJob:
    owner: str
    version: int
    terminal: bool
    body: bytes

    @property
    def etag(self) -> str:
        """The HTTP entity tag of this job state."""
        return f'"{self.version}"'


def encode_entry(owner: uuid.UUID, view: JobView, version: int) -> bytes:
    """Serialize a job for the cache (the JSON part is exactly the API's response body)."""
    head = f"{owner.hex}|{version}|{int(view.status.is_terminal)}|".encode()
    return head + view.model_dump_json().encode()


def entry_body(entry: bytes) -> bytes:
    """The job JSON of an encoded entry."""
    return entry.split(b"|", 3)[3]


def decode_entry(raw: bytes) -> CachedJob | None:
    """Parse a cache entry; None for the unknown-id and deleted-job markers."""
    if raw in (UNKNOWN, DELETED):
        return None
    owner, version, terminal, body = raw.split(b"|", 3)
    return CachedJob(owner.decode(), int(version), terminal == b"1", body)


@functools.lru_cache(maxsize=32)
def _write_script(client: redis.Redis) -> Script:
    # A Script runs by its SHA (EVALSHA) and loads itself once per server.
    return client.register_script(WRITE_IF_NEWER)


def write_entry(
    client: redis.Redis, job_id: uuid.UUID, entry: bytes, version: int, ttl: int
) -> bool:
    """Write an encoded entry unless the cache already holds this version or a newer one."""
    result = _write_script(client)(
        keys=[job_key(job_id)], args=[entry, version, ttl, JOB_EVENTS_CHANNEL, str(job_id)]
    )
    return bool(result)


def write_entries(
    client: redis.Redis, entries: Sequence[tuple[uuid.UUID, bytes, int]], ttl: int
) -> None:
    """Write many encoded (job id, entry, version) in one round trip, each only if newer."""
    script = _write_script(client)
    pipe = client.pipeline(transaction=False)
    for job_id, entry, version in entries:
        script(
            keys=[job_key(job_id)],
            args=[entry, version, ttl, JOB_EVENTS_CHANNEL, str(job_id)],
            client=pipe,
        )
    pipe.execute()


def forget_jobs(client: redis.Redis, job_ids: Sequence[uuid.UUID], ttl: int) -> None:
    """Mark deleted jobs as such for `ttl` seconds and wake their long polls, in one round trip."""
    if not job_ids:
        return
    pipe = client.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.set(job_key(job_id), DELETED, ex=ttl)
        pipe.publish(JOB_EVENTS_CHANNEL, str(job_id))
    pipe.execute()
