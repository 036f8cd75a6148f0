"""jobs.storage: the backend holding each job's images (postgres or s3)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 21:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A constant default: PostgreSQL 11+ adds the column without rewriting the table, and
    # every job stored so far is (correctly) a Postgres one.
    op.add_column(
        "jobs",
        sa.Column("storage", sa.String(length=16), server_default="postgres", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_jobs_storage_valid"), "jobs", "storage IN ('postgres', 's3')"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_jobs_storage_valid"), "jobs", type_="check")
    op.drop_column("jobs", "storage")
