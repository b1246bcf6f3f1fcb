"""Parsing one IMAP command (RFC 3501 §9, RFC 9051 §9 formal syntax).

The server's line reader assembles a complete command before parsing it: each literal
the client announced ("{n}" or "{n+}", RFC 7888 LITERAL+) is kept inline as
"{n}\\r\\n" followed by its n octets, and the final CRLF is dropped. A `Parser` is a
cursor over those bytes; command handlers call its methods in the order of the command's
grammar (after the tag and the name: `p.sp(); mbox = p.mailbox(); p.end()`).

Every malformed input raises ParseError and nothing else: the bytes come from the
network, and an IndexError escaping here would drop the connection instead of
answering "tag BAD". Numbers are length-checked before int(), recursion (search keys)
is depth-limited, all decoding is strict and caught, and tests/fuzz holds the harness
that checks it. Error texts are 7-bit (French without accents, then English) because
IMAP4rev1 resp-text is US-ASCII (RFC 3501 §9 TEXT-CHAR).
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Collection

from relay.imap import utf7
from relay.imap.sequence import MAX_NUMBER, ParseError, parse_sequence_set
from relay.imap.types import FetchAtt, ReturnOpts, SearchKey, Section, SequenceSet

__all__ = ["BadCharset", "ParseError", "Parser", "literal_announcement"]

MAX_NUMBER64 = 2**63 - 1  # RFC 9051 §9 number64
MAX_SEARCH_DEPTH = 32


class BadMailboxName(ParseError):
    """A mailbox name that is not valid modified UTF-7 (RFC 3501 §5.1.3). The command is
    well-formed, only the name cannot exist: NO, not BAD, as Dovecot answers."""


# A LIST pattern no folder name matches (names never hold NUL): what an invalid modified
# UTF-7 pattern becomes, so that LIST answers OK with nothing, as Dovecot does
NO_MATCH = "\x00"


class BadCharset(ParseError):
    """SEARCH with a CHARSET we do not support. RFC 3501 §6.4.4 answers NO (not BAD)
    with the BADCHARSET response code listing what we accept (RFC 3501 §7.1)."""


# RFC 9051 §9: ATOM-CHAR is any CHAR except atom-specials, i.e. printable US-ASCII
# without "(" ")" "{" SP "%" "*" DQUOTE "\" "]". ASTRING-CHAR adds "]"; list-char adds
# the wildcards "%" and "*".
_PRINTABLE = frozenset(range(0x21, 0x7F))
ATOM_CHARS = _PRINTABLE - frozenset(b'(){%*"\\]')
ASTRING_CHARS = ATOM_CHARS | {ord("]")}
TAG_CHARS = ASTRING_CHARS - {ord("+")}
LIST_CHARS = ASTRING_CHARS | frozenset(b"%*")
_SEARCH_ATOM_CHARS = ASTRING_CHARS | frozenset(range(0x80, 0x100))  # imaplib's 8-bit atoms
_SEQSET_CHARS = frozenset(b"0123456789:*,$")
_SEQSET_RUN = re.compile(rb"[0-9:*,$]*")  # the same characters, matched in C: a set may be 60 KB
_LETTERS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
_DIGITS = frozenset(b"0123456789")
_FETCH_WORD_CHARS = _LETTERS | _DIGITS | {ord(".")}
_SECTION_WORD_CHARS = _LETTERS | {ord(".")}
# RFC 5322 §3.6.8 ftext: a header field name is printable US-ASCII except ":".
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")
# RFC 9051 §5.1 (after RFC 5198): no C0/C1 controls, DEL, LINE or PARAGRAPH SEPARATOR
# in mailbox names; they would reach the store and the logs.
_FORBIDDEN_IN_NAME = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ECHO_MAX = 40  # client text quoted back in an error is cut to this

_SYSTEM_FLAGS = {f.upper(): f for f in ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")}
_MONTHS = {m.upper(): i for i, m in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}
_CHARSETS = {"US-ASCII": "US-ASCII", "UTF-8": "UTF-8"}

# RFC 3501 §6.4.5: the macros are only valid alone, not inside a parenthesised list.
_FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_FETCH_SIMPLE = frozenset({"ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER",
                           "RFC822.SIZE", "RFC822.TEXT", "BODYSTRUCTURE", "UID",
                           "MODSEQ"})  # RFC 7162 §3.1.4
_SECTION_TEXTS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"})

# RFC 3501 §6.4.4 search keys that take no argument.
_SEARCH_FLAG_KEYS = frozenset({
    "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
    "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN"})
SEARCH_RETURN_OPTS = frozenset({"MIN", "MAX", "ALL", "COUNT"})  # RFC 4731 §3, no SAVE (RFC 5182)
# RFC 5258 §6 return-option, RFC 6154 SPECIAL-USE, RFC 5819 STATUS (handled apart).
_LIST_RETURN_OPTS = frozenset({"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"})


def _echo(text: str) -> str:
    return repr(text[:_ECHO_MAX])


def literal_announcement(line: bytes) -> tuple[int, bool] | None:
    """(n, nonsync) when the line (with or without its CRLF) ends with a literal
    announcement "{n}" / "{n+}" (also "~{n}", RFC 3516 literal8), else None.

    For (n, False) the server sends "+ " before reading n octets (RFC 9051 §7.5);
    for (n, True) the client sends them at once (RFC 7888). A valid command cannot
    otherwise end in "}", so there is no false positive. Never raises: a size of more
    than 19 digits (beyond number64) comes back as 2**63, which the reader's size limit
    refuses like any other literal too large, so it needs no second error path.
    """
    if line.endswith(b"\r\n"):
        line = line[:-2]
    elif line.endswith(b"\n"):
        line = line[:-1]
    if not line.endswith(b"}"):
        return None
    inner = line[line.rfind(b"{") + 1:-1] if b"{" in line else b""
    nonsync = inner.endswith(b"+")
    digits = inner[:-1] if nonsync else inner
    if not digits or not digits.isdigit():  # bytes.isdigit: ASCII digits only
        return None
    if len(digits) > 19:  # keeps int() cheap on a hostile line of digits
        return MAX_NUMBER64 + 1, nonsync
    return int(digits), nonsync


class Parser:
    """A cursor over one complete command. Methods consume what they parse and raise
    ParseError (carrying the tag once it is known) when the input does not match.

    utf8: the client enabled UTF8=ACCEPT (RFC 6855) or IMAP4rev2 (RFC 9051 §5.1.3), so
    mailbox names are UTF-8 and not modified UTF-7.
    """

    def __init__(self, data: bytes, *, utf8: bool = False, max_depth: int = MAX_SEARCH_DEPTH,
                 spooled_at: Collection[int] = ()) -> None:
        self.data = data
        # where the reader took literals' octets out of data (APPEND messages sealed
        # into the spool as they arrived): each "{n}" CRLF there is followed by nothing
        self.spooled_at = frozenset(spooled_at)
        self.pos = 0
        self.utf8 = utf8
        self.max_depth = max_depth
        self.tag_value: str | None = None

    # -- cursor primitives -------------------------------------------------

    def error(self, message: str) -> ParseError:
        return ParseError(message, self.tag_value)

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def remaining(self) -> bytes:
        return self.data[self.pos:]

    def skip_rest(self) -> None:
        """Consume the rest of the command (arguments the server ignores, e.g. ID's)."""
        self.pos = len(self.data)

    def peek(self) -> bytes:
        """The next octet (b"" at the end), not consumed."""
        return self.data[self.pos:self.pos + 1]

    def peek_word(self) -> str:
        """The atom that comes next, upper-cased ("" when none), not consumed."""
        start = self.pos
        word = self._run(ATOM_CHARS)
        self.pos = start
        return word.decode("ascii").upper()

    def has_prefix(self, token: bytes) -> bool:
        """Whether the input continues with token (ASCII case-insensitive)."""
        return self.data[self.pos:self.pos + len(token)].upper() == token.upper()

    def take(self, token: bytes) -> bool:
        """Consume token (ASCII case-insensitive) when it comes next."""
        if self.has_prefix(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: bytes) -> None:
        if not self.take(token):
            raise self.error(f"attendu / expected {token.decode('ascii')!r}")

    def _byte(self) -> int:
        """The next octet as an int, or -1 at the end."""
        return self.data[self.pos] if self.pos < len(self.data) else -1

    def _run(self, allowed: frozenset[int]) -> bytes:
        start = self.pos
        data = self.data
        while self.pos < len(data) and data[self.pos] in allowed:
            self.pos += 1
        return data[start:self.pos]

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.error("chaine en UTF-8 invalide / invalid UTF-8 in string") from None

    # -- tokens -----------------------------------------------------------------

    def tag(self) -> str:
        """RFC 9051 §9 tag = 1*<any ASTRING-CHAR except "+">."""
        raw = self._run(TAG_CHARS)
        if not raw:
            raise self.error("etiquette manquante / missing tag")
        self.tag_value = raw.decode("ascii")
        return self.tag_value

    def command(self) -> str:
        """The command name, upper-cased. "UID FETCH" is read as two calls with sp()."""
        return self.atom().upper()

    def sp(self) -> None:
        if not self.take(b" "):
            raise self.error("espace attendue / expected space")

    def end(self) -> None:
        """Nothing may follow (the CRLF that ended the command is not in the input)."""
        if not self.at_end():
            raise self.error("donnees en trop a la fin / unexpected data at end of command")

    def atom(self) -> str:
        raw = self._run(ATOM_CHARS)
        if not raw:
            raise self.error("atome attendu / expected atom")
        return raw.decode("ascii")

    def atom_list(self) -> list[str]:
        """"(" [atom *(SP atom)] ")": STATUS items, LIST selection options (RFC 5258)."""
        self.expect(b"(")
        atoms: list[str] = []
        if not self.take(b")"):
            atoms.append(self.atom())
            while not self.take(b")"):
                self.sp()
                atoms.append(self.atom())
        return atoms

    def _digits(self, max_digits: int) -> int:
        raw = self._run(_DIGITS)
        if not raw:
            raise self.error("nombre attendu / expected number")
        if len(raw) > max_digits:
            raise self.error("nombre trop grand / number too large")
        return int(raw)

    def number(self) -> int:
        """RFC 9051 §9 number: 32-bit unsigned."""
        value = self._digits(10)
        if value > MAX_NUMBER:
            raise self.error("nombre trop grand / number too large")
        return value

    def number64(self) -> int:
        """RFC 9051 §9 number64 (sizes: LARGER, SMALLER, literal lengths)."""
        value = self._digits(19)
        if value > MAX_NUMBER64:
            raise self.error("nombre trop grand / number too large")
        return value

    def nz_number(self) -> int:
        value = self.number()
        if value == 0:
            raise self.error("nombre non nul attendu / expected non-zero number")
        return value

    # -- strings ----------------------------------------------------------------

    def _literal(self, *, binary: bool = False) -> bytes:
        """RFC 9051 §4.3 literal "{n}" CRLF n octets; "{n+}" is RFC 7888 LITERAL+.
        NUL is refused (CHAR8 = %x01-ff) unless binary: RFC 3516 literal8 "~{n}"."""
        self.expect(b"{")
        size = self.number64()
        self.take(b"+")
        self.expect(b"}")
        if not self.take(b"\r\n"):
            raise self.error("CRLF attendu apres la taille du litteral / expected CRLF after literal size")
        if self.pos in self.spooled_at:  # only message_literal() may take it
            raise self.error("litteral trop grand a cet endroit / literal too large here")
        if size > len(self.data) - self.pos:
            raise self.error("litteral plus court qu'annonce / literal shorter than announced")
        value = self.data[self.pos:self.pos + size]
        self.pos += size
        if not binary and b"\x00" in value:
            raise self.error("octet NUL dans un litteral / NUL octet in literal")
        return value

    def _quoted(self) -> bytes:
        """RFC 9051 §9 quoted: DQUOTE *QUOTED-CHAR DQUOTE, only \\\\ and \\" escaped.
        8-bit octets are kept (RFC 9051 allows UTF-8 there); callers decode strictly."""
        self.expect(b'"')
        out = bytearray()
        data = self.data
        while self.pos < len(data):
            c = data[self.pos]
            self.pos += 1
            if c == 0x22:  # closing DQUOTE
                return bytes(out)
            if c == 0x5C:  # backslash
                if self.pos >= len(data) or data[self.pos] not in b'"\\':
                    raise self.error("echappement invalide / invalid escape in quoted string")
                out.append(data[self.pos])
                self.pos += 1
            elif c in (0x00, 0x0A, 0x0D):
                raise self.error("CR, LF ou NUL dans une chaine / CR, LF or NUL in quoted string")
            else:
                out.append(c)
        raise self.error("guillemet fermant manquant / missing closing quote")

    def string(self) -> bytes:
        """RFC 9051 §9 string = quoted / literal."""
        c = self._byte()
        if c == 0x22:
            return self._quoted()
        if c == 0x7B:
            return self._literal()
        raise self.error("chaine attendue / expected string")

    def astring(self) -> str:
        """RFC 9051 §9 astring = 1*ASTRING-CHAR / string, decoded as UTF-8."""
        if self._byte() in (0x22, 0x7B):
            return self._decode(self.string())
        raw = self._run(ASTRING_CHARS)
        if not raw:
            raise self.error("chaine attendue / expected astring")
        return raw.decode("ascii")

    def nstring(self) -> bytes | None:
        """RFC 9051 §9 nstring = string / nil."""
        if self._byte() in (0x22, 0x7B):
            return self.string()
        if self.take(b"NIL"):
            return None
        raise self.error("chaine ou NIL attendu / expected string or NIL")

    def literal_only(self) -> bytes:
        """The message of APPEND (RFC 9051 §6.3.12): a literal, or a literal8 "~{n}"
        (RFC 3516 §4.4, part of IMAP4rev2), which alone may hold NUL octets."""
        binary = self.take(b"~")
        if self._byte() != 0x7B:
            raise self.error("litteral attendu / expected literal")
        return self._literal(binary=binary)

    def message_literal(self) -> bytes | None:
        """literal_only() for APPEND's message, or None when the reader sealed that
        literal into a spool (spooled_at): the octets are not in this command; the
        spools come in the order of their literals."""
        if self.spooled_at:
            start = self.pos
            self.take(b"~")
            if self.take(b"{"):
                self.number64()
                self.take(b"+")
                if self.take(b"}\r\n") and self.pos in self.spooled_at:
                    return None
            self.pos = start
        return self.literal_only()

    # -- mailboxes -----------------------------------------------------------------

    def _mailbox_name(self, raw: str) -> str:
        # RFC 3501 §5.1.3: without UTF8=ACCEPT, names travel in modified UTF-7; with it
        # (RFC 6855 §3, RFC 9051 §5.1.3) they are plain UTF-8 and "&" means itself.
        if not self.utf8:
            try:
                raw = utf7.decode(raw)
            except ValueError as exc:
                raise BadMailboxName(f"nom de dossier invalide / invalid mailbox name: {exc}",
                                     self.tag_value) from None
        if _FORBIDDEN_IN_NAME.search(raw):
            raise self.error("caractere de controle dans un nom de dossier / control character in mailbox name")
        return raw

    def mailbox(self) -> str:
        """RFC 9051 §9 mailbox = "INBOX" / astring; INBOX is case-insensitive (§5.1)."""
        name = self._mailbox_name(self.astring())
        return "INBOX" if name.upper() == "INBOX" else name

    def list_mailbox(self) -> str:
        """RFC 9051 §9 list-mailbox = 1*list-char / string: a LIST pattern with % and *."""
        if self._byte() in (0x22, 0x7B):
            raw = self._decode(self.string())
        else:
            chars = self._run(LIST_CHARS)
            if not chars:
                raise self.error("motif de dossier attendu / expected mailbox pattern")
            raw = chars.decode("ascii")
        try:
            return self._mailbox_name(raw)
        except BadMailboxName:
            return NO_MATCH

    def list_mailbox_patterns(self) -> list[str]:
        """RFC 5258 §6 mbox-or-pat = list-mailbox / "(" list-mailbox *(SP list-mailbox) ")"."""
        if not self.take(b"("):
            return [self.list_mailbox()]
        patterns = [self.list_mailbox()]
        while not self.take(b")"):
            self.sp()
            patterns.append(self.list_mailbox())
        return patterns

    def list_return_options(self) -> tuple[list[str], list[str]]:
        """RFC 5258 §6 list-return-opts = "RETURN" SP "(" [return-option *(SP return-option)] ")",
        with RFC 6154 SPECIAL-USE and RFC 5819 STATUS (status-att list). Returns the
        options (upper-cased, STATUS included when given) and the STATUS items."""
        self.expect(b"RETURN")
        self.sp()
        self.expect(b"(")
        options: list[str] = []
        status: list[str] = []
        if not self.take(b")"):
            while True:
                option = self.atom().upper()
                if option == "STATUS":
                    self.sp()
                    status = [item.upper() for item in self.atom_list()]
                    if not status:
                        raise self.error("STATUS sans attribut / STATUS needs attributes")
                elif option not in _LIST_RETURN_OPTS:
                    raise self.error(f"option RETURN inconnue / unknown return option {_echo(option)}")
                options.append(option)
                if self.take(b")"):
                    break
                self.sp()
        return options, status

    # -- flags ---------------------------------------------------------------------

    def flag(self, *, allow_recent: bool = False) -> str:
        """RFC 9051 §9 flag: a system flag, spelled as the RFC does, or a keyword atom.

        \\Recent cannot be set by a client (RFC 3501 §2.3.2), so STORE and APPEND keep
        allow_recent=False; unknown "\\" flag-extensions are refused the same way.
        """
        if self.take(b"\\"):
            name = "\\" + self.atom()
            upper = name.upper()
            if upper in _SYSTEM_FLAGS:
                return _SYSTEM_FLAGS[upper]
            if upper == "\\RECENT" and allow_recent:
                return "\\Recent"
            raise self.error(f"drapeau systeme inconnu ou interdit / unknown or forbidden system flag {_echo(name)}")
        return self.atom()

    def flag_list(self, *, allow_recent: bool = False, parenthesised_optional: bool = False) -> list[str]:
        """RFC 9051 §9 flag-list = "(" [flag *(SP flag)] ")"; duplicates dropped.

        parenthesised_optional: STORE also takes bare flags, flag *(SP flag)
        (RFC 9051 §9 store-att-flags), which then run to the end of the command.
        """
        flags: list[str] = []

        def add(flag: str) -> None:
            if flag not in flags:
                flags.append(flag)

        if not self.take(b"("):
            if not parenthesised_optional:
                raise self.error("liste de drapeaux attendue / expected flag list")
            add(self.flag(allow_recent=allow_recent))
            while self.take(b" "):
                add(self.flag(allow_recent=allow_recent))
            return flags
        if not self.take(b")"):
            add(self.flag(allow_recent=allow_recent))
            while not self.take(b")"):
                self.sp()
                add(self.flag(allow_recent=allow_recent))
        return flags

    # -- sequence sets, dates -------------------------------------------------------

    def sequence_set(self) -> SequenceSet:
        m = _SEQSET_RUN.match(self.data, self.pos)
        raw = m.group() if m else b""
        self.pos += len(raw)
        if not raw:
            raise self.error("ensemble de numeros attendu / expected sequence set")
        try:
            return parse_sequence_set(raw.decode("ascii"))
        except ParseError as exc:
            raise self.error(exc.message) from None

    def _month(self) -> int:
        month = _MONTHS.get(self.data[self.pos:self.pos + 3].decode("latin-1").upper())
        if month is None:
            raise self.error("mois invalide / invalid month")
        self.pos += 3
        return month

    def _fixed_digits(self, count: int) -> int:
        raw = self.data[self.pos:self.pos + count]
        if len(raw) != count or not all(b in _DIGITS for b in raw):
            raise self.error(f"{count} chiffres attendus / expected {count} digits")
        self.pos += count
        return int(raw)

    def _date_text(self) -> dt.date:
        # RFC 9051 §9 date-text = date-day "-" date-month "-" date-year
        day = self._digits(2)
        self.expect(b"-")
        month = self._month()
        self.expect(b"-")
        year = self._fixed_digits(4)
        try:
            return dt.date(year, month, day)
        except ValueError:
            raise self.error("date inexistante / invalid date") from None

    def date(self) -> dt.date:
        """RFC 9051 §9 date = date-text / DQUOTE date-text DQUOTE ("1-Feb-2024")."""
        if self.take(b'"'):
            value = self._date_text()
            self.expect(b'"')
            return value
        return self._date_text()

    def date_time(self) -> dt.datetime:
        """RFC 9051 §9 date-time = DQUOTE date-day-fixed "-" date-month "-" date-year
        SP time SP zone DQUOTE, e.g. "23-Nov-2026 10:00:00 +0100"; an aware datetime."""
        self.expect(b'"')
        self.take(b" ")  # date-day-fixed = (SP DIGIT) / 2DIGIT; a bare digit is tolerated
        day = self._digits(2)
        self.expect(b"-")
        month = self._month()
        self.expect(b"-")
        year = self._fixed_digits(4)
        self.sp()
        hour = self._fixed_digits(2)
        self.expect(b":")
        minute = self._fixed_digits(2)
        self.expect(b":")
        second = self._fixed_digits(2)
        self.sp()
        if self.take(b"+"):
            sign = 1
        elif self.take(b"-"):
            sign = -1
        else:
            raise self.error("fuseau horaire attendu / expected zone")
        zone_hours, zone_minutes = divmod(self._fixed_digits(4), 100)
        self.expect(b'"')
        try:
            if zone_minutes >= 60:
                raise ValueError("zone minutes")
            tz = dt.timezone(sign * dt.timedelta(hours=zone_hours, minutes=zone_minutes))
            return dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)
        except ValueError:
            raise self.error("date ou heure inexistante / invalid date-time") from None

    # -- FETCH ---------------------------------------------------------------------

    def fetch_atts(self) -> list[FetchAtt]:
        """RFC 9051 §6.4.5: "ALL" / "FULL" / "FAST" / fetch-att / "(" fetch-att *(SP fetch-att) ")"."""
        if self.take(b"("):
            atts = [self._fetch_att()]
            while not self.take(b")"):
                self.sp()
                atts.append(self._fetch_att())
            return atts
        start = self.pos
        word = self._run(_FETCH_WORD_CHARS).decode("ascii").upper()
        if word in _FETCH_MACROS:
            return [FetchAtt(name) for name in _FETCH_MACROS[word]]
        self.pos = start
        return [self._fetch_att()]

    def _fetch_att(self) -> FetchAtt:
        word = self._run(_FETCH_WORD_CHARS).decode("ascii").upper()
        if word in _FETCH_SIMPLE:
            return FetchAtt(word)
        if word in ("BODY", "BODY.PEEK"):
            peek = word == "BODY.PEEK"
            if self._byte() != 0x5B:  # no "[": plain BODY is the non-extensible BODYSTRUCTURE
                if peek:
                    raise self.error("BODY.PEEK exige une section / BODY.PEEK needs a section")
                return FetchAtt("BODY")
            section = self._section()
            return FetchAtt("BODY", section, peek, self._partial())
        if word in ("BINARY", "BINARY.PEEK", "BINARY.SIZE"):
            # RFC 3516 §4.3 / RFC 9051 §9: section-binary = "[" [section-part] "]".
            self.expect(b"[")
            part = self._section_part() if self._byte() in _DIGITS else ()
            self.expect(b"]")
            section = Section(part=part)
            if word == "BINARY.SIZE":
                return FetchAtt("BINARY.SIZE", section)
            return FetchAtt("BINARY", section, word == "BINARY.PEEK", self._partial())
        raise self.error(f"attribut FETCH inconnu / unknown fetch attribute {_echo(word)}")

    def _partial(self) -> tuple[int, int] | None:
        # RFC 3501 §9: "<" number "." nz-number ">"
        if not self.take(b"<"):
            return None
        offset = self.number()
        self.expect(b".")
        count = self.nz_number()
        self.expect(b">")
        return offset, count

    def _section_part(self) -> tuple[int, ...]:
        # RFC 9051 §9 section-part = nz-number *("." nz-number); a "." followed by a
        # letter starts the section-text and is left for the caller.
        parts = [self.nz_number()]
        while self._byte() == 0x2E and self.data[self.pos + 1:self.pos + 2].isdigit():
            self.pos += 1
            parts.append(self.nz_number())
        return tuple(parts)

    def _section(self) -> Section:
        """RFC 9051 §9 section = "[" [section-spec] "]"."""
        self.expect(b"[")
        if self.take(b"]"):
            return Section()
        part: tuple[int, ...] = ()
        if self._byte() in _DIGITS:
            part = self._section_part()
            if self.take(b"]"):
                return Section(part=part)
            self.expect(b".")
        word = self._run(_SECTION_WORD_CHARS).decode("ascii").upper()
        if word not in _SECTION_TEXTS:
            raise self.error(f"section inconnue / unknown section {_echo(word)}")
        if word == "MIME" and not part:
            # RFC 3501 §6.4.5: MIME is the header of a body part, so it needs one.
            raise self.error("MIME exige un numero de partie / MIME needs a part number")
        fields: tuple[str, ...] = ()
        if word.startswith("HEADER.FIELDS"):
            self.sp()
            fields = self._header_list()
        self.expect(b"]")
        return Section(part=part, text=word, fields=fields)

    def _header_list(self) -> tuple[str, ...]:
        # RFC 9051 §9 header-list = "(" header-fld-name *(SP header-fld-name) ")"
        self.expect(b"(")
        names = [self._field_name()]
        while not self.take(b")"):
            self.sp()
            names.append(self._field_name())
        return tuple(names)

    def _field_name(self) -> str:
        name = self.astring()
        if not _FIELD_NAME.fullmatch(name):
            raise self.error("nom d'en-tete invalide / invalid header field name")
        return name.upper()

    # -- SEARCH --------------------------------------------------------------------

    def search_return_opts(self, allowed: frozenset[str] = SEARCH_RETURN_OPTS,
                           partial: bool = False) -> ReturnOpts | None:
        """RFC 4731 §3 / RFC 9051 §9 search-return-opts = SP "RETURN" SP "(" [...] ")".

        Works before or after the SP that follows "SEARCH"; returns None and consumes
        nothing when RETURN does not come next. "RETURN ()" means RETURN (ALL)
        (RFC 4731 §3). SAVE (RFC 5182) is refused, like "$". `allowed`: the option names
        this command takes (SEARCH adds RFC 5267's UPDATE); partial=True also takes
        PARTIAL low:high (RFC 5267 §4.4), exclusive with ALL and UPDATE.
        """
        if self.has_prefix(b" RETURN "):
            self.pos += 1
        if not self.take(b"RETURN "):
            return None
        self.expect(b"(")
        opts: list[str] = []
        window: tuple[int, int] | None = None
        if not self.take(b")"):
            while True:
                opt = self.atom().upper()
                if opt == "PARTIAL" and partial:
                    self.sp()
                    window = self._partial_range()
                elif opt not in allowed:
                    raise self.error(f"option RETURN non prise en charge / unsupported return option {_echo(opt)}")
                if opt not in opts:
                    opts.append(opt)
                if self.take(b")"):
                    break
                self.sp()
        if "PARTIAL" in opts and ("ALL" in opts or "UPDATE" in opts):
            # RFC 5267 §4.4: PARTIAL and ALL are exclusive; a partial window cannot be kept up to date
            raise self.error("PARTIAL avec ALL ou UPDATE / PARTIAL with ALL or UPDATE")
        return ReturnOpts(tuple(opts) or ("ALL",), window)

    def _partial_range(self) -> tuple[int, int]:
        """partial-range = num ":" num, both > 0, or both < 0 (RFC 9394 §3.1); no "*"."""
        def one() -> int:
            negative = self.take(b"-")
            value = self.nz_number()
            return -value if negative else value

        low = one()
        self.expect(b":")
        high = one()
        if (low < 0) != (high < 0):
            raise self.error("intervalle PARTIAL invalide / invalid PARTIAL range")
        return (min(low, high), max(low, high)) if low > 0 else (max(low, high), min(low, high))

    def search_program(self, charset_allowed: bool = True) -> tuple[str | None, SearchKey]:
        """RFC 9051 §9 search-program = ["CHARSET" SP charset SP] search-key *(SP search-key).

        Returns the charset (upper-cased, None when absent) and one key: several keys
        are wrapped in SearchKey("AND", ...). Strings are decoded as UTF-8 (US-ASCII is
        a subset). charset_allowed=False once UTF8=ACCEPT is enabled (RFC 6855 §3).
        """
        charset: str | None = None
        if self.has_prefix(b"CHARSET "):
            if not charset_allowed:
                raise self.error("CHARSET interdit avec UTF8=ACCEPT / CHARSET not allowed with UTF8=ACCEPT")
            self.pos += len(b"CHARSET ")
            charset = _CHARSETS.get(self.astring().upper())
            if charset is None:
                raise BadCharset("[BADCHARSET (US-ASCII UTF-8)] jeu de caracteres non pris en "
                                 "charge / unsupported charset", self.tag_value)
            self.sp()
        keys = [self._search_key(0)]
        while self.take(b" "):
            keys.append(self._search_key(0))
        return charset, keys[0] if len(keys) == 1 else SearchKey("AND", tuple(keys))

    def _search_key(self, depth: int) -> SearchKey:
        # Recursion is bounded: OR/NOT/() nest, and a hostile client could nest
        # thousands deep to exhaust the Python stack.
        if depth >= self.max_depth:
            raise self.error("criteres de recherche trop imbriques / search keys nested too deeply")
        c = self._byte()
        if c == 0x28:  # "(" search-key *(SP search-key) ")"
            self.pos += 1
            keys = [self._search_key(depth + 1)]
            while not self.take(b")"):
                self.sp()
                keys.append(self._search_key(depth + 1))
            return SearchKey("AND", tuple(keys))
        if c in _SEQSET_CHARS:
            return SearchKey("SEQ", (self.sequence_set(),))
        op = self.atom().upper()
        if op in _SEARCH_FLAG_KEYS:
            return SearchKey(op)
        parse_args = _SEARCH_ARGS.get(op)
        if parse_args is None:
            raise self.error(f"critere de recherche inconnu / unknown search key {_echo(op)}")
        self.sp()
        return SearchKey(op, parse_args(self, depth + 1))

    # Argument parsers of the search keys, by kind (RFC 3501 §6.4.4).

    def _search_astring(self) -> str:
        """An astring, or a bare run of 8-bit octets: imaplib sends a SEARCH argument
        that is not US-ASCII as such an atom ("SUBJECT R\xc3\xa9sultats"), which
        RFC 3501 §9 does not allow but Dovecot accepts; the octets are UTF-8."""
        if self._byte() in (0x22, 0x7B):
            return self.astring()
        raw = self._run(_SEARCH_ATOM_CHARS)
        if not raw:
            raise self.error("chaine attendue / expected astring")
        return self._decode(raw)

    def _search_string(self, depth: int) -> tuple[object, ...]:
        return (self._search_astring(),)

    def _search_keyword(self, depth: int) -> tuple[object, ...]:
        return (self.atom(),)  # flag-keyword = atom: "\Seen" is not a keyword

    def _search_date(self, depth: int) -> tuple[object, ...]:
        return (self.date(),)

    def _search_size(self, depth: int) -> tuple[object, ...]:
        return (self.number64(),)

    def _search_uid(self, depth: int) -> tuple[object, ...]:
        return (self.sequence_set(),)

    def _search_modseq(self, depth: int) -> tuple[object, ...]:
        # RFC 7162 §3.1.5: MODSEQ [entry-name SP entry-type-req SP] mod-sequence-valzer;
        # the entry (a flag's own modseq) narrows nothing here: a message has one modseq
        if self.peek() == b'"':
            self.string()
            self.sp()
            if self.atom().lower() not in ("priv", "shared", "all"):
                raise self.error("type d'entree MODSEQ inconnu / unknown MODSEQ entry type")
            self.sp()
        return (self.number64(),)

    def _search_header(self, depth: int) -> tuple[object, ...]:
        # Upper-cased like HEADER.FIELDS names: field names compare case-insensitively
        # (RFC 5322 §1.2.2).
        name = self._field_name()
        self.sp()
        return (name, self._search_astring())

    def _search_not(self, depth: int) -> tuple[object, ...]:
        return (self._search_key(depth),)

    def _search_or(self, depth: int) -> tuple[object, ...]:
        first = self._search_key(depth)
        self.sp()
        return (first, self._search_key(depth))


_SearchArgs = Callable[[Parser, int], tuple[object, ...]]
_SEARCH_ARGS: dict[str, _SearchArgs] = {
    **dict.fromkeys(("BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"), Parser._search_string),
    **dict.fromkeys(("KEYWORD", "UNKEYWORD"), Parser._search_keyword),
    **dict.fromkeys(("BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"), Parser._search_date),
    **dict.fromkeys(("LARGER", "SMALLER"), Parser._search_size),
    "UID": Parser._search_uid,
    "MODSEQ": Parser._search_modseq,
    "HEADER": Parser._search_header,
    "NOT": Parser._search_not,
    "OR": Parser._search_or,
}
