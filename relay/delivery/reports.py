"""Messages the operator writes itself: delivery reports (DSN), read receipts (MDN),
the TEST address's acknowledgement and the patient's new-mail notification.

Implementation notes:
- Pure builders: facts in, RFC 5322 bytes out, ready for the outbound queue. Output is
  CRLF only, 7bit-safe (text in UTF-8 quoted-printable, headers RFC 2047-encoded when
  needed) and no line is longer than 998 octets (RFC 5322 §2.1.1): every value that
  comes from outside is cleaned and bounded first.
- No health content in human-readable text. A DSN returns the original headers only
  (RFC 6522 text/rfc822-headers), never the body; an MDN quotes the original subject
  in its Subject only (the two correspondents already share it); a notification to the
  patient's personal address names no sender, subject or document at all.
- Envelope: DSNs (RFC 5321 §4.5.5) and MDNs (RFC 8098) leave with a null reverse-path
  MAIL FROM:<>; that is the caller's job, these functions only build the content.
- Text that arrives from outside (a remote server's reply, a subject) can hold CR/LF:
  it is flattened to one line before it reaches a header, so it cannot add a field.
- CPython folds an over-long unstructured header by turning it into RFC 2047 encoded
  words, which would corrupt a Message-ID in In-Reply-To/References and any
  delivery-status field. Hence msg-id headers use the msg-id parser, and the report
  fields are folded here and written as they are (`refold_source="none"`).
"""
from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy as email_policy
from email.headerregistry import BaseHeader, HeaderRegistry, MessageIDHeader
from email.message import EmailMessage, Message, MIMEPart
from email.utils import format_datetime, parseaddr
from typing import cast

__all__ = [
    "FailedRecipient", "build_dsn", "build_mdn", "build_test_reply", "build_notification",
    "original_headers_of",
]

_REGISTRY = HeaderRegistry()
# (typeshed does not know MessageIDHeader as a BaseHeader mixin: hence the casts)
_REGISTRY.map_to_type("in-reply-to", cast("type[BaseHeader]", MessageIDHeader))
_REGISTRY.map_to_type("references", cast("type[BaseHeader]", MessageIDHeader))
_POLICY = email_policy.SMTP.clone(header_factory=_REGISTRY)
_WIRE = _POLICY.clone(refold_source="none")

_MAX_LINE = 78  # RFC 5322 §2.1.1 SHOULD; 998 is the MUST
_DIAGNOSTIC_MAX = 500  # an SMTP reply line is at most 512 octets (RFC 5321 §4.5.3.1.5)
_ENVID_MAX = 100  # RFC 3461 §4.4
_ADDRESS_MAX = 400
_SUBJECT_MAX = 400
_MSGID_MAX = 500
_URL_MAX = 500

_HOSTNAME_RE = re.compile(r"^(?=.{1,253}\.?$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
                          r"(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$")
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
# RFC 5322 §3.6.4: msg-id = "<" id-left "@" id-right ">" (dot-atom-text / no-fold-literal)
_MSGID_RE = re.compile(rf"^<[{_ATEXT}]+(?:\.[{_ATEXT}]+)*@"
                       rf"(?:[{_ATEXT}]+(?:\.[{_ATEXT}]+)*|\[[\x21-\x5a\x5e-\x7e]*\])>$")
_STATUS_RE = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
_SMTP_REPLY_RE = re.compile(r"^[245]\d\d(?:[ -]|$)")
_ADDR_TYPE_RE = re.compile(r"^([A-Za-z0-9-]{1,30});\s*(.*)$", re.S)
_URL_RE = re.compile(r"^https?://[\x21-\x7e]+$")

# Between the French and the English text. Not "-- ", which mail clients take for a
# signature delimiter and hide or grey out.
_ENGLISH = "---- English ----"

ACTIONS = ("failed", "delayed")  # the two a relay reports (RFC 3464 §2.3.3)
NOTIFICATION_KINDS = ("message", "document")


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    """One recipient of a DSN. `diagnostic` is the remote server's reply ("550 5.1.1
    User unknown") or our own reason ("connection refused"); `original_recipient` the
    ORCPT of RFC 3461, either "rfc822;addr" or a bare address."""
    address: str
    status: str  # RFC 3463 enhanced status code, e.g. "5.1.1"
    diagnostic: str
    remote_mta: str | None = None
    last_attempt: datetime | None = None
    original_recipient: str | None = None


