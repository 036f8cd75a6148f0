"""Blob storage in a Postgres table apart from the job rows (no shared filesystem needed)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import BinaryIO

from sqlalchemy import ColumnElement, Engine, LargeBinary, delete, func, select
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.orm import Session

from imgconv_core.db.models import Blob
from imgconv_core.settings import StorageBackend
from imgconv_core.storage.base import DOWNLOAD_CHUNK_BYTES, StoredBlob


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


def _piece(offset: int, length: int) -> ColumnElement[bytes]:
    # `data` is stored EXTERNAL (uncompressed TOAST): substring reads only the TOAST chunks of
    # the piece, so a download never loads the whole image on the server either.
    return func.substring(Blob.data, offset + 1, length, type_=LargeBinary)


class PostgresBlobReader:
    """Reads a blob in pieces, each with its own short query on a pooled connection: nothing
    is held between pieces while a slow client downloads."""

    def __init__(self, engine: Engine, key: str, content_type: str, size: int, head: bytes):
        self.content_type = content_type
        self.size = size
        self._engine = engine
        self._key = key
        self._head = head

    def chunks(self, chunk_size: int = DOWNLOAD_CHUNK_BYTES) -> Iterator[bytes]:
        """The bytes, in pieces of at most `chunk_size`."""
        head = self._head
        for start in range(0, len(head), chunk_size):
            yield head[start : start + chunk_size]
        offset = len(head)
        while offset < self.size:
            with self._engine.connect() as conn:
                piece = conn.execute(
                    select(_piece(offset, chunk_size)).where(Blob.key == self._key)
                ).scalar_one_or_none()
            if not piece:  # deleted meanwhile: end short, so the client sees a broken body
                raise RuntimeError(f"blob {self._key} disappeared while it was read")
            offset += len(piece)
            yield bytes(piece)

    def close(self) -> None:
        """Nothing is held between pieces."""
        self._head = b""


class PostgresBlobStore:
    """BlobStore over the `blobs` table; joins the caller's transaction."""

    backend = StorageBackend.POSTGRES
    transactional = True
    streams_files = False  # one bytea parameter

    def put(self, tx: Session, key: str, data: bytes | BinaryIO, content_type: str) -> None:
        """Store `data` under `key` (overwrites); a file is read whole (a bytea parameter)."""
        raw = data if isinstance(data, bytes) else data.read()
        tx.connection().execute(
            _UPSERT, {"key": key, "data": raw, "content_type": content_type, "size": len(raw)}
        )

    def get(self, tx: Session, key: str) -> StoredBlob | None:
        """The blob under `key`, or None if there is none."""
        row = tx.execute(
            select(Blob.data, Blob.content_type, Blob.size).where(Blob.key == key)
        ).one_or_none()
        if row is None:
            return None
        return StoredBlob(data=bytes(row.data), content_type=row.content_type, size=row.size)

    def open(self, tx: Session, key: str) -> PostgresBlobReader | None:
        """The blob under `key` to read in pieces; the first piece comes with its metadata."""
        row = tx.execute(
            select(Blob.content_type, Blob.size, _piece(0, DOWNLOAD_CHUNK_BYTES)).where(
                Blob.key == key
            )
        ).one_or_none()
        if row is None:
            return None
        bind = tx.get_bind()
        engine = bind if isinstance(bind, Engine) else bind.engine
        return PostgresBlobReader(engine, key, row[0], row[1], bytes(row[2]))

    def delete(self, tx: Session, keys: list[str]) -> None:
        """Delete the blobs under `keys`; missing keys are ignored."""
        if keys:
            tx.execute(delete(Blob).where(Blob.key.in_(keys)))

    def check(self) -> None:
        """The database check covers this backend."""
