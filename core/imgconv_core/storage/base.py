"""The storage interface for image bytes. Postgres today; an S3 backend can implement the same."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal, Protocol

from sqlalchemy.orm import Session

BlobRole = Literal["source", "result"]


def blob_key(job_id: uuid.UUID, role: BlobRole) -> str:
    """The storage key of a job's source or result image."""
    return f"{job_id}/{role}"


@dataclass(frozen=True)
class StoredBlob:
    data: bytes
    content_type: str
    size: int


class BlobStore(Protocol):
    """Stores image bytes. `tx` is the caller's unit of work: a transactional backend joins it,
    so a job row and its image are committed (or rolled back) together."""

    def put(self, tx: Session, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key` (overwrites)."""

    def get(self, tx: Session, key: str) -> StoredBlob | None:
        """The blob under `key`, or None if there is none."""

    def delete(self, tx: Session, keys: list[str]) -> None:
        """Delete the blobs under `keys`; missing keys are ignored."""
