"""CONDSTORE and QRESYNC (RFC 7162): the parameters of SELECT, FETCH and STORE that
they add, and the responses they send. The modification sequences themselves are the
store's (mailbox_store/modseq.py); this module only reads them.

Implementation notes:
- CONDSTORE is enabled for a session by ENABLE CONDSTORE or QRESYNC, SELECT (CONDSTORE)
  or any "CONDSTORE-enabling command" (RFC 7162 §3.1: FETCH MODSEQ or CHANGEDSINCE,
  SEARCH MODSEQ, STORE UNCHANGEDSINCE, STATUS HIGHESTMODSEQ). A mailbox selected at
  that moment gets its HIGHESTMODSEQ in an untagged OK (§3.1.2.1), once.
- The MODSEQ a FETCH shows is the one of the session's view (selected.py), the same
  view its FLAGS come from: a client must never store new flags under an old modseq,
  nor old flags under a new one, or it would miss a change for good.
- QRESYNC (§3.2): a client that knows the folder's UIDVALIDITY and a modseq gets, on
  SELECT, the UIDs expunged since (VANISHED (EARLIER)) and the flags changed since,
  instead of fetching every message's flags again; expunges are then announced with
  VANISHED instead of EXPUNGE (§3.2.10).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from relay.imap.parser import ParseError, Parser
from relay.imap.selected import Selected, flag_list
from relay.imap.sequence import compress, membership
from relay.imap.types import SearchKey, SequenceSet

if TYPE_CHECKING:
    from relay.imap.session import Session


@dataclass(frozen=True, slots=True)
class Qresync:
    """SELECT's QRESYNC parameter (RFC 7162 §3.2.5): what the client last knew."""

    uidvalidity: int
    modseq: int
    known_uids: SequenceSet | None = None


@dataclass(frozen=True, slots=True)
class SelectParams:
    condstore: bool = False
    qresync: Qresync | None = None


def _mod_sequence(p: Parser, zero: bool = False) -> int:
    """RFC 7162 §7 mod-sequence-value (1..2^63-1), or mod-sequence-valzer when zero."""
    value = p.number64()
    if value == 0 and not zero:
        raise p.error("modseq nul / mod-sequence must not be zero")
    return value


def parse_select_params(p: Parser, qresync_enabled: bool) -> SelectParams:
    """RFC 4466 §2.1 select-params after the mailbox name (the SP already read):
    "(" select-param *(SP select-param) ")"."""
    p.expect(b"(")
    condstore, qresync = False, None
    while True:
        name = p.atom().upper()
        if name == "CONDSTORE":
            condstore = True
        elif name == "QRESYNC":
            if not qresync_enabled:  # RFC 7162 §3.2.5: only after ENABLE QRESYNC
                raise p.error("QRESYNC non active (ENABLE QRESYNC) / QRESYNC not enabled")
            p.sp()
            p.expect(b"(")
            uidvalidity = p.nz_number()
            p.sp()
            modseq = _mod_sequence(p)
            known: SequenceSet | None = None
            if p.take(b" "):
                if p.peek() != b"(":
                    known = p.sequence_set()
                    p.take(b" ")
                if p.take(b"("):  # seq-match-data: a hint we do not need (expunges are kept)
                    p.sequence_set()
                    p.sp()
                    p.sequence_set()
                    p.expect(b")")
            p.expect(b")")
            qresync = Qresync(uidvalidity, modseq, known)
        else:
            raise p.error("parametre SELECT inconnu / unknown SELECT parameter")
        if p.take(b")"):
            break
        p.sp()
    return SelectParams(condstore or qresync is not None, qresync)


@dataclass(frozen=True, slots=True)
class FetchModifiers:
    changedsince: int | None = None
    vanished: bool = False


def parse_fetch_modifiers(p: Parser) -> FetchModifiers:
    """RFC 4466 §2.4 fetch-modifiers: "(" CHANGEDSINCE n [SP VANISHED] ")" (RFC 7162
    §3.1.4.1, §3.2.6)."""
    p.expect(b"(")
    changedsince, vanished = None, False
    while True:
        name = p.atom().upper()
        if name == "CHANGEDSINCE":
            p.sp()
            changedsince = _mod_sequence(p)
        elif name == "VANISHED":
            vanished = True
        else:
            raise p.error("modificateur FETCH inconnu / unknown FETCH modifier")
        if p.take(b")"):
            break
        p.sp()
    if vanished and changedsince is None:  # RFC 7162 §3.2.6
        raise p.error("VANISHED exige CHANGEDSINCE / VANISHED needs CHANGEDSINCE")
    return FetchModifiers(changedsince, vanished)


