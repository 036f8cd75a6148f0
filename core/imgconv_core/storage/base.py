"""The storage interface for image bytes, implemented by the Postgres and the S3 backends."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Literal, Protocol

from sqlalchemy.orm import Session

from imgconv_core.settings import StorageBackend

BlobRole = Literal["source", "result"]
BLOB_ROLES: tuple[BlobRole, ...] = ("source", "result")

# Downloads stream in pieces this big: few round trips (thread hops, queries) per image, and
# a 25 MiB image never sits in memory whole.
DOWNLOAD_CHUNK_BYTES = 1024 * 1024


def blob_key(job_id: uuid.UUID, role: BlobRole) -> str:
    """The storage key of a job's source or result image."""
    return f"{job_id}/{role}"


def job_keys(job_ids: list[uuid.UUID]) -> list[str]:
    """Every key the given jobs can have images under."""
    return [blob_key(job_id, role) for job_id in job_ids for role in BLOB_ROLES]


def parse_blob_key(key: str) -> tuple[uuid.UUID, BlobRole] | None:
    """The job and role of a key made by `blob_key`, or None for any other key."""
    job_part, _, role = key.rpartition("/")
    if role not in BLOB_ROLES:
        return None
    try:
        return uuid.UUID(job_part), role
    except ValueError:
        return None


@dataclass(frozen=True)
class StoredBlob:
    data: bytes
    content_type: str
    size: int


class BlobReader(Protocol):
    """An open stored image, read in pieces; `close()` releases what it holds."""

    content_type: str
    size: int

    def chunks(self, chunk_size: int = DOWNLOAD_CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes, in pieces of at most `chunk_size`."""
        ...

    def close(self) -> None:
        """Release the connection or stream (idempotent)."""
        ...


class BlobStore(Protocol):
    """Stores image bytes. `tx` is the caller's unit of work: a transactional backend
    (Postgres) joins it, so a job row and its image commit or roll back together; the others
    (S3) act at once, so their callers write an object before the row that refers to it commits.

    Failures to reach a non-transactional store raise `errors.StorageUnavailable`."""

    backend: StorageBackend
    transactional: bool
    streams_files: bool  # `put` reads a file object in pieces (else whole, into memory)

    def put(self, tx: Session, key: str, data: bytes | BinaryIO, content_type: str) -> None:
        """Store `data` under `key` (overwrites); a file object is read from its position to
        EOF, streamed where the backend can."""
        ...

    def get(self, tx: Session, key: str) -> StoredBlob | None:
        """The blob under `key`, or None if there is none."""
        ...

    def open(self, tx: Session, key: str) -> BlobReader | None:
        """The blob under `key` to read in pieces, or None if there is none."""
        ...

    def delete(self, tx: Session, keys: list[str]) -> None:
        """Delete the blobs under `keys`; missing keys are ignored."""
        ...

    def check(self) -> None:
        """Raise unless the store answers (the readiness check)."""
        ...