# RFC 3463 codes we explain in the human part, French then English.
_STATUS_TEXT: dict[str, tuple[str, str]] = {
    "5.1.1": ("adresse du destinataire inconnue", "unknown recipient address"),
    "5.1.2": ("domaine du destinataire inconnu", "unknown recipient domain"),
    "5.1.3": ("adresse du destinataire mal formée", "bad recipient address syntax"),
    "5.2.1": ("boîte aux lettres fermée ou désactivée", "mailbox closed or disabled"),
    "4.2.2": ("boîte aux lettres pleine", "mailbox full"),
    "5.2.2": ("boîte aux lettres pleine", "mailbox full"),
    "5.3.4": ("message trop volumineux", "message too big"),
    "4.4.1": ("serveur du destinataire injoignable", "no answer from the recipient's server"),
    "4.4.7": ("délai de remise dépassé", "delivery time expired"),
    "5.4.7": ("délai de remise dépassé", "delivery time expired"),
    "5.6.1": ("contenu refusé", "media not supported"),
    "5.7.1": ("refusé par la politique du destinataire", "refused by the recipient's policy"),
}
_CLASS_TEXT = {
    "4": ("échec temporaire de remise", "temporary delivery failure"),
    "5": ("échec définitif de remise", "permanent delivery failure"),
}


def build_dsn(*, reporting_mta: str, postmaster: str, to: str, original_envelope_id: str | None,
              arrival_date: datetime, recipients: Sequence[FailedRecipient],
              original_headers: bytes, action: str = "failed",
              will_retry_until: datetime | None = None, now: datetime | None = None,
              message_id: str | None = None) -> bytes:
    """An RFC 3464 delivery status notification (multipart/report, RFC 6522) from
    `postmaster` to `to`, the original envelope sender.

    `action` is "failed" (bounce) or "delayed" (warning; `will_retry_until` then goes
    into each recipient's block). `original_headers` is the header block of the
    original message (see `original_headers_of`); its body is never returned.
    """
    if action not in ACTIONS:
        raise ValueError(f"DSN action must be one of {ACTIONS}, not {action!r}")
    if not recipients:
        raise ValueError("a DSN needs at least one recipient (RFC 3464 §2.1)")
    host = _hostname(reporting_mta)
    now = _utc(now)
    arrival = _utc(arrival_date)
    retry = _utc(will_retry_until) if will_retry_until is not None and action == "delayed" else None

    per_message: list[tuple[str, str]] = []
    envid = _ascii(original_envelope_id or "", _ENVID_MAX)
    if envid:
        per_message.append(("Original-Envelope-Id", envid))
    per_message += [("Reporting-MTA", f"dns; {host}"), ("Arrival-Date", format_datetime(arrival))]
    blocks = [per_message]
    lines_fr: list[str] = []
    lines_en: list[str] = []
    for rcpt in recipients:
        status = _status(rcpt.status, action)
        diagnostic = _ascii(rcpt.diagnostic, _DIAGNOSTIC_MAX)
        fields: list[tuple[str, str]] = []
        if rcpt.original_recipient:
            fields.append(("Original-Recipient", _typed_address(rcpt.original_recipient)))
        fields += [("Final-Recipient", _typed_address(rcpt.address)), ("Action", action),
                   ("Status", status)]
        if rcpt.remote_mta:
            fields.append(("Remote-MTA", f"dns; {_ascii(rcpt.remote_mta, 255)}"))
        if diagnostic:
            kind = "smtp" if _SMTP_REPLY_RE.match(diagnostic) else "X-mssante-relay"
            fields.append(("Diagnostic-Code", f"{kind}; {diagnostic}"))
        if rcpt.last_attempt is not None:
            fields.append(("Last-Attempt-Date", format_datetime(_utc(rcpt.last_attempt))))
        if retry is not None:
            fields.append(("Will-Retry-Until", format_datetime(retry)))
        blocks.append(fields)

        fr, en = _STATUS_TEXT.get(status) or _CLASS_TEXT[status[0]]
        shown = _text(rcpt.address, _ADDRESS_MAX)
        lines_fr.append(f"  <{shown}> : {fr} ({status})")
        lines_en.append(f"  <{shown}>: {en} ({status})")
        if diagnostic:
            lines_fr.append(f"    Réponse du serveur : {diagnostic}")
            lines_en.append(f"    Server said: {diagnostic}")

    domain = _domain_of(postmaster)
    if action == "failed":
        subject = "Message non distribué / Undelivered Mail Returned to Sender"
        head_fr = (f"Votre message reçu le {_date_fr(arrival)} n'a pas pu être remis "
                   "aux destinataires suivants :")
        head_en = (f"Your message received on {_date_en(arrival)} could not be delivered "
                   "to the following recipients:")
        tail_fr = "Il ne sera pas renvoyé."
        tail_en = "It will not be sent again."
    else:
        subject = "Message en attente de remise / Delayed Mail (still being retried)"
        head_fr = (f"Votre message reçu le {_date_fr(arrival)} n'a pas encore pu être remis "
                   "aux destinataires suivants :")
        head_en = (f"Your message received on {_date_en(arrival)} has not yet been delivered "
                   "to the following recipients:")
        tail_fr = ("De nouvelles tentatives auront lieu"
                   + (f" jusqu'au {_date_fr(retry)}" if retry else "")
                   + " ; vous n'avez rien à faire pour l'instant.")
        tail_en = ("Delivery will be retried" + (f" until {_date_en(retry)}" if retry else "")
                   + "; you need not do anything yet.")
    human = "\n".join([
        f"Ceci est un message automatique de l'opérateur {domain} ({host}).",
        "",
        head_fr, "", *lines_fr, "",
        tail_fr,
        "Le rapport technique et les en-têtes de votre message (sans son contenu) sont joints.",
        f"Pour toute question, écrivez à {_ascii(postmaster, _ADDRESS_MAX)} en joignant ce rapport.",
        "",
        _ENGLISH,
        f"This is an automatic message from the {domain} operator ({host}).",
        "",
        head_en, "", *lines_en, "",
        tail_en,
        "The technical report and the headers of your message (not its content) are attached.",
        f"For any question, write to {_ascii(postmaster, _ADDRESS_MAX)} with this report.",
        "",
    ])

    status_part = MIMEPart(policy=_POLICY)
    status_part["Content-Type"] = "message/delivery-status"
    status_part.set_payload([_field_block(b) for b in blocks])
    parts = [_text_part(human), status_part]
    headers = _headers_part(original_headers)
    if headers is not None:
        parts.append(headers)

    msg = _envelope(from_addr=postmaster, to=to, subject=subject, hostname=host, now=now,
                    message_id=message_id, auto_submitted="auto-replied")
    return _report(msg, "delivery-status", parts)


