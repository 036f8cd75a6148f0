"""Job status polls: the hottest path of the API (ETag/304, long polls, Redis first).

`answer_poll` is the logic; `PollFastPath` serves `GET /api/v1/jobs/{uuid}` straight from ASGI,
skipping FastAPI's routing and dependency machinery, which cost more than the Redis GET itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import parse_qsl

from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from imgconv_api import metrics
from imgconv_api.errors import (
    as_domain_error,
    domain_error_body,
    error_body,
    headers_of,
    status_of,
)
from imgconv_api.paths import API_PREFIX, with_links
from imgconv_api.state import AppState
from imgconv_core import status_cache
from imgconv_core.db import job_store
from imgconv_core.errors import InvalidRequest, JobNotFound, Unauthorized
from imgconv_core.job_ids import job_id_belongs
from imgconv_core.status_cache import CachedJob
from imgconv_core.tokens import verify_token

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PollAnswer:
    status: int
    headers: dict[str, str]
    body: bytes
    outcome: str = "changed"


# Both checks are pure functions of their arguments; a poller repeats the same ones every second.
_verified = lru_cache(maxsize=16384)(verify_token)
_belongs = lru_cache(maxsize=65536)(job_id_belongs)


def client_of(state: AppState, authorization: str | None) -> uuid.UUID:
    """The client id of an `Authorization: Bearer` header, or Unauthorized."""
    if not authorization:
        raise Unauthorized("send 'Authorization: Bearer <token>' (from POST /api/v1/tokens)")
    scheme, _, token = authorization.partition(" ")
    secret = state.services.secret
    client_id = _verified(secret, token.strip()) if scheme.lower() == "bearer" else None
    if client_id is None:
        raise Unauthorized("the bearer token is not valid")
    return client_id


async def read_status(state: AppState, job_id: uuid.UUID) -> CachedJob | None:
    """The job's cached status; on a miss or with Redis down, Postgres answers (and refills)."""
    try:
        raw = await state.redis.get(status_cache.job_key(job_id))
    except (RedisError, OSError):
        state.poll_metrics.read(from_cache=False)
        return await run_in_threadpool(_status_from_db, state, job_id, False)
    if raw is None:
        state.poll_metrics.read(from_cache=False)
        return await run_in_threadpool(_status_from_db, state, job_id, True)
    state.poll_metrics.read(from_cache=True)
    return status_cache.decode_entry(raw if isinstance(raw, bytes) else raw.encode())


def _status_from_db(state: AppState, job_id: uuid.UUID, refill: bool) -> CachedJob | None:
    with state.services.reads() as tx:
        job = job_store.get_job(tx, job_id)
    if job is None:
        if refill:
            # Remember the miss briefly: unknown ids must not cost a query each time.
            with contextlib.suppress(RedisError):
                state.services.redis.set(
                    status_cache.job_key(job_id),
                    status_cache.UNKNOWN,
                    ex=state.settings.unknown_job_cache_seconds,
                    nx=True,
                )
        return None
    entry = job_store.cache_entry(job)
    if refill:
        with contextlib.suppress(RedisError):
            status_cache.write_entry(
                state.services.redis,
                job.id,
                entry,
                job.version,
                state.settings.status_cache_ttl_seconds,
            )
    return status_cache.decode_entry(entry)


async def _wait_for_change(
    state: AppState, job_id: uuid.UUID, baseline: CachedJob, wait: float
) -> CachedJob | None:
    deadline = time.monotonic() + wait
    key = str(job_id)
    while True:
        with state.events.subscribe(key) as changed:
            # Re-read after subscribing, so a change in between is not missed.
            entry = await read_status(state, job_id)
            if entry is None or entry.etag != baseline.etag:
                return entry
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return entry
            # Without pub/sub (Redis down) fall back to re-reading twice a second.
            timeout = remaining if state.events.healthy else min(remaining, 0.5)
            try:
                await asyncio.wait_for(changed.wait(), timeout)
            except TimeoutError:
                if state.events.healthy:
                    return entry


