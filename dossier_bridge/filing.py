"""Filing by the patient: the messages copied or moved into the "Dossier médical"
folder have their attachments filed in the dossier (issue 5 §4). IMAP COPY/MOVE calls
this; the webmail calls the same function. Idempotent: the store files a (message,
content) pair once, however often the message is copied.

Each message goes through the entry of the inbound pipeline (relay/inbound/pipeline.py)
that the MX uses: parsed once into policy.parsed.ParsedMessage, then the same
`inspect_message` (attachment rules, IHE_XDM packages, the dossier mapping)."""
from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import structlog

from dossier_bridge.dossier import Filing, inspect_message
from mailbox_store.documents import NewDocument
from mailbox_store.store import MailboxInfo, Store
from policy.attachments import AttachmentLimits
from policy.decisions import Decision
from policy.parsed import parse

log = structlog.get_logger("dossier_bridge.filing")
CHUNK = 50  # messages decrypted and parsed at a time (bounded memory, as FETCH)


@dataclass(frozen=True, slots=True)
class Filed:
    filed: int  # documents new in the dossier
    not_filed: int  # documents (or messages) left out, with the reason in the audit log


async def file_messages(store: Store, mailbox: MailboxInfo, folder: str, uids: Sequence[int],
                        limits: AttachmentLimits, actor: str, source: str = "",
                        only_part: str | None = None) -> Filed:
    """`only_part`: file only the attachment at that IMAP part number (the webmail's
    button beside one attachment), with the documents an IHE_XDM package in it holds."""
    filed = not_filed = 0
    for start in range(0, len(uids), CHUNK):
        raws = await store.fetch_raw_many(mailbox.ins, folder, list(uids[start:start + CHUNK]))
        docs: list[NewDocument] = []
        reasons: list[str] = []
        for uid in sorted(raws):
            # CPU-bound (MIME, zip, XML): off the event loop
            result = await asyncio.to_thread(_inspect, raws[uid], mailbox, limits)
            if isinstance(result, Decision):
                # a message that the rules refuse (one stored before a rule changed, or
                # appended by the patient) files nothing
                reasons.append(f"{result.rule} ({folder} uid {uid})")
                continue
            for _, ds in result.documents:
                docs.extend(d for d in ds if only_part is None or _part_of(d) == only_part)
            reasons.extend(reason for _, reason in result.not_filed)
        new = await store.file_documents(mailbox, docs, actor, source, not_filed=reasons)
        filed += len(new)
        not_filed += len(reasons)
    log.info("dossier.filed_by_patient", ins_hash=store.master.pseudonym(mailbox.ins), messages=len(uids),
             filed=filed, not_filed=not_filed)
    return Filed(filed, not_filed)


def _inspect(raw: bytes, mailbox: MailboxInfo, limits: AttachmentLimits) -> Filing | Decision:
    """One message through the pipeline's entry: one parse, then the MX's rules."""
    return inspect_message(parse(raw, limits), [mailbox], limits)


def _part_of(doc: NewDocument) -> str | None:
    """The part number a document's locator names ("part:2|xdm:..." -> "2")."""
    where = dict(item.split(":", 1) for item in (doc.locator or "").split("|") if ":" in item)
    return where.get("part")
