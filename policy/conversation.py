"""Conversations between professionals and a patient: who may the patient write to.

The model (DESIGN.md §4 "Professional initiates", "Closing", "Nothing leaves the trust
space"): only professionals start an exchange. Each professional message delivered to a
patient makes its From address, and an MSSante Reply-To address if set, *correspondents*
of that patient with an *open* exchange; a subject carrying `[FIN]` closes the exchange
with them once the message is delivered, until one of them writes again. The header
`X-MSS-MES: FIN` closes only that one message: replies to it are refused, the other
threads stay open. The organisational mailboxes of the pharmacies (officines) allowed for
a patient accept a first message, and a new one after a `[FIN]`.

This module decides and keeps no state. The store persists, per patient:

* the correspondents: normalised address (`normalise_address`) -> open or closed,
  updated from `professional_effects` after each delivery to that patient;
* the ids (`parse_msg_ids` form, `<left@right>`) of the professional messages marked
  `X-MSS-MES: FIN` (`ConversationEffects.closed_message`);
* the pharmacy addresses the patient allowed (normalised).

At the patient's RCPT the store turns those into a `RecipientFacts` per recipient and
asks `patient_recipient_decision`. Everything here is pure (stdlib only, no I/O) and the
header helpers never raise, whatever a peer wrote: a bad header degrades to "no id" or
"replacement character", never to a 451.
"""
from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass
from email.message import Message
from email.utils import getaddresses
from enum import Enum

from policy import mime
from policy.addresses import PATIENT_DOMAIN, split_address
from policy.decisions import Decision, ok

# Bounds of parse_msg_ids. RFC 5322 §2.1.1: a line is at most 998 characters, so no
# msg-id can be longer. A References header grows by one id per reply; beyond 100 the
# middle is dropped the way RFC 5537 §3.4.4 trims news References: the first id (the
# thread root) and the most recent ones are what threading needs.
MAX_MSG_IDS = 100
MAX_MSG_ID_LENGTH = 998

# RFC 5321 §4.5.3.1.1 and §4.5.3.1.2
_MAX_LOCAL_PART = 64
_MAX_DOMAIN = 255

# --- refusals at the patient's RCPT (submission) -----------------------------------------

BAD_RECIPIENT = Decision(
    501, "5.1.3", "Adresse du destinataire mal formee",
    "Bad recipient address syntax", "bad_recipient_syntax")
PATIENT_TO_PATIENT = Decision(
    550, "5.7.1", "Un patient ne peut ecrire qu'a des professionnels de sante",
    "A patient may only write to health professionals", "patient_to_patient")
OUTSIDE_TRUST_SPACE = Decision(
    550, "5.7.1",
    "Ce destinataire n'est pas une messagerie de sante MSSante: vos messages ne peuvent pas en sortir",
    "This recipient is not an MSSante health mailbox: your messages cannot leave it",
    "outside_trust_space")
MESSAGE_CLOSED = Decision(
    550, "5.7.1", "Le professionnel a indique que ce message n'attend pas de reponse",
    "The professional marked this message as not open to replies", "message_closed")
PROFESSIONAL_MUST_START = Decision(
    550, "5.7.1", "Ce professionnel doit d'abord vous ecrire",
    "This professional must write to you first", "professional_must_start")
EXCHANGE_CLOSED = Decision(
    550, "5.7.1", "Le professionnel a clos cet echange: il doit vous ecrire a nouveau",
    "The professional closed this exchange: they must write to you again first",
    "exchange_closed")


# --- header helpers -------------------------------------------------------------------

# RFC 2047 §2 encoded-word. Lenient where real mailers are sloppy: Python and Thunderbird
# also decode words glued to text and words with a raw space in them, so we do too.
# RFC 5322 §2.2.3: unfolding removes a CRLF followed by WSP. Bare CR or LF are folded too,
# since a header that reached us through a lenient parser may have lost the CR.
_FOLD = re.compile(r"(?:\r\n|\r|\n)(?=[ \t])")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_DOMAIN_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
# Characters that can never be in an MSSante addr-spec we would route to (RFC 5322 §3.4.1
# specials outside a quoted string, whitespace, controls); MSSante addresses are ASCII.
_BAD_ADDRESS_CHAR = re.compile(r"[^\x21-\x7e]|[<>()\[\]\\,;:\"@]")


def _fix_surrogates(text: str) -> str:
    # A message parsed from bytes keeps raw 8-bit header bytes as surrogate escapes. Read
    # them as UTF-8 (RFC 6532), and make every byte that is not UTF-8 a replacement
    # character: a surrogate must never reach the store (it cannot be encoded).
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeError:
        return _SURROGATE.sub("\ufffd", text)


def _unfold(text: str) -> str:
    return _FOLD.sub("", text)


