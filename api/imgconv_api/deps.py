"""Request dependencies as `Annotated` aliases, so route signatures stay short."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request

from imgconv_api.polling import client_of
from imgconv_api.state import AppState


async def get_state(request: Request) -> AppState:
    """The process's AppState (set up in the lifespan); async, so it never costs a thread hop."""
    state: AppState = request.app.state.imgconv
    return state


async def authenticate(
    request: Request, state: Annotated[AppState, Depends(get_state)]
) -> uuid.UUID:
    """The client id from `Authorization: Bearer <token>`, or 401."""
    return client_of(state, request.headers.get("authorization"))


StateDep = Annotated[AppState, Depends(get_state)]
ClientId = Annotated[uuid.UUID, Depends(authenticate)]
