"""Closing a mailbox (DESIGN.md §4 "Lifecycle"): `mailbox close` and the webmail's
"Fermer mon espace" run this one function.

Order: closed first, so the MX refuses new mail (daemons see it within their cache
TTL); then the archive, on disk before anything is deleted; then only what the archive
holds is purged: mail that slipped in meanwhile is not lost."""
from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

from mailbox_store.errors import StoreError
from mailbox_store.store import Store
from policy.recipients import MailboxState
from relay.core.config import Config
from relay.ops.export import Exported, ExportError, export


class AlreadyClosed(StoreError):
    pass


def archive_path(config: Config, ins: str, today: dt.date | None = None) -> Path:
    day = today or dt.datetime.now(dt.timezone.utc).date()
    return config.archive_dir / f"{ins}-{day.strftime('%Y%m%d')}.tar.gpg"


async def close_mailbox(store: Store, config: Config, ins: str, actor: str = "admin",
                        source: str = "cli") -> tuple[Exported, Path]:
    """Close, archive (GnuPG, archive.gpg_recipient), purge what the archive holds.
    Raises ExportError (no archive key, archive exists...) and AlreadyClosed."""
    if not config.archive_recipient:
        raise ExportError("archive.gpg_recipient: not configured; closing a mailbox keeps an encrypted archive")
    target = archive_path(config, ins)
    mb = await store.require_mailbox(ins)
    if mb.state is MailboxState.CLOSED:
        raise AlreadyClosed(f"mailbox {ins} is already closed (its archive is kept)")
    await store.set_state(ins, MailboxState.CLOSED, actor=actor)
    await asyncio.sleep(config.mailbox_cache_ttl)
    done = await export(store, ins, target, config.archive_recipient, config.gnupg_home, exclusive=True,
                        limits=config.attachments)
    await store.purge_messages(ins, done.items)
    for doc_id in done.documents:  # the archive holds them
        await store.delete_document(mb, doc_id, actor=actor, source=f"{source}:close")
    await store.audit(mb.id, actor, "close", f"archive {target.name}, kept {config.archive_retention_years} "
                      "years", source)
    return done, target
