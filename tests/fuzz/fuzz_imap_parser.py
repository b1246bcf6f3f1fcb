"""Fuzz harness for the IMAP command parser (relay/imap/parser.py), with atheris.

Random bytes go through `exercise`, which drives a Parser the way the server does:
tag, command name (and the second one after UID), then the argument methods of that
command's grammar. Any exception other than ParseError is a bug: on the network it
would drop the connection instead of answering "tag BAD".

Run it longer (needs `pip install atheris`; libFuzzer options after the script):

    python tests/fuzz/fuzz_imap_parser.py -max_total_time=3600 -jobs=1 /tmp/imap-corpus

The corpus folder is created and seeded with real client commands when empty, and an
IMAP token dictionary is passed with -dict unless one is given. A crash leaves its input
in crash-<hash> (see -artifact_prefix); replay it with the script and that file.
tests/fuzz/test_fuzz_smoke.py runs the same harness for a few seconds under pytest.
"""
from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

try:
    import atheris  # type: ignore[import-untyped]
except ImportError:  # `exercise` and the seeds stay usable without it
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["relay.imap"]):
        from relay.imap import parser as parser_mod
        from relay.imap import sequence, utf7
else:
    from relay.imap import parser as parser_mod
    from relay.imap import sequence, utf7

Parser = parser_mod.Parser
ParseError = parser_mod.ParseError


# -- one function per command grammar (RFC 9051 §6 / §9), as the session calls them ----

def _nothing(p: Parser) -> None:
    p.end()


def _one_mailbox(p: Parser) -> None:
    p.sp()
    p.mailbox()
    p.end()


def _login(p: Parser) -> None:
    p.sp()
    p.astring()
    p.sp()
    p.astring()
    p.end()


def _authenticate(p: Parser) -> None:
    p.sp()
    p.atom()
    if not p.at_end():
        p.sp()
        p.atom()
    p.end()


def _enable(p: Parser) -> None:
    while not p.at_end():
        p.sp()
        p.atom()


def _id(p: Parser) -> None:
    # RFC 2971: "(" string SP nstring ... ")" / NIL
    p.sp()
    if p.take(b"NIL"):
        p.end()
        return
    p.expect(b"(")
    while not p.take(b")"):
        p.string()
        p.sp()
        p.nstring()
        p.take(b" ")
    p.end()


def _rename(p: Parser) -> None:
    p.sp()
    p.mailbox()
    p.sp()
    p.mailbox()
    p.end()


def _list(p: Parser) -> None:
    p.sp()
    if p.peek() == b"(":
        p.atom_list()
        p.sp()
    p.list_mailbox()
    p.sp()
    p.list_mailbox_patterns()
    if not p.at_end():
        p.sp()
        p.list_return_options()
    p.end()


def _status(p: Parser) -> None:
    p.sp()
    p.mailbox()
    p.sp()
    p.atom_list()
    p.end()


def _append(p: Parser) -> None:
    p.sp()
    p.mailbox()
    p.sp()
    if p.peek() == b"(":
        p.flag_list()
        p.sp()
    if p.peek() == b'"':
        p.date_time()
        p.sp()
    p.literal_only()
    p.end()


def _expunge(p: Parser) -> None:
    if not p.at_end():  # UID EXPUNGE (RFC 4315)
        p.sp()
        p.sequence_set()
    p.end()


def _search(p: Parser) -> None:
    p.search_return_opts()
    p.sp()
    p.search_program(charset_allowed=not p.utf8)
    p.end()


def _fetch(p: Parser) -> None:
    p.sp()
    p.sequence_set()
    p.sp()
    p.fetch_atts()
    p.end()


def _store(p: Parser) -> None:
    p.sp()
    p.sequence_set()
    p.sp()
    p.atom()
    p.sp()
    p.flag_list(parenthesised_optional=True)
    p.end()


def _copy(p: Parser) -> None:
    p.sp()
    p.sequence_set()
    p.sp()
    p.mailbox()
    p.end()


COMMANDS: dict[str, Callable[[Parser], None]] = {
    **dict.fromkeys(("CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "NAMESPACE", "IDLE", "CHECK",
                     "CLOSE", "UNSELECT"), _nothing),
    **dict.fromkeys(("SELECT", "EXAMINE", "CREATE", "DELETE", "SUBSCRIBE", "UNSUBSCRIBE"), _one_mailbox),
    "LOGIN": _login, "AUTHENTICATE": _authenticate, "ENABLE": _enable, "ID": _id,
    "RENAME": _rename, "LIST": _list, "LSUB": _list, "STATUS": _status, "APPEND": _append,
    "EXPUNGE": _expunge, "SEARCH": _search, "FETCH": _fetch, "STORE": _store,
    "COPY": _copy, "MOVE": _copy,
}


