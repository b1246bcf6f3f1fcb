"""The message a patient finds in their INBOX when a health professional opens their
dossier for the first time, and at every emergency access (issue 18 §4): from the
daemon's own address (notifications.from), naming the professional, the date and, for
an emergency, the word "urgence" and the reason. Delivered like any INBOX message, so
the content-free notification to the personal address follows (relay/outbound/notify.py)."""
from __future__ import annotations

import datetime as dt
import secrets
import zoneinfo
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from mailbox_store.store import MailboxInfo
    from relay.core.runtime import Runtime

log = structlog.get_logger("relay.pro_notice")
_POLICY = email_policy.SMTP.clone(max_line_length=78)
REASON_MAX = 500

try:
    _PARIS: Any = zoneinfo.ZoneInfo("Europe/Paris")
except zoneinfo.ZoneInfoNotFoundError:  # no tz database: UTC rather than fail
    _PARIS = dt.timezone.utc


def _clean(text: str, limit: int) -> str:
    """One line of printable text: a reason or a name cannot forge headers or layout."""
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())[:limit]


def build_pro_notice(*, from_addr: str, to: str, hostname: str, idnat: str, name: str,
                     emergency: bool, reason: str | None = None, now: dt.datetime | None = None) -> bytes:
    now = now or dt.datetime.now(dt.timezone.utc)
    local = now.astimezone(_PARIS)
    when_fr = local.strftime("%d/%m/%Y à %H:%M")
    when_en = local.strftime("%Y-%m-%d at %H:%M")
    who = f"{_clean(name, 200)} (RPPS {idnat[1:]}, IdNat_PS {idnat})"
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = from_addr
    msg["To"] = to
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = f"<{secrets.token_hex(12)}@{hostname}>"
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834 §5: nobody answers it automatically
    if emergency:
        msg["Subject"] = "Accès en urgence à votre dossier / Emergency access to your health record"
        text = [
            "Bonjour,",
            "",
            f"Le professionnel de santé {who} a consulté votre dossier en mode urgence "
            f"le {when_fr} (heure de Paris).",
            f"Motif déclaré : {_clean(reason or '', REASON_MAX)}",
            "",
            "Cet accès en urgence ne montre pas les documents que vous avez masqués. Vous pouvez "
            "désactiver l'accès en cas d'urgence ou bloquer ce professionnel dans Paramètres > "
            "Accès des professionnels de santé.",
            "",
            "--- English ---",
            f"The health professional {who} opened your health record with emergency access "
            f"on {when_en} (Paris time).",
            f"Stated reason: {_clean(reason or '', REASON_MAX)}",
            "",
        ]
    else:
        msg["Subject"] = "Un professionnel de santé a consulté votre dossier / A health professional opened your record"
        text = [
            "Bonjour,",
            "",
            f"Le professionnel de santé {who} a accédé à votre dossier pour la première fois "
            f"le {when_fr} (heure de Paris).",
            "",
            "Si vous n'êtes pas d'accord, vous pouvez le bloquer dans Paramètres > Accès des "
            "professionnels de santé : le blocage s'applique immédiatement.",
            "",
            "--- English ---",
            f"The health professional {who} opened your health record for the first time "
            f"on {when_en} (Paris time). You can block them in the settings.",
            "",
        ]
    msg.set_content("\n".join(text), charset="utf-8")
    return msg.as_bytes()


async def tell_patient(rt: "Runtime", mailbox: "MailboxInfo", idnat: str, name: str, emergency: bool,
                       reason: str | None = None) -> None:
    """Put the notice in the patient's INBOX; a failure is logged, the access stands
    (it is in the audit log already)."""
    try:
        raw = build_pro_notice(from_addr=rt.config.notify_from, to=f"{mailbox.ins}@{rt.config.domain}",
                               hostname=rt.config.hostname, idnat=idnat, name=name, emergency=emergency,
                               reason=reason)
        await rt.store.deliver([mailbox], raw)
        log.info("pro.patient_told", emergency=emergency, ins_hash=rt.master.pseudonym(mailbox.ins))
    except Exception as e:  # never a reason to fail the professional's request
        log.error("pro.patient_not_told", error=type(e).__name__, ins_hash=rt.master.pseudonym(mailbox.ins))