def decode_subject(raw: str | None) -> str:
    """The Subject as a person reads it: unfolded (RFC 5322 §2.2.3), RFC 2047 encoded
    words decoded by the one decoder IMAP SEARCH uses (policy.mime.decode_words), on
    one line. Never raises: nothing unencodable (surrogates) or invisible (controls)
    comes out."""
    if not isinstance(raw, str) or not raw:
        return ""
    decoded = mime.decode_words(_unfold(_fix_surrogates(raw)))
    decoded = _LINE_BREAK.sub(" ", _SURROGATE.sub("\ufffd", decoded))  # an encoded CRLF is a line break
    return _CONTROL.sub("\ufffd", decoded).strip(" \t")


def closes_exchange(subject: str) -> bool:
    """Whether a decoded subject closes the exchange: it contains `[FIN]` exactly.

    Upper case, no inner space, as the MSSante rule spells the tag, which professional
    software inserts for the professional. We do not widen it to "[fin]" or "[ FIN ]":
    a false close silences a patient towards their own professional until that
    professional writes again (the patient cannot even tell them they misread it),
    while a missed close only lets a patient answer someone who just wrote to them."""
    return isinstance(subject, str) and "[FIN]" in subject


def closes_message(x_mss_mes: str | None) -> bool:
    """Whether an `X-MSS-MES` header value closes its message: `FIN`, trimmed, any case
    (a header value token, not prose: "fin" and " FIN\\r\\n" mean the same)."""
    if not isinstance(x_mss_mes, str):
        return False
    return _LINE_BREAK.sub("", x_mss_mes).strip(" \t").lower() == "fin"


def _skip_comment(text: str, i: int) -> int:
    """Index after the RFC 5322 §3.2.2 comment opening at text[i] (nested, with
    quoted-pairs); the end of text when it is never closed."""
    depth, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _skip_quoted(text: str, i: int) -> int:
    """Index after the quoted-string opening at text[i] (RFC 5322 §3.2.4)."""
    n = len(text)
    i += 1
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i + 1
        i += 1
    return n


def _read_msg_id(text: str, i: int) -> tuple[int, str | None]:
    """Read the msg-id whose "<" is at text[i]: (index to go on from, the id or None).

    RFC 5322 §3.6.4 and its obsolete form §4.5.4: CFWS may appear around the parts of the
    id, so folding white space and comments inside the brackets are dropped."""
    n = len(text)
    buf: list[str] = []
    j = i + 1
    while j < n:
        c = text[j]
        if c == ">":
            return j + 1, _valid_msg_id("".join(buf))
        if c == "<":
            return j, None  # an unbalanced "<": start again from this one
        if c == "(":
            j = _skip_comment(text, j)
            continue
        if c == '"':
            end = _skip_quoted(text, j)
            buf.append(text[j:end])
            j = end
            continue
        if c not in " \t\r\n":
            buf.append(c)
        j += 1
    return n, None


def _valid_msg_id(inner: str) -> str | None:
    if len(inner) + 2 > MAX_MSG_ID_LENGTH:
        return None
    left, at, right = inner.rpartition("@")
    if not at or not left or not right:
        return None
    if _CONTROL.search(inner) or "\r" in inner or "\n" in inner:
        return None
    return f"<{inner}>"


def parse_msg_ids(value: str | None) -> tuple[str, ...]:
    """The msg-ids of a Message-ID, In-Reply-To or References header, in order, each
    once, in the one form used everywhere: `<left@right>`, with the angle brackets (the
    form of the header and of IMAP ENVELOPE, RFC 3501 §7.4.2), case kept (RFC 5322 gives
    no case rule for ids). Comments, quoted phrases (the obsolete In-Reply-To of §4.5.4)
    and folding are skipped; an id that is not `left@right` or longer than 998 characters
    is dropped. At most MAX_MSG_IDS: the first and the latest ones. Never raises."""
    if not isinstance(value, str) or not value:
        return ()
    text = _fix_surrogates(value)
    seen: set[str] = set()
    first: str | None = None
    tail: deque[str] = deque(maxlen=MAX_MSG_IDS - 1)

    def add(msg_id: str | None) -> None:
        nonlocal first
        if msg_id is None or msg_id in seen:
            return
        seen.add(msg_id)
        if first is None:
            first = msg_id
        else:
            tail.append(msg_id)

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "(":
            i = _skip_comment(text, i)
        elif c == '"':
            i = _skip_quoted(text, i)
        elif c == "<":
            i, msg_id = _read_msg_id(text, i)
            add(msg_id)
        else:
            i += 1
    if first is None and "<" not in text:
        # Some software writes "Message-ID: id@host" without brackets. A lone
        # token with an "@" is taken as that; anything longer is an obsolete phrase.
        words = _unfold(text).split()
        if len(words) == 1 and not any(c in words[0] for c in '()">'):
            add(_valid_msg_id(words[0]))
    if first is None:
        return ()
    return (first, *tail)


