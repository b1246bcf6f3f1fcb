"""Documents filed at delivery point into their message's blob instead of a copy.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dossier_documents") as batch:
        batch.add_column(sa.Column("locator", sa.String(1024), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("dossier_documents") as batch:
        batch.drop_column("locator")
