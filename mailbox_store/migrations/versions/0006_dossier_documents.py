"""The patient's dossier: sealed documents, and the "Dossier médical" folder in every
existing mailbox (new ones get it from models.DEFAULT_FOLDERS).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""
from __future__ import annotations

import time

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

FOLDER = "Dossier médical"


def upgrade() -> None:
    op.create_table(
        "dossier_documents",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("mailbox_id", sa.Integer, sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("dedupe", sa.String(64), nullable=False),
        sa.Column("blob_id", sa.String(32), sa.ForeignKey("blobs.id"), nullable=False),
        sa.Column("key_wrapped", sa.LargeBinary, nullable=False),
        sa.Column("meta_sealed", sa.LargeBinary, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("filed_by", sa.String(320), nullable=False),
        sa.UniqueConstraint("mailbox_id", "dedupe"),
    )
    op.create_index("ix_dossier_documents_mailbox_id", "dossier_documents", ["mailbox_id"])
    op.create_index("ix_dossier_documents_blob_id", "dossier_documents", ["blob_id"])
    folders = sa.table("folders", sa.column("mailbox_id", sa.Integer), sa.column("name", sa.String),
                       sa.column("special_use", sa.String), sa.column("uidvalidity", sa.Integer),
                       sa.column("uidnext", sa.Integer), sa.column("subscribed", sa.Boolean))
    mailboxes = sa.table("mailboxes", sa.column("id", sa.Integer))
    have = sa.select(folders.c.mailbox_id).where(folders.c.name == FOLDER)
    op.execute(folders.insert().from_select(
        ["mailbox_id", "name", "special_use", "uidvalidity", "uidnext", "subscribed"],
        sa.select(mailboxes.c.id, sa.literal(FOLDER), sa.null(), sa.literal(int(time.time())), sa.literal(1),
                  sa.true()).where(mailboxes.c.id.not_in(have))))


def downgrade() -> None:
    folders = sa.table("folders", sa.column("name", sa.String))
    op.execute(folders.delete().where(folders.c.name == FOLDER))
    op.drop_index("ix_dossier_documents_blob_id", "dossier_documents")
    op.drop_index("ix_dossier_documents_mailbox_id", "dossier_documents")
    op.drop_table("dossier_documents")