def thread_root(message_id: str | None, in_reply_to: tuple[str, ...],
                references: tuple[str, ...]) -> str | None:
    """The id naming a message's conversation (DESIGN.md §4): the first References id
    (RFC 5322 §3.6.4: the thread's origin comes first), else the first In-Reply-To id,
    else the message's own Message-ID; None when it has none of them. Ids are taken in
    or brought to the `parse_msg_ids` form."""
    for candidates in (references, in_reply_to):
        for value in candidates or ():
            ids = parse_msg_ids(value)
            if ids:
                return ids[0]
    own = parse_msg_ids(message_id)
    return own[0] if own else None


def thread_of_headers(headers: Message | mime.Headers) -> str | None:
    """thread_root of a parsed header section (any email policy); never raises on the
    headers' content. The one rule every front and the store's thread index use."""
    own = _ids(headers, "message-id")
    return thread_root(own[0] if own else None, _ids(headers, "in-reply-to")[:MAX_MSG_IDS],
                       _ids(headers, "references")[:MAX_MSG_IDS])


def answered_ids(in_reply_to: tuple[str, ...], references: tuple[str, ...]) -> tuple[str, ...]:
    """The messages a message directly answers: its In-Reply-To ids (RFC 5322 §3.6.4),
    else the last References id. Not the whole References: a reply to a professional's
    later message in a thread that once held an X-MSS-MES: FIN message is not a reply to
    that closed message."""
    direct = tuple(dict.fromkeys(i for v in in_reply_to or () for i in parse_msg_ids(v)))
    if direct:
        return direct
    refs = [i for v in references or () for i in parse_msg_ids(v)]
    return (refs[-1],) if refs else ()


def replies_to_closed_message(in_reply_to: tuple[str, ...], references: tuple[str, ...],
                              closed_ids: Container[str]) -> bool:
    """Whether a patient's message answers a message marked X-MSS-MES: FIN
    (`closed_ids`, as the store keeps them): the `RecipientFacts` flag."""
    return any(i in closed_ids for i in answered_ids(in_reply_to, references))


def normalise_address(addr: str) -> str | None:
    """`local@domain` in lower case, or None when it is not an address we can route.

    MSSante addresses are case-insensitive, local part included (unlike RFC 5321 §2.4),
    so one professional written "Dr.Martin@CH-X.mssante.fr" and "dr.martin@ch-x..." is
    one correspondent. They are ASCII, dot-atom local parts and host names: anything
    else (a quoted local part with a space, a control character, an address literal)
    is refused rather than cleaned."""
    if not isinstance(addr, str):
        return None
    parts = split_address(addr)
    if parts is None:
        return None
    local, domain = parts.local, parts.domain
    if len(local) > _MAX_LOCAL_PART or len(domain) > _MAX_DOMAIN:
        return None
    if _BAD_ADDRESS_CHAR.search(local) or local.startswith(".") or local.endswith(".") \
            or ".." in local:
        return None
    if not all(_DOMAIN_LABEL.fullmatch(label) for label in domain.split(".")):
        return None
    return f"{local.lower()}@{domain.lower()}"


# --- professional side -----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ProfessionalMessage:
    """The headers of a professional's message that matter to the conversation."""

    from_addresses: tuple[str, ...]  # addr-specs as written
    reply_to: tuple[str, ...]  # addr-specs as written
    subject: str  # decoded (decode_subject)
    mes: str | None  # X-MSS-MES value
    message_id: str | None  # parse_msg_ids form
    in_reply_to: tuple[str, ...]  # parse_msg_ids form
    references: tuple[str, ...]  # parse_msg_ids form


@dataclass(frozen=True, slots=True)
class ConversationEffects:
    """What the store records once a professional message is delivered to a patient."""

    thread: str | None  # thread_root of the message
    correspondents: tuple[str, ...]  # normalised; open, or re-opened, by this message
    close_exchange: bool  # [FIN]: then the exchange with those correspondents is closed
    closed_message: str | None  # X-MSS-MES: FIN: this message id refuses replies


def _domain(address: str) -> str:
    return address.rpartition("@")[2]


