"""media lifecycle: quotas and retention on keys, key purge progress, media kind/expiry/deletion
reason, usage per key and kind with lifetime totals

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

KINDS = (
    "(SELECT 'image' AS kind UNION ALL SELECT 'video' UNION ALL SELECT 'audio' "
    "UNION ALL SELECT 'other') kinds"
)
LIVE = "FROM media_objects m WHERE m.key_id = key_usage.key_id AND m.deleted_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("virtual_keys") as batch:
        batch.add_column(sa.Column("max_bytes", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("max_objects", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("max_concurrent_jobs", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("retention_days", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("purge_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch.add_column(
            sa.Column("purge_deleted_objects", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("purge_finished_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("media_objects") as batch:
        batch.add_column(
            sa.Column(
                "kind",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="other",
            )
        )
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("deleted_reason", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch.create_index("ix_media_objects_expires_at", ["expires_at"])
    op.execute(
        "UPDATE media_objects SET kind = CASE "
        "WHEN content_type LIKE 'image/%' THEN 'image' "
        "WHEN content_type LIKE 'video/%' THEN 'video' "
        "WHEN content_type LIKE 'audio/%' THEN 'audio' ELSE 'other' END"
    )
    # Usage becomes one row per (key, kind), rebuilt from the media rows it summarises.
    op.drop_table("key_usage")
    op.create_table(
        "key_usage",
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("objects", sa.BigInteger(), nullable=False),
        sa.Column("bytes_written", sa.BigInteger(), nullable=False),
        sa.Column("objects_written", sa.BigInteger(), nullable=False),
        sa.Column("bytes_deleted", sa.BigInteger(), nullable=False),
        sa.Column("objects_deleted", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["virtual_keys.id"]),
        sa.PrimaryKeyConstraint("key_id", "kind"),
    )
    op.execute(
        "INSERT INTO key_usage (key_id, kind, bytes, objects, bytes_written, objects_written, "
        "bytes_deleted, objects_deleted, updated_at) "
        f"SELECT k.id, kinds.kind, 0, 0, 0, 0, 0, 0, CURRENT_TIMESTAMP FROM virtual_keys k, {KINDS}"
    )
    op.execute(
        f"UPDATE key_usage SET bytes = (SELECT COALESCE(SUM(m.bytes), 0) {LIVE} "
        "AND m.kind = key_usage.kind), "
        f"objects = (SELECT COUNT(*) {LIVE} AND m.kind = key_usage.kind)"
    )
    op.execute("UPDATE key_usage SET bytes_written = bytes, objects_written = objects")


def downgrade() -> None:
    op.drop_table("key_usage")
    op.create_table(
        "key_usage",
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("objects", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["key_id"], ["virtual_keys.id"]),
        sa.PrimaryKeyConstraint("key_id"),
    )
    op.execute(
        "INSERT INTO key_usage (key_id, bytes, objects, updated_at) "
        "SELECT k.id, 0, 0, CURRENT_TIMESTAMP FROM virtual_keys k"
    )
    op.execute(
        f"UPDATE key_usage SET bytes = (SELECT COALESCE(SUM(m.bytes), 0) {LIVE}), "
        f"objects = (SELECT COUNT(*) {LIVE})"
    )
    with op.batch_alter_table("media_objects") as batch:
        batch.drop_index("ix_media_objects_expires_at")
        batch.drop_column("deleted_reason")
        batch.drop_column("expires_at")
        batch.drop_column("kind")
    with op.batch_alter_table("virtual_keys") as batch:
        for column in (
            "purge_finished_at",
            "purge_deleted_objects",
            "purge_status",
            "deleted_at",
            "retention_days",
            "max_concurrent_jobs",
            "max_objects",
            "max_bytes",
        ):
            batch.drop_column(column)
