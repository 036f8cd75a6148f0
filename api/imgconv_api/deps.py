"""Request dependencies as `Annotated` aliases, so route signatures stay short."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Request
from imgconv_core.errors import Unauthorized
from imgconv_core.tokens import verify_token

from imgconv_api.state import AppState


def get_state(request: Request) -> AppState:
    """The process's AppState (set up in the lifespan)."""
    state: AppState = request.app.state.imgconv
    return state


def client_id_of(request: Request, state: AppState) -> uuid.UUID:
    """The client id from `Authorization: Bearer <token>`, or 401."""
    header = request.headers.get("authorization")
    if not header:
        raise Unauthorized(
            "send 'Authorization: Bearer <token>' (get one from POST /api/v1/tokens)"
        )
    scheme, _, token = header.partition(" ")
    client_id = verify_token(state.secret, token.strip()) if scheme.lower() == "bearer" else None
    if client_id is None:
        raise Unauthorized("the bearer token is not valid")
    return client_id


def authenticate(request: Request, state: Annotated[AppState, Depends(get_state)]) -> uuid.UUID:
    """Dependency form of `client_id_of`."""
    return client_id_of(request, state)


StateDep = Annotated[AppState, Depends(get_state)]
ClientId = Annotated[uuid.UUID, Depends(authenticate)]
