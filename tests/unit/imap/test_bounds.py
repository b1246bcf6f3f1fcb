"""Issue 10 §2-3, the pieces without sockets: the bytes-in-flight budget, the APPEND
spool (sealed as it arrives, opened like any stored blob), the parser meeting a spooled
literal, and the [imap] configuration keys."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mailbox_store.crypto import CONTENT, BlobSealer, MasterKey, blob_aad, open_sealed
from mailbox_store.spool import SpooledMessage, private_dir
from mailbox_store.store import Store, sqlite_url
from policy.recipients import MailboxState
from relay.core.config import ConfigError, load_config
from relay.imap.budget import LiteralBudget
from relay.imap.parser import ParseError, Parser

INS = "279035121518989"


# ---- budget ----------------------------------------------------------------------------------

def test_budget_bounds_each_account_and_the_total() -> None:
    budget = LiteralBudget(per_account=100, total=150)
    a1 = budget.reserve("a", 60)
    assert a1 is not None
    assert budget.reserve("a", 41) is None  # 101 for account a
    a2 = budget.reserve("a", 40)
    assert a2 is not None and budget.held("a") == 100
    assert budget.reserve("b", 51) is None  # 151 in all
    b1 = budget.reserve("b", 50)
    assert b1 is not None and budget.in_flight == 150
    a1.release()
    a1.release()  # once only
    assert budget.held("a") == 40 and budget.in_flight == 90
    assert budget.reserve("b", 50) is not None
    a2.release()
    assert budget.held("a") == 0 and "a" not in budget._accounts


# ---- sealing while receiving ----------------------------------------------------------------

def test_blob_sealer_makes_the_envelope_seal_blob_makes() -> None:
    plaintext = os.urandom(200_000)
    sealer = BlobSealer("blob1")
    sealed = b"".join(sealer.update(plaintext[i:i + 7_000]) for i in range(0, len(plaintext), 7_000))
    sealed += sealer.finish()
    assert len(sealed) == 12 + len(plaintext) + 16
    aad = blob_aad(CONTENT, "blob1", "raw")
    assert open_sealed(AESGCM(sealer.content_key), sealed, aad) == plaintext
    with pytest.raises(Exception):
        open_sealed(AESGCM(sealer.content_key), sealed, blob_aad(CONTENT, "blob2", "raw"))


def test_spool_keeps_only_sealed_bytes_in_a_private_dir(tmp_path: Path) -> None:
    spool_dir = private_dir(tmp_path / "spool")
    assert (spool_dir.stat().st_mode & 0o777) == 0o700
    marker = b"Compte rendu: glycemie 1,2 g/l\r\n"
    spooled = SpooledMessage(spool_dir)
    for _ in range(1000):
        spooled.write(marker)
    spooled.finish()
    assert spooled.size == 1000 * len(marker) and not spooled.has_nul
    sealed = spooled.sealed()
    assert marker not in sealed  # nothing readable reaches the disk
    assert list(spool_dir.iterdir()) == []  # an anonymous file
    assert open_sealed(AESGCM(spooled.content_key), sealed,
                       blob_aad(CONTENT, spooled.blob_id, "raw")) == marker * 1000
    spooled.close()
    other = SpooledMessage(spool_dir)
    other.write(b"a\x00b")
    assert other.has_nul
    other.close()


async def test_deliver_spooled_stores_what_fetch_reads(tmp_path: Path) -> None:
    store = await Store.open(sqlite_url(tmp_path / "s.db"), MasterKey.generate(tmp_path / "k"))
    try:
        mb = await store.create_mailbox(INS, MailboxState.ACTIVE)
        raw = b"Subject: brouillon\r\n\r\n" + b"x" * 300_000 + b"\r\n"
        spooled = SpooledMessage(private_dir(tmp_path / "spool"))
        for i in range(0, len(raw), 65536):
            spooled.write(raw[i:i + 65536])
        spooled.finish()
        delivered = await store.deliver_spooled([mb], spooled, folder="Drafts", flags=["\\Draft"])
        spooled.close()
        assert await store.fetch_raw(INS, "Drafts", delivered[0].uid) == raw
        [info] = await store.messages(INS, "Drafts")
        assert info.size == len(raw) and info.flags == ("\\Draft",)
    finally:
        await store.close()


# ---- the parser and a spooled literal ----------------------------------------------------------

def _append_parser(data: bytes, spooled_at: int | None, *more: int) -> Parser:
    p = Parser(data, spooled_at=() if spooled_at is None else (spooled_at, *more))
    p.tag()
    p.sp()
    assert p.command() == "APPEND"
    p.sp()
    return p


def test_message_literal_is_none_where_the_reader_spooled_it() -> None:
    head = b"a APPEND INBOX (\\Seen) {300000}\r\n"
    p = _append_parser(head, spooled_at=len(head))
    assert p.mailbox() == "INBOX"
    p.sp()
    assert p.flag_list() == ["\\Seen"]
    p.sp()
    assert p.message_literal() is None
    p.end()
    head8 = b"a APPEND INBOX ~{300000+}\r\n"
    p = _append_parser(head8, spooled_at=len(head8))
    p.mailbox()
    p.sp()
    assert p.message_literal() is None


def test_message_literals_of_a_multiappend_are_none_where_each_was_spooled() -> None:
    first = b"a APPEND INBOX {300000+}\r\n"
    second = first + b" (\\Seen) {200000+}\r\n"
    p = _append_parser(second + b" {5+}\r\nhello", len(first), len(second))
    assert p.mailbox() == "INBOX"
    p.sp()
    assert p.message_literal() is None
    p.sp()
    assert p.flag_list() == ["\\Seen"]
    p.sp()
    assert p.message_literal() is None
    p.sp()
    assert p.message_literal() == b"hello"  # a small one, in memory
    p.end()


def test_message_literal_in_memory_when_not_spooled() -> None:
    p = _append_parser(b"a APPEND INBOX {5}\r\nhello", spooled_at=None)
    p.mailbox()
    p.sp()
    assert p.message_literal() == b"hello"
    p.end()


def test_a_spooled_literal_is_no_string() -> None:
    head = b"a APPEND {70000}\r\n"
    p = _append_parser(head + b" {3}\r\nabc", spooled_at=len(head))
    with pytest.raises(ParseError, match="literal too large here"):
        p.mailbox()


# ---- configuration -------------------------------------------------------------------------

def _config(tmp_path: Path, imap: str) -> Path:
    path = tmp_path / "relay.toml"
    path.write_text(f"[imap]\n{imap}\n")
    return path


def test_imap_bounds_defaults(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, ""))
    assert cfg.imap_command_timeout == 120 and cfg.imap_literal_timeout == 600
    assert cfg.imap_max_append_bytes_per_account == 100 * 2**20
    assert cfg.imap_max_append_bytes_in_flight == 512 * 2**20


def test_imap_bounds_from_the_file(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, "command_timeout = 2.5\nliteral_timeout = 30\n"
                                        "max_append_bytes_per_account = 1000\nmax_append_bytes_in_flight = 5000"))
    assert (cfg.imap_command_timeout, cfg.imap_literal_timeout) == (2.5, 30)
    assert (cfg.imap_max_append_bytes_per_account, cfg.imap_max_append_bytes_in_flight) == (1000, 5000)


@pytest.mark.parametrize("line, field", [
    ("command_timeout = 0", "imap.command_timeout"),
    ("command_timeout = true", "imap.command_timeout"),
    ("literal_timeout = -1", "imap.literal_timeout"),
    ('literal_timeout = "10m"', "imap.literal_timeout"),
    ("max_append_bytes_per_account = 0", "imap.max_append_bytes_per_account"),
    ("max_append_bytes_in_flight = 1.5e9", "imap.max_append_bytes_in_flight"),
])
def test_imap_bounds_errors_name_the_field(tmp_path: Path, line: str, field: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(_config(tmp_path, line))
    assert str(exc.value).startswith(f"{field}:"), str(exc.value)


def test_template_lists_the_bounds() -> None:
    text = (Path(__file__).resolve().parents[3] / "relay/templates/relay.toml").read_text()
    for key in ("command_timeout", "literal_timeout", "max_append_bytes_per_account", "max_append_bytes_in_flight"):
        assert f"\n{key} = " in text
