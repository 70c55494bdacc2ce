"""virtual_keys.max_queued_jobs and max_streams: a key's share of the queue and its event
streams per API process (null: the deployment's defaults)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("max_queued_jobs", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_streams", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("max_streams")
        batch.drop_column("max_queued_jobs")
