"""Issue 15: one RFC 2047 decoder. IMAP SEARCH (policy.mime.decode_header) and the
[FIN] rule (policy.conversation.decode_subject) read a subject the same way; they
failed differently before (a bad base64 word, an unknown charset, Latin-1 bytes in a
UTF-8 word)."""
from __future__ import annotations

import pytest

from policy.conversation import closes_exchange, decode_subject
from policy.mime import decode_header


@pytest.mark.parametrize("subject", [
    "=?utf-8?q?R=C3=A9sultats_[FIN]?=",
    "=?x-bogus?q?[FIN]_caf=E9?=",
    "=?utf-8?q?caf=E9_[FIN]?=",
    "=?utf-8?b?YWJjZ?= [FIN]",
    "=?utf-8?b?W0ZJTl0=?=",
    "=?utf-8?b?!!!?= =?utf-8?q?[FIN]?=",
    "=?iso-8859-1?q?R=E9sultats?= =?iso-8859-1?q?_[FIN]?=",
    "=?utf-8*fr?q?Fin_[FIN]?=",
])
def test_search_and_the_fin_rule_read_one_subject_one_way(subject: str) -> None:
    searched = decode_header(subject.encode()).strip()
    assert decode_subject(subject) == searched
    assert closes_exchange(decode_subject(subject)) is ("[FIN]" in searched)


def test_a_broken_base64_word_is_unreadable_in_both() -> None:
    assert decode_header(b"=?utf-8?b?YWJjZ?=") == decode_subject("=?utf-8?b?YWJjZ?=") == "\ufffd"
