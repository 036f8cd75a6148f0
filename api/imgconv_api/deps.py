"""Request dependencies as `Annotated` aliases, so route signatures stay short."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from imgconv_api.polling import client_of
from imgconv_api.state import AppState
from imgconv_core.services import ServiceContext

# Documents the bearer scheme in OpenAPI; `authenticate` does the checking (our 401 shape).
bearer = HTTPBearer(auto_error=False, description="a token from POST /api/v1/tokens")


async def get_state(request: Request) -> AppState:
    """The process's AppState (set up in the lifespan); async, so it never costs a thread hop."""
    state: AppState = request.app.state.imgconv
    return state


async def get_services(state: Annotated[AppState, Depends(get_state)]) -> ServiceContext:
    """The core services' context."""
    return state.services


async def authenticate(
    request: Request,
    state: Annotated[AppState, Depends(get_state)],
    _scheme: Annotated[object, Depends(bearer)],
) -> uuid.UUID:
    """The client id from `Authorization: Bearer <token>`, or 401."""
    return client_of(state, request.headers.get("authorization"))


StateDep = Annotated[AppState, Depends(get_state)]
ServicesDep = Annotated[ServiceContext, Depends(get_services)]
ClientId = Annotated[uuid.UUID, Depends(authenticate)]
