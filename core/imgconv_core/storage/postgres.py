"""Blob storage in a Postgres table apart from the job rows (no shared filesystem needed)."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.orm import Session

from imgconv_core.db.models import Blob
from imgconv_core.storage.base import StoredBlob


def _upsert() -> Insert:
    stmt = insert(Blob)
    # `excluded` refers to the row being inserted: the bytes travel to the server once.
    return stmt.on_conflict_do_update(
        index_elements=[Blob.key],
        set_={
            "data": stmt.excluded.data,
            "content_type": stmt.excluded.content_type,
            "size": stmt.excluded.size,
        },
    )


# Built once, values bound per call: its compiled form stays cached.
_UPSERT = _upsert()


class PostgresBlobStore:
    """BlobStore over the `blobs` table; joins the caller's transaction."""

    def put(self, tx: Session, key: str, data: bytes, content_type: str) -> None:
        """Store `data` under `key` (overwrites)."""
        tx.connection().execute(
            _UPSERT, {"key": key, "data": data, "content_type": content_type, "size": len(data)}
        )

    def get(self, tx: Session, key: str) -> StoredBlob | None:
        """The blob under `key`, or None if there is none."""
        row = tx.execute(
            select(Blob.data, Blob.content_type, Blob.size).where(Blob.key == key)
        ).one_or_none()
        if row is None:
            return None
        return StoredBlob(data=bytes(row.data), content_type=row.content_type, size=row.size)

    def delete(self, tx: Session, keys: list[str]) -> None:
        """Delete the blobs under `keys`; missing keys are ignored."""
        if keys:
            tx.execute(delete(Blob).where(Blob.key.in_(keys)))
