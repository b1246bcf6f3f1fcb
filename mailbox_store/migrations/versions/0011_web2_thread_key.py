"""The conversation index: a keyed hash of each message's thread root (issue 11).

The keys are HMACs under each mailbox's data key, which the migration cannot unwrap
(it has no master key): existing rows keep NULL here and the daemon fills them in the
background after start (mailbox_store/thread.py, ThreadOps.backfill_thread_keys).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("messages") as batch:
        batch.add_column(sa.Column("thread_key", sa.String(64), nullable=True))
    op.create_index("ix_messages_thread", "messages", ["thread_key"])


def downgrade() -> None:
    op.drop_index("ix_messages_thread", "messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("thread_key")