def build_mdn(*, reporting_ua: str, from_addr: str, to: str, original_message_id: str | None,
              original_recipient: str | None, final_recipient: str, original_subject: str | None,
              hostname: str | None = None, now: datetime | None = None,
              message_id: str | None = None) -> bytes:
    """An RFC 8098 read receipt ("displayed") from the patient `from_addr` to `to`, the
    Disposition-Notification-To address.

    `reporting_ua` is the Reporting-UA value ("host" or "host; product");
    `hostname` (for the Message-ID) defaults to its host part.
    """
    ua = _ascii(reporting_ua, 200)
    host = _hostname(hostname if hostname is not None else ua.split(";", 1)[0].strip())
    now = _utc(now)
    original_id = _msg_id(original_message_id)
    fields = [("Reporting-UA", ua)]
    if original_recipient:
        fields.append(("Original-Recipient", _typed_address(original_recipient)))
    fields.append(("Final-Recipient", _typed_address(final_recipient)))
    if original_id:
        fields.append(("Original-Message-ID", original_id))
    # RFC 8098 §3.2.6: "manual-action" because the patient opened the message
    # themselves; "MDN-sent-automatically" because they were not asked: on
    # patient.mssante.fr a receipt the professional asks for cannot be refused
    # (DESIGN.md §4 "Read receipts"), so no explicit consent was given for this one.
    fields.append(("Disposition", "manual-action/MDN-sent-automatically; displayed"))

    recipient = _ascii(final_recipient, _ADDRESS_MAX)
    ref_fr = f" ({original_id})" if original_id else ""
    human = "\n".join([
        "Avis de lecture",
        "",
        f"Le message{ref_fr} que vous avez envoyé à <{recipient}> a été affiché par son "
        f"destinataire le {_date_fr(now)}.",
        "Cet avis est envoyé automatiquement : sur la messagerie de santé des patients, un "
        "avis de lecture demandé ne peut pas être refusé. Il indique que le message a été "
        "ouvert, pas qu'il a été lu ni compris (RFC 8098).",
        "",
        _ENGLISH,
        "Read receipt",
        "",
        f"The message{ref_fr} you sent to <{recipient}> was displayed by its recipient on "
        f"{_date_en(now)}.",
        "This receipt is sent automatically: on the patients' health messaging a requested "
        "receipt cannot be refused. It means the message was opened, not that it was read "
        "or understood (RFC 8098).",
        "",
    ])
    part = MIMEPart(policy=_POLICY)
    part["Content-Type"] = "message/disposition-notification"
    part.set_payload([_field_block(fields)])

    subject = _text(original_subject or "", _SUBJECT_MAX)
    msg = _envelope(from_addr=from_addr, to=to, subject=f"Lu / Read: {subject}" if subject else "Lu / Read",
                    hostname=host, now=now, message_id=message_id, auto_submitted="auto-replied",
                    in_reply_to=original_id)
    return _report(msg, "disposition-notification", [_text_part(human), part])


