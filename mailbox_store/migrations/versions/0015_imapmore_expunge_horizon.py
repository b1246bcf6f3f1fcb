"""QRESYNC's expunged UIDs are pruned (issue 12): folders.expunge_horizon, the highest
modseq whose expunged UIDs were forgotten (expunged.py).

Revision ID: 0015_imapmore
Revises: 0014_pgnodes
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_imapmore"
down_revision = "0014_pgnodes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.add_column(sa.Column("expunge_horizon", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.drop_column("expunge_horizon")
