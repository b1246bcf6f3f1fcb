"""Who is asking, and whose space they see: resolved afresh at every request (a
guardian removed a second ago sees their own space at the next click), and the one
place an id from a URL is checked against that space."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mailbox_store.store import MailboxInfo
from relay.web.sessions import WebSession

# URL names of the folders the webmail shows, and their store names and French titles
FOLDERS: dict[str, tuple[str, str]] = {
    "reception": ("INBOX", "Boîte de réception"),
    "envoyes": ("Sent", "Envoyés"),
    "archives": ("Archive", "Archives"),
    "corbeille": ("Trash", "Corbeille"),
}


@dataclass(frozen=True)
class Who:
    session: WebSession
    user: MailboxInfo  # the person logged in
    space: MailboxInfo  # whose data is shown: the user's or a child's they represent
    wards: tuple[MailboxInfo, ...]
    ip: str
    pharmacies: tuple[str, ...] = ()  # the space's allowed pharmacies ("Écrire à ma pharmacie")

    @property
    def actor(self) -> str:
        """The audit log's actor, as IMAP writes it."""
        return "patient" if self.space.id == self.user.id else f"guardian:{self.user.ins}"

    @property
    def own(self) -> bool:
        return self.space.id == self.user.id


# what the middlewares leave on a request for the handlers (aiohttp's typed keys)
WHO: web.RequestKey[Who | None] = web.RequestKey("who", Who)  # None: a logged-out page
FORM: web.RequestKey[Any] = web.RequestKey("form", object)  # the urlencoded form, CSRF checked
MULTIPART: web.RequestKey[Any] = web.RequestKey("multipart", object)  # a multipart form after its token


def folder_or_404(key: str) -> tuple[str, str]:
    """(store name, French title) of a URL folder name; anything else is 404."""
    try:
        return FOLDERS[key]
    except KeyError:
        raise web.HTTPNotFound() from None


def uid_or_404(text: str) -> int:
    if not text.isdigit() or len(text) > 10:
        raise web.HTTPNotFound()
    return int(text)