def build_test_reply(*, from_addr: str, to: str, original_message_id: str | None,
                     original_subject: str | None, hostname: str, now: datetime | None = None,
                     message_id: str | None = None) -> bytes:
    """The predefined acknowledgement of the MSSante TEST address (DESIGN.md §4),
    from `from_addr` (the TEST address) to `to`, the sender of the test message."""
    host = _hostname(hostname)
    now = _utc(now)
    original_id = _msg_id(original_message_id)
    subject = _text(original_subject or "", _SUBJECT_MAX)
    if not subject:
        subject = "Accusé de réception de votre message de test / Test message acknowledgement"
    elif not subject.lower().startswith("re:"):
        subject = f"Re: {subject}"
    domain = _domain_of(from_addr)
    address = _ascii(parseaddr(from_addr)[1], _ADDRESS_MAX)
    ref_fr = [f"Référence du message reçu : {original_id}"] if original_id else []
    ref_en = [f"Reference of the message received: {original_id}"] if original_id else []
    text = "\n".join([
        "Bonjour,",
        "",
        f"Votre message de test a bien été reçu par l'opérateur {domain} à l'adresse <{address}>,"
        f" le {_date_fr(now)}.",
        *ref_fr,
        "Ceci est une réponse automatique : merci de ne pas y répondre.",
        "",
        _ENGLISH,
        "Hello,",
        "",
        f"Your test message was received by the {domain} operator at <{address}> on {_date_en(now)}.",
        *ref_en,
        "This is an automatic reply: please do not answer it.",
        "",
    ])
    msg = _envelope(from_addr=from_addr, to=to, subject=subject, hostname=host, now=now,
                    message_id=message_id, auto_submitted="auto-replied", in_reply_to=original_id)
    _set_text(msg, text)
    return msg.as_bytes(policy=_WIRE)


def build_notification(*, from_addr: str, to: str, kind: str, count: int, webmail_url: str | None,
                       hostname: str, now: datetime | None = None,
                       message_id: str | None = None) -> bytes:
    """The notice sent to the patient's personal address (DESIGN.md §4
    "Notifications"): how many new messages or documents, nothing about them."""
    if kind not in NOTIFICATION_KINDS:
        raise ValueError(f"notification kind must be one of {NOTIFICATION_KINDS}, not {kind!r}")
    if count < 1:
        raise ValueError("a notification counts at least one new item")
    url = None
    if webmail_url is not None:
        if len(webmail_url) > _URL_MAX or not _URL_RE.match(webmail_url):
            raise ValueError("webmail_url must be an http(s) URL of printable ASCII")
        url = webmail_url
    host = _hostname(hostname)
    now = _utc(now)
    many = count > 1
    if kind == "message":
        what_fr = "nouveaux messages" if many else "nouveau message"
        what_en = "new messages" if many else "new message"
        where_fr = "votre messagerie de santé Mon espace santé"
        where_en = "your Mon espace santé health messaging"
    else:
        what_fr = "nouveaux documents" if many else "nouveau document"
        what_en = "new documents" if many else "new document"
        where_fr = "votre profil Mon espace santé"
        where_en = "your Mon espace santé profile"
    subject = (f"{what_fr[0].upper()}{what_fr[1:]} dans Mon espace santé / "
               f"{what_en[0].upper()}{what_en[1:]} in Mon espace santé")
    go_fr = [f"Pour en prendre connaissance, connectez-vous : {url}"] if url else [
        "Pour en prendre connaissance, connectez-vous à Mon espace santé."]
    them = "them" if many else "it"
    go_en = [f"To see {them}, sign in: {url}"] if url else [f"To see {them}, sign in to Mon espace santé."]
    text = "\n".join([
        "Bonjour,",
        "",
        f"Vous avez {count} {what_fr} dans {where_fr}.",
        *go_fr,
        "",
        "Ce courriel ne contient aucune information de santé. Nous ne vous demanderons jamais "
        "votre mot de passe par courriel. Ceci est un message automatique : merci de ne pas "
        "y répondre.",
        "",
        _ENGLISH,
        "Hello,",
        "",
        f"You have {count} {what_en} in {where_en}.",
        *go_en,
        "",
        "This e-mail holds no health information. We will never ask for your password by "
        "e-mail. This is an automatic message: please do not answer it.",
        "",
    ])
    msg = _envelope(from_addr=from_addr, to=to, subject=subject, hostname=host, now=now,
                    message_id=message_id, auto_submitted="auto-generated")
    _set_text(msg, text)
    return msg.as_bytes(policy=_WIRE)


