"""IMAP compliance (issue 12): \\Recent, UIDVALIDITY never reused, subscriptions apart.

- folders.first_recent_uid: the lowest UID no session has seen yet (RFC 3501 §2.3.2,
  Dovecot's semantics: the first session to select the folder after a message arrived
  gets it as \\Recent). Existing messages are not recent.
- mailboxes.last_uidvalidity: the highest UIDVALIDITY the mailbox ever gave a folder,
  so a folder deleted and re-created gets a new one (RFC 3501 §2.3.1.1).
- subscriptions: subscribed names, independent of the folders (RFC 3501 §6.3.6: a
  subscription outlives its folder; CREATE does not subscribe). folders.subscribed goes.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_imapc"
down_revision = "0011_cpsapi"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.add_column(sa.Column("first_recent_uid", sa.Integer(), nullable=False, server_default="1"))
    op.execute("UPDATE folders SET first_recent_uid = uidnext")
    with op.batch_alter_table("mailboxes") as batch:
        batch.add_column(sa.Column("last_uidvalidity", sa.Integer(), nullable=False, server_default="0"))
    op.execute("UPDATE mailboxes SET last_uidvalidity = COALESCE("
               "(SELECT MAX(uidvalidity) FROM folders WHERE folders.mailbox_id = mailboxes.id), 0)")
    op.create_table(
        "subscriptions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mailbox_id", sa.Integer(), sa.ForeignKey("mailboxes.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.UniqueConstraint("mailbox_id", "name"),
    )
    op.execute("INSERT INTO subscriptions (mailbox_id, name) SELECT mailbox_id, name FROM folders WHERE subscribed")
    with op.batch_alter_table("folders") as batch:
        batch.drop_column("subscribed")


def downgrade() -> None:
    with op.batch_alter_table("folders") as batch:
        batch.add_column(sa.Column("subscribed", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE folders SET subscribed = EXISTS (SELECT 1 FROM subscriptions s "
               "WHERE s.mailbox_id = folders.mailbox_id AND s.name = folders.name)")
    op.drop_table("subscriptions")
    with op.batch_alter_table("mailboxes") as batch:
        batch.drop_column("last_uidvalidity")
    with op.batch_alter_table("folders") as batch:
        batch.drop_column("first_recent_uid")
