""""Messagerie", a conversation, attachments, replies, "Écrire à ma pharmacie" and the
live updates (Server-Sent Events fed by the store's change feed).

A reply goes through relay/outbound/outgoing_mail.py, the very checks and commit of SMTP
submission: a refusal shows the French sentence SMTP gives. Reading a message marks
it \\Seen like an IMAP FETCH of its body (which sends a requested read receipt), and
every view and download is audited like an IMAP read."""
from __future__ import annotations

import asyncio
import datetime as dt
import dataclasses
import json
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import BodyPartReader, web

from dossier_bridge.filing import file_messages
from mailbox_store.feed import Change, MessageMeta
from mailbox_store.pages import FolderPage
from mailbox_store.messages import SEEN
from mailbox_store.store import MailboxInfo
from mailbox_store.thread import thread_root_of
from policy.attachments import PATIENT_MAX_PART_BYTES, sniff
from policy.conversation import normalise_address
from policy.decisions import Decision
from relay.imap import search as imap_search
from relay.imap.types import MessageView, SearchKey
from relay.outbound.outgoing_mail import recipient_decision, submit_message
from relay.web.shared import VIEW_CSP
from relay.web.context import FOLDERS, FORM, MULTIPART, WHO, Who, folder_or_404, uid_or_404
from relay.web.mailview import Person, Summary, attachment, full_view, summarise

if TYPE_CHECKING:
    from relay.web.app import Web

log = structlog.get_logger("relay.web")
PAGE = 50
THREAD_MAX = 30  # messages shown in one conversation: its newest (mailbox_store/thread.py)
SEARCH_SCAN = 5000  # newest messages of a folder a search reads (bounded work per request)
SEARCH_HITS = 500
MAX_TEXT = 100_000  # characters of a reply
STREAM_PER_SESSION = 3
STREAM_TOTAL = 2000
HEARTBEAT = 15.0
CLOSED_RULES = ("exchange_closed", "message_closed")
CLOSED_TEXT = "Le professionnel a mis fin à l'échange."


@dataclass(frozen=True)
class Row:
    folder: str  # URL name
    uid: int
    who: Person | None
    subject: str
    date: Any
    unread: bool
    attachments: int


@dataclass(frozen=True)
class Shown:
    """One message of a conversation as the page shows it."""
    folder: str
    uid: int
    view: Any  # mailview.FullView
    mine: bool  # sent by the patient (Sent folder)


_EPOCH = dt.datetime.fromtimestamp(0, dt.timezone.utc)


def _conversation_order(m: Shown) -> tuple[bool, dt.datetime, int, int]:
    """By Date; within one second (Date has no finer grain) a reply after what it
    answers: its thread depth (RFC 5322 §3.6.4 References) is larger."""
    s = m.view.summary
    depth = len(set(s.references) | set(s.in_reply_to))
    return (s.date is None, s.date or _EPOCH, depth, m.uid)


class TooBig(Exception):
    pass


def _url_folder(name: str) -> str:
    return next(k for k, (n, _) in FOLDERS.items() if n == name)


async def summaries(w: Web, space: MailboxInfo, folder: str, uidvalidity: int,
                    metas: Sequence[MessageMeta]) -> dict[int, Summary]:
    """The summaries of these messages, from the cache or parsed (in a thread)."""
    out: dict[int, Summary] = {}
    missing = []
    for m in metas:
        s = w.summaries.get((space.id, folder, uidvalidity, m.uid))
        if s is None:
            missing.append(m.uid)
        else:
            out[m.uid] = s
    limits = w.rt.config.attachments
    for start in range(0, len(missing), 25):  # bounded memory: 25 decrypted messages at a time
        raws = await w.store.fetch_raw_many(space.ins, folder, missing[start:start + 25])
        made = await asyncio.to_thread(lambda r=raws: {u: summarise(u, raw, limits) for u, raw in r.items()})
        for uid, s in made.items():
            w.summaries.put((space.id, folder, uidvalidity, uid), s)
        out.update(made)
    return out


