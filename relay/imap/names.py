"""A client's mailbox name to (owner, folder): one's own folders, and a ward's under
"Other Users/<INS>/" (RFC 2342 namespaces), for every command handler."""
from __future__ import annotations

from typing import TYPE_CHECKING

from mailbox_store.folders import SEPARATOR, FolderError
from mailbox_store.store import MailboxInfo

if TYPE_CHECKING:
    from relay.imap.session import Session

OTHER_USERS = "Other Users"  # RFC 2342 "Other Users" namespace prefix (without the "/")


async def resolve(s: Session, name: str) -> tuple[MailboxInfo, str, bool]:
    """(owner, folder, own) named by a client's mailbox name. A child's folders are
    "Other Users/<child INS>/<folder>" for their guardians, and for nobody else: an
    unknown or foreign INS is reported exactly like a folder that does not exist."""
    assert s.user is not None
    prefix = OTHER_USERS + SEPARATOR
    if not name.startswith(prefix):
        return s.user, name, True
    ins, _, folder = name[len(prefix):].partition(SEPARATOR)
    folder = "INBOX" if folder.upper() == "INBOX" else folder
    for ward in await s.server.store.wards(s.user.id):
        if ward.ins == ins and folder:
            return ward, folder, False
    raise FolderError(f"no folder {name}", "NONEXISTENT")


async def resolve_own(s: Session, name: str) -> str:
    """For commands that change a mailbox's structure: only one's own (a guardian
    reads and answers; the child's folders stay the child's)."""
    owner, folder, own = await resolve(s, name)
    if not own:
        raise FolderError("a guardian cannot change the child's folders", "NOPERM")
    return folder
