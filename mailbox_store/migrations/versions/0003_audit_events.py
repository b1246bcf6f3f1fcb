"""Audit log of accesses to a patient's data.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mailbox_id", sa.Integer(), sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(320), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("detail", sa.String(1024), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_events_mailbox_id", "audit_events", ["mailbox_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_events_mailbox_id", "audit_events")
    op.drop_table("audit_events")
