"""Anonymous client tokens: `<client id><HMAC of it>`, base64url. Verified without a lookup;
the database keeps only a SHA-256 of each token."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import uuid
from dataclasses import dataclass

_MAC_BYTES = 16


@dataclass(frozen=True)
class IssuedToken:
    client_id: uuid.UUID
    token: str
    token_hash: bytes


def _mac(secret: bytes, client_id: uuid.UUID) -> bytes:
    return hmac.new(secret, client_id.bytes, hashlib.sha256).digest()[:_MAC_BYTES]


def hash_token(token: str) -> bytes:
    """What the database stores instead of the token."""
    return hashlib.sha256(token.encode()).digest()


def issue_token(secret: bytes) -> IssuedToken:
    """A new client id and its bearer token."""
    client_id = uuid.uuid4()
    raw = client_id.bytes + _mac(secret, client_id)
    token = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    return IssuedToken(client_id=client_id, token=token, token_hash=hash_token(token))


def verify_token(secret: bytes, token: str) -> uuid.UUID | None:
    """The client id a token was issued for, or None if it is not one of ours."""
    if len(token) != 43:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=")
    except (binascii.Error, ValueError):
        return None
    client_id = uuid.UUID(bytes=raw[:16])
    if not hmac.compare_digest(raw[16:], _mac(secret, client_id)):
        return None
    return client_id
