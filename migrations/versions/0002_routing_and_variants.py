"""model aliases, job routing (targets, tries, request), deleted jobs and media variants

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23 03:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_aliases",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    # Batch mode: SQLite rebuilds the table; PostgreSQL alters it in place.
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("request", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("tries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("targets", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(
            sa.Column("target_index", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("media_objects") as batch:
        batch.add_column(
            sa.Column(
                "variant",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="output",
            )
        )
        batch.drop_constraint("uq_media_objects_job_id_index", type_="unique")
        batch.create_unique_constraint(
            "uq_media_objects_job_variant_index", ["job_id", "variant", "index"]
        )


def downgrade() -> None:
    with op.batch_alter_table("media_objects") as batch:
        batch.drop_constraint("uq_media_objects_job_variant_index", type_="unique")
        batch.create_unique_constraint("uq_media_objects_job_id_index", ["job_id", "index"])
        batch.drop_column("variant")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("target_index")
        batch.drop_column("targets")
        batch.drop_column("tries")
        batch.drop_column("request")
        batch.drop_column("deleted_at")
    op.drop_table("model_aliases")
