"""Professionals' access to the dossier (issue 18): authorisations and blocks, hidden
documents, attending doctor and emergency switch.

Revision ID: 0011_cpsapi
Revises: 0010
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_cpsapi"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pro_access",
        sa.Column("mailbox_id", sa.Integer, sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("idnat", sa.String(12), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("allowed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("allowed_by", sa.String(320), nullable=False),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_access_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "hidden_documents",
        sa.Column("document_id", sa.String(32), sa.ForeignKey("dossier_documents.id", ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("mailbox_id", sa.Integer, sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("hidden_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_hidden_documents_mailbox_id", "hidden_documents", ["mailbox_id"])
    op.create_table(
        "pro_settings",
        sa.Column("mailbox_id", sa.Integer, sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("attending_idnat", sa.String(12), nullable=True),
        sa.Column("emergency_enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    op.drop_table("pro_settings")
    op.drop_index("ix_hidden_documents_mailbox_id", "hidden_documents")
    op.drop_table("hidden_documents")
    op.drop_table("pro_access")