def parse_store_modifiers(p: Parser) -> int:
    """RFC 7162 §3.1.3 store-modifier: "(" UNCHANGEDSINCE mod-sequence-valzer ")"."""
    p.expect(b"(")
    if p.atom().upper() != "UNCHANGEDSINCE":
        raise p.error("modificateur STORE inconnu / unknown STORE modifier")
    p.sp()
    value = _mod_sequence(p, zero=True)
    p.expect(b")")
    return value


def enable(s: "Session", qresync: bool = False) -> list[bytes]:
    """Turn CONDSTORE (and QRESYNC) on for the session; the untagged HIGHESTMODSEQ a
    selected mailbox then owes the client (RFC 7162 §3.1.2.1), if it is the first time."""
    lines: list[bytes] = []
    sel = s.selected
    if not s.condstore and sel is not None:
        lines.append(b"* OK [HIGHESTMODSEQ %d] modseqs enabled" % sel.highestmodseq)
    s.condstore = True
    if sel is not None:
        sel.condstore = True
        sel.qresync = sel.qresync or qresync
    if qresync:
        s.qresync = True
    return lines


def select_lines(sel: Selected) -> list[bytes]:
    """What a CONDSTORE SELECT adds to the untagged responses (RFC 7162 §3.1.2.1)."""
    return [b"* OK [HIGHESTMODSEQ %d] highest" % sel.highestmodseq]


async def qresync_lines(s: "Session", sel: Selected, q: Qresync) -> list[bytes]:
    """RFC 7162 §3.2.5.1: VANISHED (EARLIER) for the known UIDs expunged since the
    client's modseq, then the known messages changed since. Nothing when the folder's
    UIDVALIDITY changed: the client must throw its cache away anyway."""
    if q.uidvalidity != sel.uidvalidity:
        return []
    largest = max(sel.uidnext - 1, sel.uids[-1] if sel.uids else 0)
    known = membership(q.known_uids, largest) if q.known_uids is not None else None
    lines: list[bytes] = []
    gone = [u for u in await s.server.store.vanished_since(sel.folder_id, q.modseq)
            if known is None or u in known]
    if gone:
        lines.append(b"* VANISHED (EARLIER) " + compress(gone).encode())
    for seq, uid in enumerate(sel.uids, 1):
        m = sel.meta[uid]
        if m.modseq > q.modseq and (known is None or uid in known):
            lines.append(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))" % (seq, uid, flag_list(m.flags), m.modseq))
    return lines


async def vanished_lines(s: "Session", sel: Selected, uids: SequenceSet, since: int) -> list[bytes]:
    """UID FETCH ... (CHANGEDSINCE n VANISHED) (RFC 7162 §3.2.6): the UIDs of the set
    expunged since n, as VANISHED (EARLIER)."""
    largest = max(sel.uidnext - 1, sel.uids[-1] if sel.uids else 0)
    wanted = membership(uids, largest)
    gone = [u for u in await s.server.store.vanished_since(sel.folder_id, since) if u in wanted]
    return [b"* VANISHED (EARLIER) " + compress(gone).encode()] if gone else []


def require_uid(uid: bool, mods: FetchModifiers) -> None:
    if mods.vanished and not uid:  # RFC 7162 §3.2.6: only UID FETCH
        raise ParseError("VANISHED seulement avec UID FETCH / VANISHED only with UID FETCH")


def uses_modseq(key: SearchKey) -> bool:
    """Whether a SEARCH key has MODSEQ anywhere (an explicit stack: no recursion)."""
    stack = [key]
    while stack:
        k = stack.pop()
        if k.op == "MODSEQ":
            return True
        stack.extend(a for a in k.args if isinstance(a, SearchKey))
    return False


def hits_modseq(sel: Selected, hits: list[int], uid: bool, returns: list[str] | None) -> int:
    """RFC 7162 §3.1.5 / RFC 4731 §3.2: the MODSEQ a SEARCH MODSEQ reply carries: the
    highest of the messages returned, or with RETURN (MIN) or (MAX) alone, that one's."""
    def modseq(h: int) -> int:
        return sel.meta[h if uid else sel.uids[h - 1]].modseq

    opts = set(returns or ["ALL"])
    if opts == {"MIN"}:
        return modseq(min(hits))
    if opts == {"MAX"}:
        return modseq(max(hits))
    return max(modseq(h) for h in hits)