def professional_effects(msg: ProfessionalMessage, is_mssante: Callable[[str], bool], *,
                         own_domain: str = PATIENT_DOMAIN,
                         sender_ok: Callable[[str], bool] | None = None) -> ConversationEffects:
    """The conversation change a delivered professional message makes.

    `is_mssante(domain)` says whether a (lower-case) domain is in the MSSante trust list.
    A From outside it opens nothing, not even through its Reply-To: the Reply-To is the
    professional's choice of where answers go, so it counts only when the professional
    is one. Addresses of `own_domain` never become correspondents (a patient writes only
    to professionals, even if a Reply-To names another patient)."""
    own = own_domain.lower().rstrip(".")

    def trusted(addresses: Iterable[str]) -> list[str]:
        out = []
        for a in addresses:
            norm = normalise_address(a)
            if norm is not None and _domain(norm) != own and is_mssante(_domain(norm)):
                out.append(norm)
        return out

    # A From counts only in a domain the sending server was authenticated for
    # (`sender_ok`: its certificate is listed for that domain), or any operator could
    # open, or [FIN]-close, another operator's professional's exchange.
    senders = [a for a in trusted(msg.from_addresses) if sender_ok is None or sender_ok(_domain(a))]
    correspondents = (*senders, *trusted(msg.reply_to)) if senders else ()
    own_id = parse_msg_ids(msg.message_id)
    return ConversationEffects(
        thread=thread_root(msg.message_id, msg.in_reply_to, msg.references),
        correspondents=tuple(dict.fromkeys(correspondents)),
        close_exchange=closes_exchange(msg.subject),
        # Without a Message-ID nothing can reply to it by id, so there is nothing to keep.
        closed_message=own_id[0] if own_id and closes_message(msg.mes) else None,
    )


def _raw_headers(headers: Message | mime.Headers, name: str) -> list[str]:
    # The raw values, not headers[name]: the default policy hands back an already
    # decoded, re-parsed object (whose parser has raised on odd input before) and
    # compat32 turns 8-bit values into Header objects; our helpers want the wire text.
    out: list[str] = []
    try:
        items = list(headers.raw_items())
    except Exception:
        return out
    for key, value in items:
        if not isinstance(key, str) or key.lower() != name:
            continue
        if not isinstance(value, str):  # a Header object a program set under compat32
            try:
                value = str(value)
            except Exception:
                continue
        out.append(value)
    return out


def _addresses(headers: Message | mime.Headers, name: str) -> tuple[str, ...]:
    values = [_unfold(_fix_surrogates(v)) for v in _raw_headers(headers, name)]
    try:
        pairs = getaddresses(values)
    except Exception:
        return ()
    return tuple(addr for _, addr in pairs if isinstance(addr, str) and addr)


def _first(values: list[str]) -> str | None:
    return values[0] if values else None


def _ids(headers: Message | mime.Headers, name: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for v in _raw_headers(headers, name) for i in parse_msg_ids(v)))


def professional_from_headers(headers: Message | mime.Headers) -> ProfessionalMessage:
    """Read a professional message's conversation headers (any email policy). Never
    raises on the headers' content."""
    own = _ids(headers, "message-id")
    return ProfessionalMessage(
        from_addresses=_addresses(headers, "from"),
        reply_to=_addresses(headers, "reply-to"),
        subject=decode_subject(_first(_raw_headers(headers, "subject"))),
        mes=_first(_raw_headers(headers, "x-mss-mes")),
        message_id=own[0] if own else None,
        in_reply_to=_ids(headers, "in-reply-to")[:MAX_MSG_IDS],
        references=_ids(headers, "references")[:MAX_MSG_IDS],
    )


# --- patient side ----------------------------------------------------------------------

class Exchange(Enum):
    """State of the exchange between a patient and one address, as the store keeps it."""

    NONE = "none"  # never written to the patient
    OPEN = "open"
    CLOSED = "closed"  # last message from them had [FIN]


@dataclass(frozen=True, slots=True)
class RecipientFacts:
    exchange: Exchange
    pharmacy_allowed: bool  # an officine's organisational mailbox this patient allowed
    replies_to_closed_message: bool  # see replies_to_closed_message()


def patient_recipient_decision(address: str, own_domain: str, is_mssante: Callable[[str], bool],
                               facts: RecipientFacts) -> Decision:
    """Whether a patient may send to `address` (one RCPT of the patient's submission).

    Checks in the order of DESIGN.md §4: syntax; the patient domain, whatever the local
    part (another patient, the TEST address, postmaster: a patient writes only to
    professionals); the MSSante trust space; a reply to an X-MSS-MES: FIN message (even
    to a pharmacy: the mark is on the message, not on the exchange); then the exchange
    itself, which an allowed pharmacy does not need."""
    norm = normalise_address(address)
    if norm is None:
        return BAD_RECIPIENT
    domain = _domain(norm)
    if domain == own_domain.lower().rstrip("."):
        return PATIENT_TO_PATIENT
    if not is_mssante(domain):
        return OUTSIDE_TRUST_SPACE
    if facts.replies_to_closed_message:
        return MESSAGE_CLOSED
    if not facts.pharmacy_allowed:
        if facts.exchange is Exchange.NONE:
            return PROFESSIONAL_MUST_START
        if facts.exchange is Exchange.CLOSED:
            return EXCHANGE_CLOSED
    return ok("rcpt")
