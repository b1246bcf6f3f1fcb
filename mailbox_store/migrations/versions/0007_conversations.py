"""Conversations: correspondents (open/closed), FIN-marked message ids, pharmacies.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _mailbox_fk() -> sa.Column:
    return sa.Column("mailbox_id", sa.Integer, sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True)


def upgrade() -> None:
    op.create_table("correspondents", _mailbox_fk(),
                    sa.Column("address", sa.String(320), primary_key=True),
                    sa.Column("state", sa.String(8), nullable=False),
                    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False))
    op.create_table("closed_messages", _mailbox_fk(),
                    sa.Column("message_id", sa.String(998), primary_key=True))
    op.create_table("pharmacies", _mailbox_fk(),
                    sa.Column("address", sa.String(320), primary_key=True),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False))


def downgrade() -> None:
    for table in ("pharmacies", "closed_messages", "correspondents"):
        op.drop_table(table)
