"""Job ids that prove who they belong to.

A job id is an RFC 9562 version-8 UUID: 64 random bits, then a MAC of (client id, those bits)
keyed with the secret. The API can therefore answer 404 to a random, forged or other client's
id without touching Redis or Postgres (polls of unknown ids cost no I/O at all).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import uuid

_VERSION_MASK = 0xF0
_VARIANT_MASK = 0xC0


def _mac(secret: bytes, client_id: uuid.UUID, head: bytes) -> bytes:
    return hmac.new(secret, b"job-id:" + client_id.bytes + head, hashlib.sha256).digest()[:8]


def new_job_id(secret: bytes, client_id: uuid.UUID) -> uuid.UUID:
    """A fresh job id for this client."""
    head = bytearray(os.urandom(8))
    head[6] = (head[6] & ~_VERSION_MASK & 0xFF) | 0x80  # version 8
    tail = bytearray(_mac(secret, client_id, bytes(head)))
    tail[0] = (tail[0] & ~_VARIANT_MASK & 0xFF) | 0x80  # RFC 9562 variant
    return uuid.UUID(bytes=bytes(head + tail))


def job_id_belongs(secret: bytes, client_id: uuid.UUID, job_id: uuid.UUID) -> bool:
    """Whether `job_id` was issued by `new_job_id` for this client."""
    raw = job_id.bytes
    expected = bytearray(_mac(secret, client_id, raw[:8]))
    expected[0] = (expected[0] & ~_VARIANT_MASK & 0xFF) | 0x80
    return hmac.compare_digest(raw[8:], bytes(expected))
