"""jobs.provider_task_id up to 1,000 characters: fal's queue answers a submit with the status,
result and cancel URLs to use (they differ from the submit path), and the job keeps all three

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 01:00:00
"""

from __future__ import annotations

import sqlmodel
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column(
            "provider_task_id",
            type_=sqlmodel.sql.sqltypes.AutoString(length=1000),
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=200),
            existing_nullable=True,
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.alter_column(
            "provider_task_id",
            type_=sqlmodel.sql.sqltypes.AutoString(length=200),
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=1000),
            existing_nullable=True,
        )