def _reply_target(s: Summary, folder: str) -> str | None:
    """Whom answering this message writes to: the professional (their MSSanté Reply-To
    when set), or for one's own sent message, its first recipient."""
    if folder == "Sent":
        return s.to[0].address if s.to else None
    person = s.reply_to or s.sender
    return person.address if person else None


def _search_key(text: str) -> SearchKey:
    """Subject, correspondent or body (the IMAP SEARCH engine's keys)."""
    return SearchKey("OR", (SearchKey("SUBJECT", (text,)), SearchKey("OR", (
        SearchKey("FROM", (text,)), SearchKey("OR", (SearchKey("TO", (text,)), SearchKey("BODY", (text,))))))))


def _search(key: SearchKey, raws: dict[int, bytes], metas: dict[int, MessageMeta]) -> list[int]:
    hits = []
    for uid in sorted(raws, reverse=True):
        m = metas[uid]
        view = MessageView(0, uid, m.flags, m.internal_date, m.size)
        if imap_search.matches(key, view, raws[uid], 0, 0):
            hits.append(uid)
    return hits


def _disposition(kind: str, filename: str) -> str:
    """RFC 6266: an ASCII fallback name and the real one (RFC 8187 encoding)."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_" for c in filename)
    return f"{kind}; filename=\"{ascii_name or 'fichier'}\"; filename*=UTF-8''{urllib.parse.quote(filename)}"


def routes(app: web.Application, w: Web) -> None:
    store = w.store

    async def messagerie(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        key = request.query.get("dossier", "reception")
        folder, title = folder_or_404(key)
        page = _page(request)
        query = request.query.get("q", "").strip()[:200]
        hits = None
        if query:
            hits = await _find(w, who, folder, query)
        got = await _folder_page(w, who.space.id, folder, (page - 1) * PAGE, hits)
        if got is None:
            raise web.HTTPNotFound()
        sums = await summaries(w, who.space, folder, got.uidvalidity, got.messages)
        macro = w.env.get_template("list_row.html").module.row  # type: ignore[attr-defined]
        rows = []
        for m in got.messages:
            unread = SEEN not in m.flags
            rows.append(w.rows.html((who.space.id, key, got.uidvalidity, m.uid, unread),
                                    lambda m=m, unread=unread: _row(key, folder, m, sums[m.uid], unread), macro))
        total = len(hits) if hits is not None else got.total
        pages = max(1, -(-total // PAGE))
        return w.render(request, "messagerie.html", title="Messagerie", rows=rows, folder_key=key,
                        folder_title=title, folders=FOLDERS, page=page, pages=pages, query=query,
                        total=total, unseen=got.unseen)

    async def conversation(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        key = request.match_info["dossier"]
        folder, title = folder_or_404(key)
        uid = uid_or_404(request.match_info["uid"])
        view, root, meta = await _main_view(w, who, folder, uid)
        shown = [Shown(key, uid, view, folder == "Sent")]
        shown += await _thread(w, who, folder, uid, root)
        shown.sort(key=_conversation_order)
        await w.audit(who, "message.read", f"{folder}: {len(shown)} message(s) (web, uid {uid})")
        if who.own and SEEN not in meta.flags:
            # as an IMAP FETCH of the body: \Seen, which sends a requested read receipt
            await store.store_flags(who.space.id, folder, [uid], "+", [SEEN])
        target = _reply_target(view.summary, folder)
        state, refusal = await _reply_state(w, who.space, target, view.summary)
        return w.render(request, "conversation.html", title=view.summary.subject or "(sans objet)",
                        messages=shown, folder_key=key, folder_title=title, uid=uid, target=target,
                        reply_state=state, refusal=refusal, closed_text=CLOSED_TEXT, error=None, text="",
                        preview=request.query.get("apercu"))

    async def download(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        folder, _ = folder_or_404(request.match_info["dossier"])
        uid = uid_or_404(request.match_info["uid"])
        part = request.match_info["part"]
        found = await store.message_with_raw(who.space, folder, uid)
        if found is None:
            raise web.HTTPNotFound()
        raw = found[1]
        got = await asyncio.to_thread(attachment, raw, part, w.rt.config.attachments)
        if got is None:
            raise web.HTTPNotFound()
        view, content = got
        inline = request.query.get("vue") == "1" and view.viewable
        await w.audit(who, "attachment.download", f"{folder} uid {uid} part {part} ({'view' if inline else 'download'})")
        resp = web.Response(body=content, content_type=view.mime_type if inline else "application/octet-stream")
        resp.headers["Content-Disposition"] = _disposition("inline" if inline else "attachment", view.filename)
        if inline:
            resp.headers["Content-Security-Policy"] = VIEW_CSP
            resp.headers["X-Frame-Options"] = "SAMEORIGIN"
        return resp

    async def file_attachment(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        key = request.match_info["dossier"]
        folder, _ = folder_or_404(key)
        uid = uid_or_404(request.match_info["uid"])
        part = request.match_info["part"]
        found = await store.message_with_raw(who.space, folder, uid)
        if found is None:
            raise web.HTTPNotFound()
        raw = found[1]
        if await asyncio.to_thread(attachment, raw, part, w.rt.config.attachments) is None:
            raise web.HTTPNotFound()
        done = await file_messages(store, who.space, folder, [uid], w.rt.config.attachments, who.actor,
                                   source=who.ip, only_part=part)
        if done.filed:
            who.session.flash.append("Document enregistré dans votre dossier.")
        elif done.not_filed:
            who.session.flash.append("Ce document n'a pas pu être enregistré dans votre dossier "
                                     "(la raison figure dans l'historique des accès).")
        else:
            who.session.flash.append("Ce document est déjà dans votre dossier.")
        raise web.HTTPSeeOther(f"/messagerie/{key}/{uid}")

    async def reply(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        key = request.match_info["dossier"]
        folder, _ = folder_or_404(key)
        uid = uid_or_404(request.match_info["uid"])
        if await store.message_meta(who.space.id, folder, uid) is None:
            raise web.HTTPNotFound()
        try:
            fields, upload = await _read_form(request)
        except TooBig:
            return _refused(w, request, f"Pièce jointe trop volumineuse : {PATIENT_MAX_PART_BYTES // 2**20} Mo "
                            "au plus.", f"/messagerie/{key}/{uid}", status=413)
        raw = await store.fetch_raw(who.space.ins, folder, uid)
        original = await asyncio.to_thread(summarise, uid, raw, w.rt.config.attachments)
        target = _reply_target(original, folder)
        text = fields.get("texte", "")
        if target is None or not text.strip():
            return _refused(w, request, "Écrivez votre réponse avant de l'envoyer." if target else
                            "Ce message n'a pas d'expéditeur à qui répondre.", f"/messagerie/{key}/{uid}")
        subject = original.subject if original.subject.lower().startswith("re:") else f"Re: {original.subject}"
        refs = tuple(original.references) + ((original.message_id,) if original.message_id else ())
        in_reply_to = (original.message_id,) if original.message_id else ()
        refused = await _send(w, who, target, subject, text, upload, in_reply_to, refs)
        if refused is not None:
            return _refused(w, request, refused, f"/messagerie/{key}/{uid}")
        who.session.flash.append("Votre réponse a été envoyée.")
        raise web.HTTPSeeOther(f"/messagerie/{key}/{uid}")

    async def compose_form(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        if not who.pharmacies:
            raise web.HTTPNotFound()
        return w.render(request, "compose.html", title="Écrire à ma pharmacie", pharmacies=who.pharmacies)

    async def compose(request: web.Request) -> web.StreamResponse:
        who: Who = request[WHO]
        if not who.pharmacies:
            raise web.HTTPNotFound()
        try:
            fields, upload = await _read_form(request)
        except TooBig:
            return _refused(w, request, f"Pièce jointe trop volumineuse : {PATIENT_MAX_PART_BYTES // 2**20} Mo "
                            "au plus.", "/ecrire", status=413)
        target = fields.get("destinataire", "")
        if target not in who.pharmacies:
            raise web.HTTPNotFound()
        subject = fields.get("objet", "").strip()[:200] or "Ordonnance"
        text = fields.get("texte", "")
        if not text.strip() and upload is None:
            return _refused(w, request, "Écrivez un message ou joignez un fichier avant d'envoyer.", "/ecrire")
        refused = await _send(w, who, target, subject, text, upload, (), ())
        if refused is not None:
            return _refused(w, request, refused, "/ecrire")
        who.session.flash.append("Votre message a été envoyé à la pharmacie.")
        raise web.HTTPSeeOther("/messagerie?dossier=envoyes")

    async def events(request: web.Request) -> web.StreamResponse:
        """Server-Sent Events: "nouveau" when a message arrives in the space shown."""
        who: Who = request[WHO]
        session = who.session
        if session.streams >= STREAM_PER_SESSION or w.streams >= STREAM_TOTAL:
            raise web.HTTPTooManyRequests()
        queue: asyncio.Queue[Change] = asyncio.Queue(100)
        space_id = who.space.id

        def on_change(c: Change) -> None:
            if c.mailbox_id == space_id and c.kind == "message.new" and not queue.full():
                queue.put_nowait(c)

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
        session.streams += 1
        w.streams += 1
        store.feed.listen(on_change)
        stopping: asyncio.Future[bool] | None = None
        try:
            await resp.prepare(request)
            await resp.write(b"retry: 5000\n\n")
            stopping = asyncio.ensure_future(w.stopping.wait())  # ends the stream at once on stop
            while not w.stopping.is_set() and w.sessions.alive(session):
                got = asyncio.ensure_future(queue.get())
                await asyncio.wait((got, stopping), timeout=HEARTBEAT, return_when=asyncio.FIRST_COMPLETED)
                if w.stopping.is_set():
                    got.cancel()
                    break
                if not got.done():
                    got.cancel()
                    # a comment keeps proxies from closing the stream; and a guardian
                    # removed meanwhile stops hearing of the child's mail
                    if session.space_ins != who.user.ins and \
                            all(c.id != space_id for c in await store.wards(who.user.id)):
                        break
                    await resp.write(b": ping\n\n")
                    continue
                c = got.result()
                data = json.dumps({"dossier": _url_folder(c.folder) if c.folder in
                                   {n for n, _ in FOLDERS.values()} else "", "uid": c.uid})
                await resp.write(f"event: nouveau\ndata: {data}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            if stopping is not None:
                stopping.cancel()
            store.feed.unlisten(on_change)
            session.streams -= 1
            w.streams -= 1
        return resp

    r = app.router
    r.add_get("/messagerie", messagerie)
    r.add_get("/messagerie/{dossier}/{uid}", conversation)
    r.add_get("/messagerie/{dossier}/{uid}/pj/{part}", download)
    r.add_post("/messagerie/{dossier}/{uid}/pj/{part}/dossier", file_attachment)
    r.add_post("/messagerie/{dossier}/{uid}/repondre", reply)
    r.add_get("/ecrire", compose_form)
    r.add_post("/ecrire", compose)
    r.add_get("/evenements", events)


async def _folder_page(w: Web, mailbox_id: int, folder: str, offset: int, hits: list[int] | None) -> FolderPage | None:
    """A list page, its counts (and the first page itself) from relay/web/counts.py
    when they are known."""
    known = w.counts.get(mailbox_id, folder)
    epoch = w.counts.epoch
    first = offset == 0 and hits is None
    kept = w.counts.first_page(mailbox_id, folder, PAGE) if first and known is not None else None
    if kept is not None and known is not None and kept[0] == known[0]:
        return FolderPage(known[0], known[1], known[2], list(kept[1]))
    got = await w.store.folder_page(mailbox_id, folder, offset, PAGE, hits, with_counts=known is None)
    if got is not None and first:
        w.counts.put_first_page(mailbox_id, folder, got.uidvalidity, PAGE, got.messages, epoch)
    if got is None or (known is not None and known[0] == got.uidvalidity):
        return got if got is None or known is None else dataclasses.replace(got, total=known[1], unseen=known[2])
    if known is not None:  # the folder was made anew meanwhile (another UIDVALIDITY)
        got = await w.store.folder_page(mailbox_id, folder, offset, PAGE, hits)
        if got is None:
            return None
    w.counts.put(mailbox_id, folder, got.uidvalidity, got.total, got.unseen, epoch)
    return got


def _row(key: str, folder: str, m: MessageMeta, s: Summary, unread: bool) -> Row:
    person = (s.to[0] if s.to else None) if folder == "Sent" else (s.sender or None)
    return Row(key, m.uid, person, s.subject, s.date or m.internal_date, unread, s.attachments)


def _page(request: web.Request) -> int:
    text = request.query.get("page", "1")
    return int(text) if text.isdigit() and 0 < int(text) < 1_000_000 else 1


def _refused(w: Web, request: web.Request, text: str, back: str, status: int = 400) -> web.Response:
    return w.render(request, "refused.html", status=status, title="Message non envoyé", text=text, back=back)


async def _find(w: Web, who: Who, folder: str, query: str) -> list[int]:
    """UIDs matching the search, newest first (IMAP SEARCH's matching)."""
    got = await w.store.folder_page(who.space.id, folder, 0, SEARCH_SCAN)
    if got is None:
        raise web.HTTPNotFound()
    key = _search_key(query)
    metas = {m.uid: m for m in got.messages}
    uids = [m.uid for m in got.messages]
    hits: list[int] = []
    for start in range(0, len(uids), 100):
        raws = await w.store.fetch_raw_many(who.space.ins, folder, uids[start:start + 100])
        hits += await asyncio.to_thread(_search, key, raws, metas)
        if len(hits) >= SEARCH_HITS:
            break
    await w.audit(who, "message.search", f"{folder}: {len(uids)} message(s) searched (web)")
    return hits[:SEARCH_HITS]


def _view_and_root(uid: int, raw: bytes, limits: Any) -> tuple[Any, str | None]:
    """The message's full view and its thread root: both parse it, in one worker hop
    (the root's header parsing was 5 % of the event loop's time, py-spy --gil)."""
    return full_view(uid, raw, limits), thread_root_of(raw)


async def _thread(w: Web, who: Who, folder: str, uid: int, root: str | None) -> list[Shown]:
    """The other messages of the conversation in INBOX and Sent, however old: the
    store's thread index (mailbox_store/thread.py) names them, one indexed query."""
    members = await w.store.thread_member_blobs(who.space.id, who.space.ins, root, limit=THREAD_MAX)
    out: list[Shown] = []
    limits = w.rt.config.attachments
    for name in ("INBOX", "Sent"):
        wanted = [(u, b) for f, u, b in members if f == name and not (f == folder and u == uid)]
        if not wanted:
            continue
        missing: dict[int, str] = {}
        for u, b in wanted:  # kept views need no decryption nor parse (relay/web/viewcache.py)
            kept = w.views.get(b, u, limits)
            if kept is None:
                missing[u] = b
            else:
                out.append(Shown(_url_folder(name), u, kept[0], name == "Sent"))
        if not missing:
            continue
        raws = await w.store.fetch_raw_many(who.space.ins, name, list(missing))
        made = await asyncio.to_thread(lambda r=raws: [(u, *_view_and_root(u, b, limits)) for u, b in r.items()])
        for u, view, member_root in made:
            w.views.put(missing[u], view, member_root, limits)
            out.append(Shown(_url_folder(name), u, view, name == "Sent"))
    return out


async def _main_view(w: Web, who: Who, folder: str, uid: int) -> tuple[Any, str | None, MessageMeta]:
    """The opened message's view, thread root and row: from the view cache by its blob
    id (left sealed then), else decrypted and parsed in a thread, and kept."""
    limits = w.rt.config.attachments
    views = w.views
    views.use_rules(limits)  # before `known` is asked in the reader thread
    found = await w.store.message_unless_known(who.space, folder, uid, views.__contains__)
    if found is None:
        raise web.HTTPNotFound()
    meta, blob, raw = found
    kept = views.get(blob, uid, limits) if raw is None else None
    if kept is not None:
        return kept[0], kept[1], meta
    if raw is None:  # dropped from the cache meanwhile: read it again, decrypted
        again = await w.store.message_with_raw(who.space, folder, uid)
        if again is None:
            raise web.HTTPNotFound()
        meta, raw = again
    view, root = await asyncio.to_thread(_view_and_root, uid, raw, limits)
    views.put(blob, view, root, limits)
    return view, root, meta


async def _reply_state(w: Web, space: MailboxInfo, target: str | None, s: Summary) -> tuple[str, str | None]:
    """"open", "closed" (the professional ended the exchange), or "refused" with the
    rule's French sentence (the one SMTP gives)."""
    if target is None:
        return "refused", "Ce message n'a pas d'expéditeur à qui répondre."
    refs = tuple(s.references) + ((s.message_id,) if s.message_id else ())
    decision = await recipient_decision(w.rt, space, target, (s.message_id,) if s.message_id else (), refs)
    if decision.accepted:
        return "open", None
    if decision.rule in CLOSED_RULES:
        return "closed", None
    return "refused", decision.fr


async def _read_form(request: web.Request) -> tuple[dict[str, str], tuple[str, bytes] | None]:
    """The text fields and the optional file of a form (multipart or urlencoded); the
    file is read in chunks and refused (TooBig) past the patients' 5 MB, before the
    rest is ever held (DESIGN.md §4)."""
    reader = request.get(MULTIPART)
    if reader is None:
        form = request[FORM]
        return {k: str(v)[:MAX_TEXT] for k, v in form.items() if isinstance(v, str)}, None
    fields: dict[str, str] = {}
    upload = None
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.filename is not None:
            data = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                data += chunk
                if len(data) > PATIENT_MAX_PART_BYTES:
                    raise TooBig()
            if data:
                upload = (part.filename[:200], bytes(data))
        else:
            data = bytearray()
            while chunk := await part.read_chunk(64 * 1024):
                data += chunk
                if len(data) > MAX_TEXT * 4:
                    raise TooBig()
            fields[part.name] = data.decode("utf-8", "replace")[:MAX_TEXT]
    return fields, upload


async def _send(w: Web, who: Who, target: str, subject: str, text: str, upload: tuple[str, bytes] | None,
                in_reply_to: tuple[str, ...], references: tuple[str, ...]) -> str | None:
    """Build the patient's message and submit it; the French refusal, or None when
    it is in Sent and queued."""
    rcpt = normalise_address(target) or target
    decision = await recipient_decision(w.rt, who.space, rcpt, in_reply_to, references)
    if not decision.accepted:
        return decision.fr
    sender = f"{who.space.ins}@{w.rt.config.domain}"
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = rcpt
    msg["Subject"] = subject.replace("\r", " ").replace("\n", " ")
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to[0]
    if references:
        msg["References"] = " ".join(references[-20:])
    msg.set_content(text.replace("\r\n", "\n") or " ", charset="utf-8")
    if upload is not None:
        name, data = upload
        kind = sniff(data)
        maintype, _, subtype = (kind.mime_type if kind else "application/octet-stream").partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=name)
    raw = msg.as_bytes()
    done = await submit_message(w.rt, who.space, raw, sender, [rcpt])
    if isinstance(done, Decision):
        return done.fr
    log.info("web.sent", envelope_id=done.envelope_id, ins_hash=w.rt.master.pseudonym(who.space.ins))
    return None
