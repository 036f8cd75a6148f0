"""Anonymous client tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from imgconv_api.deps import StateDep
from imgconv_api.paths import API_PREFIX
from imgconv_api.schemas import TokenOut, errors
from imgconv_core import services

# The prefix belongs to the router, so a route's own path is its whole template (metrics labels).
router = APIRouter(prefix=API_PREFIX, tags=["tokens"])


@router.post(
    "/tokens",
    status_code=201,
    operation_id="createToken",
    response_model=TokenOut,
    responses=errors(429),
)
async def create_token(request: Request, state: StateDep) -> TokenOut:
    """A new anonymous client token; send it as `Authorization: Bearer <token>`."""
    limits = state.rate_limits
    await limits.hit(limits.token_per_ip, "tokens-ip", limits.client_ip(request))
    token = await run_in_threadpool(services.issue_token, state.services)
    return TokenOut(token=token)
