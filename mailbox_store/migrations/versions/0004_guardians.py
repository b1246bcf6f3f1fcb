"""Guardians: who may read and answer a child's mailbox.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "guardians",
        sa.Column("child_id", sa.Integer(), sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("guardian_id", sa.Integer(), sa.ForeignKey("mailboxes.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_guardians_guardian_id", "guardians", ["guardian_id"])


def downgrade() -> None:
    op.drop_index("ix_guardians_guardian_id", "guardians")
    op.drop_table("guardians")
