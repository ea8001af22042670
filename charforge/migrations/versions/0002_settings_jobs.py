"""Per-character settings, a jobs table for batch work, and an index to find assets by content.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Existing characters get empty settings (no overrides), which is what they had before.
    with op.batch_alter_table("characters") as batch:
        batch.add_column(sa.Column("settings", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
    op.create_index(op.f("ix_assets_sha256"), "assets", ["sha256"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("character_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["character_id"],
            ["characters.id"],
            name=op.f("fk_jobs_character_id_characters"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    op.create_index(op.f("ix_jobs_character_id"), "jobs", ["character_id"])
    op.create_index(op.f("ix_jobs_status"), "jobs", ["status"])


def downgrade() -> None:
    op.drop_index(op.f("ix_jobs_status"), table_name="jobs")
    op.drop_index(op.f("ix_jobs_character_id"), table_name="jobs")
    op.drop_table("jobs")
    op.drop_index(op.f("ix_assets_sha256"), table_name="assets")
    with op.batch_alter_table("characters") as batch:
        batch.drop_column("settings")
