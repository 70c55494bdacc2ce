"""webhooks: per key (url, events, secrets) and per job, and the delivery log

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(
            sa.Column("webhook_url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=True)
        )
        batch.add_column(sa.Column("webhook_events", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("webhook_secret", sqlmodel.sql.sqltypes.AutoString(length=80), nullable=True)
        )
        batch.add_column(
            sa.Column(
                "webhook_previous_secret",
                sqlmodel.sql.sqltypes.AutoString(length=80),
                nullable=True,
            )
        )
        batch.add_column(
            sa.Column("webhook_previous_until", sa.DateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("webhook", sa.JSON(), nullable=True))
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("job_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("event", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("url", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("attempts", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.ForeignKeyConstraint(["key_id"], ["virtual_keys.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_webhook_deliveries_job_id", "webhook_deliveries", ["job_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_job_id", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("webhook")
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("webhook_previous_until")
        batch.drop_column("webhook_previous_secret")
        batch.drop_column("webhook_secret")
        batch.drop_column("webhook_events")
        batch.drop_column("webhook_url")
