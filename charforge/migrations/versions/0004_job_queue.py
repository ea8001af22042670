"""Jobs as a queue of assets: the asset key (unique per kind and character), the claiming worker
and attempts.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("key", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("worker", sa.String(length=128), nullable=True))
        batch.add_column(sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch.create_unique_constraint(op.f("uq_jobs_kind_character_id_key"), ["kind", "character_id", "key"])


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint(op.f("uq_jobs_kind_character_id_key"), type_="unique")
        batch.drop_column("attempts")
        batch.drop_column("worker")
        batch.drop_column("key")
