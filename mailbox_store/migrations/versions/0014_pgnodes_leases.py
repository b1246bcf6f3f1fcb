"""Several nodes on one database (issue 14): the outbound queue's lease
(outbound.lease_owner, outbound.lease_until) and the shared budgets table.

Revision ID: 0014_pgnodes
Revises: 0013_imapx
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_pgnodes"
down_revision = "0013_imapx"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbound") as batch:
        batch.add_column(sa.Column("lease_owner", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_until", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "budgets",
        sa.Column("key", sa.String(200), primary_key=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("budgets")
    with op.batch_alter_table("outbound") as batch:
        batch.drop_column("lease_until")
        batch.drop_column("lease_owner")
