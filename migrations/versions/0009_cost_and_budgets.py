"""Cost: each job's estimate and charge, each key's spend by day, and monthly budgets

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 16:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("cost_estimate_micros", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column("cost_micros", sa.BigInteger(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("max_spend_micros_per_month", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("soft_spend_micros_per_month", sa.BigInteger(), nullable=True))
        batch.add_column(
            sa.Column(
                "budget_warned_month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=True
            )
        )
    op.create_table(
        "key_spend",
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("day", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("micros", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["virtual_keys.id"]),
        sa.PrimaryKeyConstraint("key_id", "day"),
    )


def downgrade() -> None:
    op.drop_table("key_spend")
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("budget_warned_month")
        batch.drop_column("soft_spend_micros_per_month")
        batch.drop_column("max_spend_micros_per_month")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cost_micros")
        batch.drop_column("cost_estimate_micros")
