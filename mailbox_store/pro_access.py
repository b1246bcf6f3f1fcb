"""The patient's decisions about health professionals (issue 18), in the store:
authorisations and blocks ("Autorisé(s)", "Bloqué(s)"), hidden documents, attending
doctor, emergency switch. policy.dossier_access decides from `pro_rules`; every change
is written with its audit event in one transaction.

Professionals are named by IdNat_PS (policy.dossier_access.parse_idnat) everywhere.
The audit actor of a professional is "pro:<IdNat_PS> <name>" (`pro_actor`).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, delete, insert, select, update

from mailbox_store.documents import NoSuchDocument
from mailbox_store.errors import StoreError
from mailbox_store.feed import Change
from mailbox_store.models import AuditEvent, Document, HiddenDocument, ProAccess, ProSettings, utc
from mailbox_store.repository import Repository
from policy.dossier_access import PatientRules

if TYPE_CHECKING:
    from mailbox_store.records import MailboxInfo
    from mailbox_store.writer import Writer


class ProBlocked(StoreError):
    pass


@dataclass(frozen=True, slots=True)
class ProRecord:
    idnat: str
    name: str
    allowed_at: dt.datetime | None
    allowed_by: str
    blocked_at: dt.datetime | None
    first_access_at: dt.datetime | None


def pro_actor(idnat: str, name: str) -> str:
    """The audit log's actor for a professional: IdNat_PS then name."""
    return f"pro:{idnat} {name}".strip()[:320]


def _audit(conn: Connection, mailbox_id: int, when: dt.datetime, actor: str, action: str, detail: str,
           source: str) -> None:
    conn.execute(insert(AuditEvent).values(mailbox_id=mailbox_id, at=when, actor=actor[:320], action=action[:64],
                                           detail=detail[:1024], source=source[:64]))


def _row(conn: Connection, mailbox_id: int, idnat: str) -> Any:
    return conn.execute(select(ProAccess).where(ProAccess.mailbox_id == mailbox_id,
                                                ProAccess.idnat == idnat)).first()


def _ensure(conn: Connection, mailbox_id: int, idnat: str, name: str) -> None:
    if _row(conn, mailbox_id, idnat) is None:
        conn.execute(insert(ProAccess).values(mailbox_id=mailbox_id, idnat=idnat, name=name[:200], allowed_at=None,
                                              allowed_by="", blocked_at=None, first_access_at=None))
    elif name:
        conn.execute(update(ProAccess).where(ProAccess.mailbox_id == mailbox_id, ProAccess.idnat == idnat)
                     .values(name=name[:200]))


