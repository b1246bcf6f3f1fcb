"""CONDSTORE/QRESYNC (RFC 7162): folders.highestmodseq, messages.modseq, expunged_uids.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_imapx"
down_revision = "0012_imapc"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.add_column(sa.Column("highestmodseq", sa.Integer(), nullable=False, server_default="1"))
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("modseq", sa.Integer(), nullable=False, server_default="1"))
    op.create_table(
        "expunged_uids",
        sa.Column("folder_id", sa.Integer(), sa.ForeignKey("folders.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("uid", sa.Integer(), primary_key=True),
        sa.Column("modseq", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("expunged_uids")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("modseq")
    with op.batch_alter_table("folders") as batch:
        batch.drop_column("highestmodseq")
