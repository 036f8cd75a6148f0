"""SQLAlchemy 2 models: clients, jobs, blobs (image bytes apart from job rows), idempotency keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from imgconv_core.jobs import JobStatus
from imgconv_core.settings import StorageBackend

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Client(Base):
    """An anonymous API client; only a hash of its token is stored."""

    __tablename__ = "clients"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


STATUS_VALUES = ", ".join(f"'{s.value}'" for s in JobStatus)
STORAGE_VALUES = ", ".join(f"'{b.value}'" for b in StorageBackend)


class Job(Base):
    """One image conversion. `version` grows on every change and is the poll ETag."""

    __tablename__ = "jobs"
    # Server defaults (created_at...) come back in the INSERT's RETURNING: no refresh query.
    __mapper_args__ = {"eager_defaults": True}
    __table_args__ = (
        CheckConstraint(f"status IN ({STATUS_VALUES})", name="status_valid"),
        CheckConstraint(f"storage IN ({STORAGE_VALUES})", name="storage_valid"),
        # Keyset pagination of a client's jobs, newest first, with and without a status filter.
        Index("ix_jobs_client_created", "client_id", text("created_at DESC"), text("id DESC")),
        Index(
            "ix_jobs_client_status_created",
            "client_id",
            "status",
            text("created_at DESC"),
            text("id DESC"),
        ),
        # The sweeper's work lists stay tiny: only live jobs are indexed.
        Index(
            "ix_jobs_live",
            "status",
            "updated_at",
            postgresql_where=text("status IN ('queued', 'processing')"),
        ),
        Index("ix_jobs_created_at", "created_at"),
        Index("ix_jobs_updated_at", "updated_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    client_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("clients.id", ondelete="CASCADE")
    )
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    version: Mapped[int] = mapped_column(Integer, default=1)
    filename: Mapped[str] = mapped_column(Text)
    source_format: Mapped[str] = mapped_column(String(16))
    source_mime: Mapped[str] = mapped_column(String(64))
    target_format: Mapped[str] = mapped_column(String(16))
    options: Mapped[dict[str, Any]] = mapped_column(JSONB)
    source_bytes: Mapped[int] = mapped_column(Integer)
    source_width: Mapped[int] = mapped_column(Integer)
    source_height: Mapped[int] = mapped_column(Integer)
    result_bytes: Mapped[int | None] = mapped_column(Integer)
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    # Outbox: NULL until the broker confirmed the message; the sweeper re-publishes such jobs.
    enqueued_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The upload's W3C trace context: every publish of the job's message continues its trace.
    traceparent: Mapped[str | None] = mapped_column(String(55))
    claimed_by: Mapped[str | None] = mapped_column(String(255))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The backend holding this job's images (source and result), whatever IMGCONV_STORAGE
    # says now: a deployment that switched keeps serving and deleting the older ones.
    storage: Mapped[str] = mapped_column(
        String(16),
        default=StorageBackend.POSTGRES.value,
        server_default=StorageBackend.POSTGRES.value,
    )


class Blob(Base):
    """Image bytes, keyed `<job id>/source` or `<job id>/result` (the Postgres storage backend)."""

    __tablename__ = "blobs"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    content_type: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdempotencyKey(Base):
    """Remembers which jobs an upload with an Idempotency-Key created, so a retry gets them back."""

    __tablename__ = "idempotency_keys"
    # Keys expire with the retention period (processing.expire_jobs).
    __table_args__ = (Index("ix_idempotency_keys_created_at", "created_at"),)

    client_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    job_ids: Mapped[list[uuid.UUID]] = mapped_column(ARRAY(UUID(as_uuid=True)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