def original_headers_of(raw: bytes, limit: int = 64 * 1024) -> bytes:
    """The header block of a stored message: everything before the first empty line
    (CRLF or bare LF), without that line, cut to at most `limit` bytes at a line end.
    A message that starts with an empty line has no headers: b""."""
    if raw.startswith((b"\r\n", b"\n")):
        return b""
    # the line end of the last header, then the empty line
    end = re.search(rb"\n\r?\n", raw)
    block = raw[:end.start() + 1] if end else raw
    if len(block) <= limit:
        return block
    cut = block.rfind(b"\n", 0, limit)
    return block[:cut + 1] if cut >= 0 else b""


# --- helpers -------------------------------------------------------------------------

def _envelope(*, from_addr: str, to: str, subject: str, hostname: str, now: datetime,
              message_id: str | None, auto_submitted: str,
              in_reply_to: str | None = None) -> EmailMessage:
    msg = EmailMessage(policy=_POLICY)
    msg["From"] = _mailbox(from_addr)
    msg["To"] = _mailbox(to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    # Not email.utils.make_msgid: its ids run to ~40 characters before the "@", so with
    # a usual host name the field folds onto a second line, and CPython then reads the
    # id back with a leading space. 96 random bits keep "Message-ID: <…@host>" on one line.
    own_id = _msg_id(message_id) if message_id is not None else f"<{secrets.token_hex(12)}@{hostname}>"
    if own_id is None:
        raise ValueError(f"not a Message-ID: {message_id!r}")
    msg["Message-ID"] = own_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg["Auto-Submitted"] = auto_submitted  # RFC 3834 §5
    # [MS-OXCMAIL] §2.2.3.2.14: asks Exchange not to answer us with an out-of-office.
    msg["X-Auto-Response-Suppress"] = "All"
    msg["MIME-Version"] = "1.0"
    return msg


def _report(msg: EmailMessage, report_type: str, parts: list[MIMEPart]) -> bytes:
    # RFC 6522 §3: multipart/report; report-type=...; the boundary is left to the
    # generator, which picks one that does not occur in any part.
    msg["Content-Type"] = f"multipart/report; report-type={report_type}"
    payload: list[Message | str] = [*parts]
    msg.set_payload(payload)
    return msg.as_bytes(policy=_WIRE)


def _set_text(msg: EmailMessage, text: str) -> None:
    msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")


def _text_part(text: str) -> MIMEPart:
    part = MIMEPart(policy=_POLICY)
    part.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
    return part


def _headers_part(original_headers: bytes) -> MIMEPart | None:
    block = original_headers.rstrip(b"\r\n")
    if not block.strip():
        return None
    block += b"\r\n"
    # 7bit only when it really is: printable ASCII and tabs, CRLF or LF line ends, lines
    # within 998 octets. Otherwise (raw UTF-8 headers, a bare CR, a NUL) quoted-printable
    # carries the bytes unchanged.
    lines = re.split(rb"\r?\n", block)
    clean = all(len(line) <= 998 and re.fullmatch(rb"[\t\x20-\x7e]*", line) for line in lines)
    part = MIMEPart(policy=_POLICY)
    if clean:
        part.set_content(block, "text", "rfc822-headers", cte="7bit")
    else:
        # (soft line breaks every 76 characters at most, RFC 2045 §6.7)
        part.set_content(block, "text", "rfc822-headers", cte="quoted-printable")
    return part


def _field_block(fields: Sequence[tuple[str, str]]) -> Message:
    """A block of report fields (RFC 3464 §2.1, RFC 8098 §3.1), folded here at spaces:
    the values are cleaned ASCII, so a field never needs encoding."""
    block = Message()
    for name, value in fields:
        block[name] = _fold(name, value)
    return block


def _fold(name: str, value: str) -> str:
    lines: list[str] = []
    current = ""
    width = len(name) + 2
    for word in value.split(" "):
        if current and width + len(current) + 1 + len(word) > _MAX_LINE:
            lines.append(current)
            current, width = word, 1
        else:
            current = f"{current} {word}" if current else word
    lines.append(current)
    return "\r\n ".join(lines)


def _ascii(value: str, limit: int) -> str:
    """One line of printable US-ASCII: controls (CR and LF first) become spaces,
    other characters "?", runs of spaces one space, cut to `limit`."""
    out = "".join(ch if " " <= ch <= "~" else (" " if ch.isspace() or ord(ch) < 32 else "?")
                  for ch in value)
    return re.sub(r" {2,}", " ", out).strip()[:limit].strip()


def _text(value: str, limit: int) -> str:
    """One line of text for a header (non-ASCII kept, RFC 2047 encodes it): line
    breaks and other controls become spaces, lone surrogates U+FFFD."""
    out = []
    for ch in value:
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Zl", "Zp") or ch.isspace():
            out.append(" ")
        elif cat == "Cs":
            out.append("\ufffd")
        else:
            out.append(ch)
    return re.sub(r" {2,}", " ", "".join(out)).strip()[:limit].strip()


def _typed_address(addr: str) -> str:
    """address-type; address (RFC 3464 §2.3.1-2). An ORCPT already carries its type.
    A non-ASCII address is written as RFC 6533 `utf-8` type with \\x{HEX} escapes."""
    m = _ADDR_TYPE_RE.match(addr.strip())
    kind, value = (m.group(1), m.group(2)) if m else ("rfc822", addr.strip())
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    if value.isascii():
        return f"{kind}; {_ascii(value, _ADDRESS_MAX)}"
    escaped = "".join(ch if " " < ch <= "~" and ch != "\\" else f"\\x{{{ord(ch):X}}}" for ch in value)
    return f"utf-8; {_ascii(escaped, _ADDRESS_MAX)}"


def _status(status: str, action: str) -> str:
    """RFC 3464 §2.3.4: "delayed" goes with a transient 4.X.X; "failed" with 5.X.X,
    or 4.X.X when retries ran out (4.4.7). Anything else becomes X.0.0 "other"
    (RFC 3463 §3.1)."""
    status = status.strip()
    allowed = "4" if action == "delayed" else "45"
    if _STATUS_RE.match(status) and status[0] in allowed:
        return status
    return "4.0.0" if action == "delayed" else "5.0.0"


def _msg_id(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if not value.startswith("<"):
        value = f"<{value}>"
    if len(value) > _MSGID_MAX or not _MSGID_RE.match(value):
        return None
    return value


def _mailbox(value: str) -> str:
    """A From/To value ("addr" or "Name <addr>"): refused, not cleaned, when it could
    add a header or has no address: these come from our own records, not from peers."""
    if any(ch in value for ch in "\r\n\0") or "@" not in parseaddr(value)[1]:
        raise ValueError(f"not a mailbox: {value!r}")
    return value


def _hostname(host: str) -> str:
    if not _HOSTNAME_RE.match(host):
        raise ValueError(f"not a host name: {host!r}")
    return host.rstrip(".")


def _domain_of(addr: str) -> str:
    return _ascii(parseaddr(addr)[1].rpartition("@")[2], 255) or "patient.mssante.fr"


def _utc(dt: datetime | None) -> datetime:
    """Aware UTC; a naive datetime is taken as UTC (the queue stores UTC)."""
    if dt is None:
        return datetime.now(timezone.utc)
    if dt.tzinfo is None:
        return dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def _date_fr(dt: datetime | None) -> str:
    return dt.strftime("%d/%m/%Y à %H:%M (UTC)") if dt else ""


def _date_en(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M UTC") if dt else ""
