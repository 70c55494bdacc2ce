"""virtual_keys.max_priority: the highest priority a key may submit at (null: the default)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(
            sa.Column("max_priority", sqlmodel.sql.sqltypes.AutoString(length=8), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.drop_column("max_priority")
