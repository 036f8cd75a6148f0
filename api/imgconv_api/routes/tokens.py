"""Anonymous client tokens."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from imgconv_api.deps import StateDep
from imgconv_api.schemas import TokenOut, errors
from imgconv_core.db.job_store import create_client
from imgconv_core.db.session import transaction
from imgconv_core.tokens import issue_token

router = APIRouter(tags=["tokens"])


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
    issued = issue_token(state.services.secret)

    def store() -> None:
        with transaction(state.services.sessions) as tx:
            create_client(tx, issued)

    await run_in_threadpool(store)
    return TokenOut(token=issued.token)