async def answer_poll(
    state: AppState,
    authorization: str | None,
    raw_job_id: str,
    wait: float,
    if_none_match: str | None,
) -> PollAnswer:
    """The answer to `GET /api/v1/jobs/{id}` (raises domain errors for 401/404/422)."""
    client_id = client_of(state, authorization)
    owner = client_id.hex
    try:
        job_id = uuid.UUID(raw_job_id)
    except ValueError:
        raise JobNotFound("no such job") from None
    longest = state.settings.long_poll_max_seconds
    if wait > longest:
        raise InvalidRequest(
            f"wait is at most {longest} seconds",
            details=[{"field": "wait", "message": f"at most {longest}"}],
        )
    if not _belongs(state.services.secret, client_id, job_id):
        raise JobNotFound("no such job")  # random, forged or another client's id: no I/O
    entry = await read_status(state, job_id)
    if entry is None or entry.owner != owner:
        raise JobNotFound("no such job")
    timed_out = False
    if wait > 0 and not entry.terminal and if_none_match in (None, entry.etag):
        baseline = entry
        with state.poll_metrics.long_poll() as waited:
            entry = waited(await _wait_for_change(state, job_id, entry, wait), baseline)
        if entry is None or entry.owner != owner:
            raise JobNotFound("no such job")
        timed_out = entry.etag == baseline.etag
    headers = {"etag": entry.etag, "cache-control": "private, no-cache"}
    if not entry.terminal:
        headers["retry-after"] = str(state.settings.poll_retry_after_seconds)
    if if_none_match == entry.etag:
        return PollAnswer(304, headers, b"", "timeout" if timed_out else "not_modified")
    if entry.terminal:
        await state.poll_metrics.answered_terminal(job_id, entry)
    body = with_links(entry.body, job_id)
    return PollAnswer(200, headers, body, "timeout" if timed_out else "changed")


POLL_ROUTE = f"{API_PREFIX}/jobs/{{job_id}}"
_PREFIX = f"{API_PREFIX}/jobs/"
_UUID_LENGTH = 36
_PLAIN_NUMBER = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")


class PollFastPath:
    """Serves well-formed job polls directly; anything unusual falls through to FastAPI."""

    def __init__(self, app: ASGIApp, get_state: Callable[[], AppState]) -> None:
        self.app = app
        self.get_state = get_state
        self.seconds = {
            status: metrics.REQUEST_SECONDS.labels("GET", POLL_ROUTE, str(status))
            for status in (200, 304, 401, 404)
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or not path.startswith(_PREFIX)
            or len(path) != len(_PREFIX) + _UUID_LENGTH
        ):
            await self.app(scope, receive, send)
            return
        state = self.get_state()
        wait = 0.0
        if scope["query_string"]:
            params = dict(
                parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
            )
            raw_wait = params.pop("wait", "0")
            # Only plain numbers here: anything else is FastAPI's to validate (and refuse).
            wait = float(raw_wait) if _PLAIN_NUMBER.fullmatch(raw_wait) else -1.0
            if params or not 0 <= wait <= state.settings.long_poll_max_seconds:
                await self.app(scope, receive, send)  # FastAPI validates and explains
                return
        start = time.perf_counter()
        authorization = if_none_match = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"if-none-match":
                if_none_match = value.decode("latin-1")
        try:
            answer = await answer_poll(
                state, authorization, path[len(_PREFIX) :], wait, if_none_match
            )
            status, body, outcome = answer.status, answer.body, answer.outcome
            headers = [(k.encode(), v.encode()) for k, v in answer.headers.items()]
        except Exception as exc:  # answered as FastAPI's handlers would
            error = as_domain_error(exc)
            if error is None:
                log.exception("unhandled error on GET %s", path)
                status, headers, outcome = 500, [], "error"
                body = error_body("internal_error", "Something went wrong on our side.")
            else:
                status, body = status_of(error), domain_error_body(error)
                outcome = metrics.poll_error_outcome(error.code)
                headers = [(k.lower().encode(), v.encode()) for k, v in headers_of(error).items()]
        if body:
            headers.append((b"content-type", b"application/json"))
        if status != 304:  # a 304 may only carry the length the 200 would have (RFC 9110 8.6)
            headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        state.poll_metrics.answered(outcome)
        if state.poll_metrics.enabled:
            seconds = self.seconds.get(status) or metrics.REQUEST_SECONDS.labels(
                "GET", POLL_ROUTE, str(status)
            )
            seconds.observe(time.perf_counter() - start)