def exercise(data: bytes, utf8: bool) -> None:
    """Parse one command as the server would; raises ParseError at most."""
    p = Parser(data, utf8=utf8)
    p.tag()
    p.sp()
    name = p.command()
    if name == "UID":
        p.sp()
        name = p.command()
    handler = COMMANDS.get(name)
    if handler is None:
        # Unknown verbs still give the generic methods a go on the rest of the input.
        start = p.pos
        for method in (p.sequence_set, p.fetch_atts, p.search_program, p.date, p.nstring):
            p.pos = start
            try:
                method()
            except ParseError:
                pass
        return
    handler(p)


def test_one_input(data: bytes) -> None:
    # The line reader's check runs on every line before any parsing: it must not raise
    # at all, not even ParseError.
    for line in data.split(b"\r\n")[:8]:
        parser_mod.literal_announcement(line)
    for utf8 in (False, True):
        try:
            exercise(data, utf8)
        except ParseError as exc:
            # The message is sent after "tag BAD": it must be 7-bit and on one line.
            message = str(exc)
            if not message.isascii() or "\r" in message or "\n" in message:
                raise AssertionError(f"unsafe error text {message!r}") from exc
    # The modules the parser relies on have the same contract on text input.
    text = data.decode("utf-8", "replace")
    try:
        sequence.parse_sequence_set(text)
    except ParseError:
        pass
    try:
        utf7.encode(utf7.decode(text))
    except ValueError:
        pass


SEEDS: list[bytes] = [
    b"a1 UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From Subject Date)]<0.2048>)",
    'a2 SEARCH CHARSET UTF-8 OR FROM "martin" SUBJECT {6}\r\ndébut'.encode(),
    b'a3 APPEND INBOX (\\Seen) "23-Nov-2026 10:00:00 +0100" {5+}\r\nhello',
    b"a4 LOGIN {10}\r\nmarie@x.fr \"secret\"",
    b"a5 SELECT &ZeVnLIqe-",
    b'a6 LIST (SUBSCRIBED) "" ("INBOX" "Sent/%") RETURN (CHILDREN STATUS (MESSAGES UNSEEN))',
    b"a7 UID STORE 4:7,9 +FLAGS.SILENT (\\Deleted $Forwarded)",
    b"a8 UID SEARCH RETURN (MIN MAX COUNT) NOT (SINCE 1-Feb-2024 LARGER 1000) UID 1:*",
    b"a9 FETCH 1 (BODY[1.2.MIME] BINARY.PEEK[1]<0.10> BINARY.SIZE[2] RFC822.SIZE ENVELOPE)",
    b"b1 STATUS INBOX (MESSAGES UIDNEXT UIDVALIDITY UNSEEN SIZE)",
    b'b2 ID ("name" "Thunderbird" "version" NIL)',
    b"b3 APPEND Drafts ~{3}\r\na\x00b",
    b"b4 RENAME \"Old\" {4+}\r\nNew&",
    b"b5 UID MOVE 1:3 Trash",
    b"b6 SEARCH HEADER Message-ID <x@y> KEYWORD $Label1 SENTON \"5-Mar-2025\"",
    b"b7 FETCH 2:4 FULL",
]

DICTIONARY: list[bytes] = [
    b" ", b"(", b")", b"[", b"]", b"<", b">", b"{", b"}", b"{5}\r\n", b"{3+}\r\n", b"~{1}\r\n",
    b'"', b"\\", b"*", b"%", b":", b",", b"$", b"&-", b"&AOk-", b"NIL", b"UID", b"FETCH", b"SEARCH",
    b"STORE", b"APPEND", b"LIST", b"STATUS", b"RETURN", b"CHARSET", b"UTF-8", b"BODY.PEEK",
    b"BINARY", b"HEADER.FIELDS", b".NOT", b"MIME", b"TEXT", b"OR", b"NOT", b"\\Seen",
    b"\\Recent", b"-Feb-2024", b" +0100", b"10:00:00", b"4294967295", b"4294967296",
]


def _seed_corpus(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if not any(folder.iterdir()):
        for i, seed in enumerate(SEEDS):
            (folder / f"seed-{i:02d}").write_bytes(seed)


def _write_dictionary(path: Path) -> None:
    # libFuzzer dictionary syntax: one "quoted" token per line, with \xNN escapes.
    lines = ['"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}"
                           for b in token) + '"' for token in DICTIONARY]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str]) -> None:
    if atheris is None:
        sys.exit("atheris is not installed: pip install atheris")
    args = list(argv)
    for arg in args[1:]:
        if not arg.startswith("-"):
            _seed_corpus(Path(arg))
    if not any(a.startswith("-dict=") for a in args):
        # one fixed file, rewritten each run: libFuzzer exits without cleaning up
        dict_path = Path(tempfile.gettempdir()) / "imap-fuzz.dict"
        _write_dictionary(dict_path)
        args.append(f"-dict={dict_path}")
    atheris.Setup(args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