class ProAccessOps(Repository):
    engine: Any
    writer: "Writer"

    async def pro_rules(self, mailbox: "MailboxInfo") -> PatientRules:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(ProAccess.idnat, ProAccess.allowed_at, ProAccess.blocked_at)
                                       .where(ProAccess.mailbox_id == mailbox.id))).all()
            hidden = (await conn.execute(select(HiddenDocument.document_id)
                                         .where(HiddenDocument.mailbox_id == mailbox.id))).scalars().all()
            settings = (await conn.execute(select(ProSettings.attending_idnat, ProSettings.emergency_enabled)
                                           .where(ProSettings.mailbox_id == mailbox.id))).first()
        return PatientRules(
            authorised=frozenset(r.idnat for r in rows if r.allowed_at is not None),
            blocked=frozenset(r.idnat for r in rows if r.blocked_at is not None),
            hidden=frozenset(hidden),
            attending=settings.attending_idnat if settings else None,
            emergency_enabled=bool(settings.emergency_enabled) if settings else True)

    async def pro_list(self, mailbox: "MailboxInfo") -> list[ProRecord]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(ProAccess).where(ProAccess.mailbox_id == mailbox.id)
                                       .order_by(ProAccess.idnat))).all()
        return [ProRecord(r.idnat, r.name, utc(r.allowed_at) if r.allowed_at else None, r.allowed_by,
                          utc(r.blocked_at) if r.blocked_at else None,
                          utc(r.first_access_at) if r.first_access_at else None) for r in rows]

    async def pro_set(self, mailbox: "MailboxInfo", idnat: str, action: str, actor: str, source: str = "",
                      name: str = "") -> None:
        """The patient's (or admin's) decision: action "allow", "block" or "unblock"."""
        if action not in ("allow", "block", "unblock"):
            raise ValueError(f"unknown action {action!r}")
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            _ensure(conn, mailbox.id, idnat, name)
            where = (ProAccess.mailbox_id == mailbox.id, ProAccess.idnat == idnat)
            if action == "allow":
                conn.execute(update(ProAccess).where(*where).values(allowed_at=when, allowed_by=actor[:320],
                                                                    blocked_at=None))
            elif action == "block":
                conn.execute(update(ProAccess).where(*where, ProAccess.blocked_at.is_(None)).values(blocked_at=when))
            else:
                conn.execute(update(ProAccess).where(*where).values(blocked_at=None))
            _audit(conn, mailbox.id, when, actor, f"pro.{action}", idnat, source)
            return None, []

        await self.writer.submit(job)

    async def pro_consent(self, mailbox: "MailboxInfo", idnat: str, name: str, source: str = "") -> bool:
        """A professional declares the patient's consent: authorised from now on, unless
        blocked (ProBlocked, the refusal audited). Returns whether this is their first
        access (to tell the patient once)."""
        when = dt.datetime.now(dt.timezone.utc)
        actor = pro_actor(idnat, name)

        def job(conn: Connection) -> tuple[bool | None, list[Change]]:
            _ensure(conn, mailbox.id, idnat, name)
            row = _row(conn, mailbox.id, idnat)
            if row.blocked_at is not None:  # returned, not raised: the refusal's audit is kept
                _audit(conn, mailbox.id, when, actor, "pro.refused", "blocked", source)
                return None, []
            first = row.first_access_at is None
            values: dict[str, Any] = {"first_access_at": row.first_access_at or when}
            if row.allowed_at is None:
                values.update(allowed_at=when, allowed_by="consent")
            conn.execute(update(ProAccess).where(ProAccess.mailbox_id == mailbox.id, ProAccess.idnat == idnat)
                         .values(**values))
            _audit(conn, mailbox.id, when, actor, "pro.consent", "", source)
            return first, []

        first = await self.writer.submit(job)
        if first is None:
            raise ProBlocked(f"{idnat} is blocked by the patient")
        return bool(first)

    async def pro_accessed(self, mailbox: "MailboxInfo", idnat: str, name: str, action: str, detail: str = "",
                           source: str = "") -> bool:
        """An access by a professional (list, emergency...), audited unless `action` is
        "" (audited elsewhere); returns whether it is their first access to this dossier."""
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[bool, list[Change]]:
            _ensure(conn, mailbox.id, idnat, name)
            first = conn.execute(update(ProAccess).where(ProAccess.mailbox_id == mailbox.id,
                                                         ProAccess.idnat == idnat,
                                                         ProAccess.first_access_at.is_(None))
                                 .values(first_access_at=when)).rowcount == 1
            if action:
                _audit(conn, mailbox.id, when, pro_actor(idnat, name), action, detail, source)
            return first, []

        return bool(await self.writer.submit(job))

    async def set_document_hidden(self, mailbox: "MailboxInfo", doc_id: str, hidden: bool, actor: str,
                                  source: str = "") -> None:
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            exists = conn.execute(select(Document.id).where(Document.mailbox_id == mailbox.id,
                                                            Document.id == doc_id)).scalar()
            if exists is None:
                raise NoSuchDocument(f"no document {doc_id} in the dossier of {mailbox.ins}")
            conn.execute(delete(HiddenDocument).where(HiddenDocument.document_id == doc_id))
            if hidden:
                conn.execute(insert(HiddenDocument).values(document_id=doc_id, mailbox_id=mailbox.id, hidden_at=when))
            _audit(conn, mailbox.id, when, actor, "dossier.hide" if hidden else "dossier.unhide",
                   f"document {doc_id}", source)
            return None, []

        await self.writer.submit(job)

    async def set_pro_settings(self, mailbox: "MailboxInfo", actor: str, source: str = "", *,
                               emergency: bool | None = None, attending: str | None = None,
                               clear_attending: bool = False) -> None:
        when = dt.datetime.now(dt.timezone.utc)

        def job(conn: Connection) -> tuple[None, list[Change]]:
            if conn.execute(select(ProSettings.mailbox_id).where(ProSettings.mailbox_id == mailbox.id)).first() is None:
                conn.execute(insert(ProSettings).values(mailbox_id=mailbox.id, attending_idnat=None,
                                                        emergency_enabled=True))
            values: dict[str, Any] = {}
            if emergency is not None:
                values["emergency_enabled"] = emergency
                _audit(conn, mailbox.id, when, actor, "pro.emergency_setting", "on" if emergency else "off", source)
            if attending is not None or clear_attending:
                values["attending_idnat"] = attending
                _audit(conn, mailbox.id, when, actor, "pro.attending", attending or "none", source)
            if values:
                conn.execute(update(ProSettings).where(ProSettings.mailbox_id == mailbox.id).values(**values))
            return None, []

        await self.writer.submit(job)
