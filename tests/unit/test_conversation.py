"""policy/conversation.py: the header helpers on real-world header shapes, the effects of a
professional's message, and the patient's RCPT decisions (DESIGN.md §4 "Professional
initiates", "Closing", "Nothing leaves the trust space")."""
from __future__ import annotations

import email
from email import policy as email_policy
from email.header import Header
from email.message import Message

import pytest

from policy.conversation import (BAD_RECIPIENT, EXCHANGE_CLOSED, MAX_MSG_ID_LENGTH, MAX_MSG_IDS,
                                 MESSAGE_CLOSED,
                                 OUTSIDE_TRUST_SPACE, PATIENT_TO_PATIENT, PROFESSIONAL_MUST_START,
                                 ConversationEffects, Exchange, ProfessionalMessage, RecipientFacts,
                                 answered_ids, closes_exchange, closes_message, decode_subject,
                                 normalise_address, parse_msg_ids, patient_recipient_decision,
                                 professional_effects, professional_from_headers,
                                 replies_to_closed_message, thread_root)
from policy.decisions import Decision

DOMAIN = "patient.mssante.fr"
TRUSTED = {"ch-lyon.mssante.fr", "medecin.mssante.fr", "pharmacie-du-port.mssante.fr"}


def is_mssante(domain: str) -> bool:
    return domain in TRUSTED


# --- decode_subject ----------------------------------------------------------------------

@pytest.mark.parametrize(("raw", "decoded"), [
    # RFC 2047 Q and B, ISO-8859-1 and UTF-8
    ("=?ISO-8859-1?Q?R=E9sultats_d'analyse?=", "Résultats d'analyse"),
    ("=?utf-8?Q?R=C3=A9sultats_d'analyse?=", "Résultats d'analyse"),
    ("=?UTF-8?B?UsOpc3VsdGF0cyBkJ2FuYWx5c2U=?=", "Résultats d'analyse"),
    ("=?iso-8859-1?b?UulzdWx0YXRz?=", "Résultats"),
    # windows-1252: the euro sign and curly quote have no ISO-8859-1 byte
    ("=?windows-1252?Q?Facture_=80_=92?=", "Facture € ’"),
    # mixed with plain text; the space between a word and text is kept
    ("Re: =?utf-8?q?Compte_rendu_op=C3=A9ratoire?= du 3 mai", "Re: Compte rendu opératoire du 3 mai"),
    # two adjacent encoded words: the space between them disappears (RFC 2047 §6.2)
    ("=?utf-8?q?Ordonnance_?= =?utf-8?q?renouvel=C3=A9e?=", "Ordonnance renouvelée"),
    # RFC 2231 §5 language suffix
    ("=?utf-8*fr?q?Bonjour?=", "Bonjour"),
    # missing base64 padding, as some senders write it
    ("=?utf-8?b?UsOpc3VsdGF0?=", "Résultat"),
    ("", ""),
    ("Plain subject", "Plain subject"),
])
def test_decode_subject(raw: str, decoded: str) -> None:
    assert decode_subject(raw) == decoded


def test_decode_subject_folded() -> None:
    # RFC 5322 §2.2.3: unfolding removes the CRLF, keeps the WSP
    assert decode_subject("Compte rendu de\r\n consultation\r\n\tdu 3 mai") == \
        "Compte rendu de consultation\tdu 3 mai"
    # a long subject split across folded encoded words (the usual shape from Outlook)
    assert decode_subject("=?utf-8?q?Compte_rendu_de_consultati?=\r\n =?utf-8?q?on_cardiologique?=") == \
        "Compte rendu de consultation cardiologique"
    # bare LF folding, as a lenient parser may hand it to us
    assert decode_subject("a\n b") == "a b"


def test_decode_subject_never_raises_on_bad_input() -> None:
    assert decode_subject(None) == ""
    # unknown charset: read as undeclared text, as IMAP SEARCH reads it (one decoder,
    # policy.mime.decode_words): UTF-8, else Windows-1252; ASCII always survives
    assert decode_subject("=?x-bogus?q?[FIN]_caf=E9?=") == "[FIN] caf\u00e9"
    assert decode_subject("=?unknown-8bit?q?caf=E9?=") == "caf\u00e9"
    # codecs that are not text encodings, or refuse "replace"
    assert decode_subject("=?base64?q?abc?=") == "abc"
    assert decode_subject("=?rot13?q?abc?=") == "abc"
    assert decode_subject("=?idna?q?abc?=") == "abc"
    assert decode_subject("=??q?abc?=") == "=??q?abc?="  # no charset: not an encoded-word
    # bytes that are not UTF-8 in a UTF-8 word: mislabelled Latin text, as SEARCH reads it
    assert decode_subject("=?utf-8?q?caf=E9?=") == "caf\u00e9"
    # broken base64: the word is unreadable, not silently shorter
    assert decode_subject("=?utf-8?b?!!!?=") == "\ufffd"
    assert decode_subject("=?utf-8?b?YWJjZ?=") == "\ufffd"
    # raw 8-bit bytes (surrogate escapes of a message parsed from bytes): UTF-8 or U+FFFD
    assert decode_subject("caf\udcc3\udca9") == "café"
    assert decode_subject("caf\udce9") == "caf\ufffd"
    assert decode_subject("lone \ud800 surrogate") == "lone \ufffd surrogate"
    # an encoded line break is a space to a reader; other controls are marked
    assert decode_subject("=?utf-8?q?a=0D=0Ab=00c?=") == "a b\ufffdc"
    # unterminated or malformed encoded words are left as text
    assert decode_subject("=?utf-8?q?abc") == "=?utf-8?q?abc"
    assert decode_subject("=?utf-8?x?abc?=") == "=?utf-8?x?abc?="


# --- closes_exchange / closes_message ---------------------------------------------------

@pytest.mark.parametrize(("raw", "closes"), [
    ("[FIN] Resultats", True),
    ("Re: [FIN]", True),
    ("Resultats [FIN]", True),
    ("=?utf-8?q?[FIN]_R=C3=A9sultats?=", True),  # [FIN] inside an encoded word
    ("=?utf-8?b?W0ZJTl0gUsOpc3VsdGF0cw==?=", True),  # ... in base64
    ("=?utf-8?q?[F?=\r\n =?utf-8?q?IN]?=", True),  # split across two encoded words
    ("=?iso-8859-1?q?=5BFIN=5D?=", True),  # brackets themselves encoded
    # the tag exactly as the rule spells it: a false close silences the patient
    ("[fin] resultats", False),
    ("[Fin]", False),
    ("[ FIN ]", False),
    ("FIN du traitement", False),
    ("[FINANCE] facture", False),
    ("", False),
])
def test_closes_exchange(raw: str, closes: bool) -> None:
    assert closes_exchange(decode_subject(raw)) is closes


def test_closes_exchange_wants_the_decoded_subject() -> None:
    # the raw encoded form hides the tag: callers decode first (ProfessionalMessage.subject)
    assert not closes_exchange("=?iso-8859-1?q?=5BFIN=5D?=")


@pytest.mark.parametrize(("value", "closes"), [
    ("FIN", True), ("fin", True), (" Fin ", True), ("FIN\r\n", True), ("\r\n FIN", True),
    (None, False), ("", False), ("FINI", False), ("NON", False), ("F IN", False),
])
def test_closes_message(value: str | None, closes: bool) -> None:
    assert closes_message(value) is closes


# --- parse_msg_ids / thread_root / answered_ids -----------------------------------------

def test_parse_msg_ids_real_shapes() -> None:
    assert parse_msg_ids("<20240503101500.1234@ch-lyon.mssante.fr>") == \
        ("<20240503101500.1234@ch-lyon.mssante.fr>",)
    # a folded References with comments (RFC 5322 §3.2.2) and a repeated id
    refs = ("<root.1@ch-lyon.mssante.fr> (original)\r\n <second.2@medecin.mssante.fr>\r\n"
            "\t<third.3@ch-lyon.mssante.fr> (see <not.an.id@x>) <root.1@ch-lyon.mssante.fr>")
    assert parse_msg_ids(refs) == ("<root.1@ch-lyon.mssante.fr>", "<second.2@medecin.mssante.fr>",
                                   "<third.3@ch-lyon.mssante.fr>")
    # the obsolete In-Reply-To (RFC 5322 §4.5.4): phrase words and quoted strings around
    assert parse_msg_ids('Your message of "Mon, 6 May <x@y>" <a.b@c.fr>') == ("<a.b@c.fr>",)
    # obsolete CFWS inside the id, folded in the middle
    assert parse_msg_ids("<a.b\r\n @c.fr>") == ("<a.b@c.fr>",)
    assert parse_msg_ids("<a.b (comment) @c.fr>") == ("<a.b@c.fr>",)
    # a quoted id-left keeps its quotes, and the ">" inside them
    assert parse_msg_ids('<"a>b"@c.fr>') == ('<"a>b"@c.fr>',)
    # case kept: RFC 5322 gives no case rule for msg-ids
    assert parse_msg_ids("<ABC@Host.FR>") == ("<ABC@Host.FR>",)
    # idempotent on its own output
    assert parse_msg_ids("<a@b>") == ("<a@b>",)


def test_parse_msg_ids_tolerates_garbage() -> None:
    assert parse_msg_ids(None) == ()
    assert parse_msg_ids("") == ()
    assert parse_msg_ids("<no-at-sign>") == ()
    assert parse_msg_ids("<@right> <left@>") == ()
    assert parse_msg_ids("<unterminated@x") == ()
    assert parse_msg_ids("<a<b@c>") == ("<b@c>",)  # restart at the last "<"
    assert parse_msg_ids("(unclosed <a@b>") == ()  # inside a comment by the grammar
    assert parse_msg_ids("<a\x00b@c>") == ()
    assert parse_msg_ids("<a@b\udce9>") == ("<a@b\ufffd>",)  # never a surrogate
    # a Message-ID without brackets, as some software writes it
    assert parse_msg_ids("1234@ch-lyon.mssante.fr") == ("<1234@ch-lyon.mssante.fr>",)
    assert parse_msg_ids("message from a@b") == ()


def test_parse_msg_ids_bounds() -> None:
    assert len("<" + "x" * 989 + "@host.fr>") == MAX_MSG_ID_LENGTH + 1
    assert parse_msg_ids("<" + "x" * 989 + "@host.fr>") == ()
    assert parse_msg_ids("<" + "x" * 988 + "@host.fr>") != ()
    many = " ".join(f"<{i}@h>" for i in range(1000))
    ids = parse_msg_ids(many)
    assert len(ids) == MAX_MSG_IDS
    # the root and the latest ones, as threading needs them
    assert ids[0] == "<0@h>" and ids[-1] == "<999@h>" and ids[1] == f"<{1000 - MAX_MSG_IDS + 1}@h>"


def test_thread_root() -> None:
    assert thread_root("<m@x>", ("<p@x>",), ("<root@x>", "<p@x>")) == "<root@x>"
    assert thread_root("<m@x>", ("<p@x>",), ()) == "<p@x>"
    assert thread_root("<m@x>", (), ()) == "<m@x>"
    assert thread_root(None, (), ()) is None  # missing Message-ID
    # raw header values are brought to the same form
    assert thread_root("m@x", (), ("junk", " <root@x> <p@x>")) == "<root@x>"


def test_answered_ids_and_closed_replies() -> None:
    assert answered_ids(("<p@x>",), ("<root@x>", "<p@x>")) == ("<p@x>",)
    assert answered_ids((), ("<root@x>", "<p@x>")) == ("<p@x>",)
    assert answered_ids((), ()) == ()
    closed = {"<root@x>"}
    # a reply to a later message of a thread that holds a closed message is not refused
    assert not replies_to_closed_message(("<p@x>",), ("<root@x>", "<p@x>"), closed)
    assert replies_to_closed_message(("<root@x>",), ("<root@x>",), closed)
    assert replies_to_closed_message((), ("<root@x>",), closed)


# --- normalise_address --------------------------------------------------------------------

@pytest.mark.parametrize(("addr", "norm"), [
    ("Dr.Martin@CH-Lyon.MSSante.fr", "dr.martin@ch-lyon.mssante.fr"),
    ("<Dr.Martin@ch-lyon.mssante.fr>", "dr.martin@ch-lyon.mssante.fr"),
    ("secretariat.cardio@ch-lyon.mssante.fr.", "secretariat.cardio@ch-lyon.mssante.fr"),
    ("279035121518989@Patient.MSSante.FR", "279035121518989@patient.mssante.fr"),
    ("a@b", "a@b"),
])
def test_normalise_address(addr: str, norm: str) -> None:
    assert normalise_address(addr) == norm


@pytest.mark.parametrize("addr", [
    "", "no-at-sign", "@x.fr", "a@", "<>", "a b@x.fr", " a@x.fr", "a@x.fr ", "a\r@x.fr",
    '"a b"@x.fr', '"a@b"@x.fr', "a..b@x.fr", ".a@x.fr", "a.@x.fr", "a@x..fr", "a@-x.fr",
    "a@[192.0.2.1]", "caf\u00e9@x.fr", "a@caf\u00e9.fr", "a\udce9@x.fr", "x" * 65 + "@x.fr",
    "a@" + "b" * 64 + ".fr", "a@<b>.fr",
])
def test_normalise_address_refuses(addr: str) -> None:
    assert normalise_address(addr) is None


# --- professional side -------------------------------------------------------------------

def pro(from_: tuple[str, ...] = ("Dr.Martin@CH-Lyon.mssante.fr",), reply_to: tuple[str, ...] = (),
        subject: str = "Resultats", mes: str | None = None, message_id: str | None = "<m1@ch-lyon>",
        in_reply_to: tuple[str, ...] = (), references: tuple[str, ...] = ()) -> ProfessionalMessage:
    return ProfessionalMessage(from_, reply_to, subject, mes, message_id, in_reply_to, references)


def test_effects_plain_message_opens() -> None:
    assert professional_effects(pro(), is_mssante) == ConversationEffects(
        thread="<m1@ch-lyon>", correspondents=("dr.martin@ch-lyon.mssante.fr",),
        close_exchange=False, closed_message=None)


def test_effects_reply_to_in_and_out_of_trust_space() -> None:
    eff = professional_effects(pro(reply_to=("Secretariat@ch-lyon.mssante.fr", "dr.martin@gmail.com",
                                             "dr.martin@ch-lyon.mssante.fr",
                                             "279035121518989@patient.mssante.fr")), is_mssante)
    # an untrusted Reply-To, a duplicate and another patient are not correspondents
    assert eff.correspondents == ("dr.martin@ch-lyon.mssante.fr", "secretariat@ch-lyon.mssante.fr")


def test_effects_untrusted_from_opens_nothing() -> None:
    eff = professional_effects(pro(from_=("dr.martin@gmail.com",),
                                   reply_to=("secretariat@ch-lyon.mssante.fr",)), is_mssante)
    assert eff.correspondents == ()
    assert professional_effects(pro(from_=()), is_mssante).correspondents == ()
    assert professional_effects(pro(from_=("not an address",)), is_mssante).correspondents == ()


def test_effects_patient_domain_never_correspondent() -> None:
    # even if the trust list were to name the patient domain itself
    eff = professional_effects(pro(from_=("279035121518989@patient.mssante.fr",)), lambda d: True)
    assert eff.correspondents == ()
    eff = professional_effects(pro(from_=("a@patient.example",)), lambda d: True,
                               own_domain="Patient.Example")
    assert eff.correspondents == ()


def test_effects_fin_subject_closes_exchange() -> None:
    eff = professional_effects(pro(subject="Re: [FIN] Resultats", reply_to=("sec@ch-lyon.mssante.fr",)),
                               is_mssante)
    assert eff.close_exchange is True
    assert eff.correspondents == ("dr.martin@ch-lyon.mssante.fr", "sec@ch-lyon.mssante.fr")
    assert eff.closed_message is None


def test_effects_x_mss_mes_closes_only_the_message() -> None:
    eff = professional_effects(pro(mes=" fin", in_reply_to=("<p@x>",), references=("<r@x>", "<p@x>")),
                               is_mssante)
    assert eff == ConversationEffects(thread="<r@x>", correspondents=("dr.martin@ch-lyon.mssante.fr",),
                                      close_exchange=False, closed_message="<m1@ch-lyon>")
    # without a Message-ID there is nothing to record
    assert professional_effects(pro(mes="FIN", message_id=None), is_mssante).closed_message is None


RAW = (b"From: =?utf-8?q?Dr_Andr=C3=A9_Martin?= <Dr.Martin@CH-Lyon.mssante.fr>\r\n"
       b"Reply-To: Secretariat <secretariat@ch-lyon.mssante.fr>, Perso <andre@gmail.com>\r\n"
       b"To: 279035121518989@patient.mssante.fr\r\n"
       b"Subject: =?utf-8?q?Re:_[FIN]_R=C3=A9sultats?=\r\n"
       b"X-MSS-MES: FIN\r\n"
       b"Message-ID: <m2@ch-lyon.mssante.fr>\r\n"
       b"In-Reply-To: <p1@patient.mssante.fr>\r\n"
       b"References: <m1@ch-lyon.mssante.fr> (first)\r\n <p1@patient.mssante.fr>\r\n"
       b"\r\nbody\r\n")


@pytest.mark.parametrize("pol", [email_policy.compat32, email_policy.default, email_policy.SMTP])
def test_professional_from_headers(pol: email_policy.Policy) -> None:
    msg = email.message_from_bytes(RAW, policy=pol)
    p = professional_from_headers(msg)
    assert p == ProfessionalMessage(
        from_addresses=("Dr.Martin@CH-Lyon.mssante.fr",),
        reply_to=("secretariat@ch-lyon.mssante.fr", "andre@gmail.com"),
        subject="Re: [FIN] Résultats", mes="FIN", message_id="<m2@ch-lyon.mssante.fr>",
        in_reply_to=("<p1@patient.mssante.fr>",),
        references=("<m1@ch-lyon.mssante.fr>", "<p1@patient.mssante.fr>"))
    assert professional_effects(p, is_mssante) == ConversationEffects(
        thread="<m1@ch-lyon.mssante.fr>",
        correspondents=("dr.martin@ch-lyon.mssante.fr", "secretariat@ch-lyon.mssante.fr"),
        close_exchange=True, closed_message="<m2@ch-lyon.mssante.fr>")


def test_professional_from_headers_odd_messages() -> None:
    # missing headers, 8-bit raw bytes, a Header object set by a program
    msg = email.message_from_bytes(b"From: Andr\xc3\xa9 <a@ch-lyon.mssante.fr>\r\n"
                                   b"Subject: caf\xe9 [FIN]\r\n\r\n")
    p = professional_from_headers(msg)
    assert p.from_addresses == ("a@ch-lyon.mssante.fr",)
    assert p.subject == "caf\ufffd [FIN]"
    assert (p.message_id, p.in_reply_to, p.references, p.mes, p.reply_to) == (None, (), (), None, ())
    built = Message()
    built["Subject"] = Header("Résultats", "utf-8")  # type: ignore[assignment]  # compat32 allows it
    built["From"] = "garbage <<< @@ >>>"
    p = professional_from_headers(built)
    assert p.subject == "Résultats"
    assert professional_effects(p, is_mssante).correspondents == ()
    assert professional_from_headers(Message()) == ProfessionalMessage((), (), "", None, None, (), ())


# --- patient side ------------------------------------------------------------------------

OPEN = RecipientFacts(Exchange.OPEN, pharmacy_allowed=False, replies_to_closed_message=False)
NONE = RecipientFacts(Exchange.NONE, pharmacy_allowed=False, replies_to_closed_message=False)
CLOSED = RecipientFacts(Exchange.CLOSED, pharmacy_allowed=False, replies_to_closed_message=False)


def decide(addr: str, facts: RecipientFacts = OPEN) -> Decision:
    return patient_recipient_decision(addr, DOMAIN, is_mssante, facts)


@pytest.mark.parametrize(("addr", "facts", "code", "status", "rule"), [
    ("no-at-sign", OPEN, 501, "5.1.3", "bad_recipient_syntax"),
    ("a b@ch-lyon.mssante.fr", OPEN, 501, "5.1.3", "bad_recipient_syntax"),
    ("279035121518989@patient.mssante.fr", OPEN, 550, "5.7.1", "patient_to_patient"),
    ("reponse.automatique-test@patient.mssante.fr", OPEN, 550, "5.7.1", "patient_to_patient"),
    ("Postmaster@Patient.MSSante.fr", OPEN, 550, "5.7.1", "patient_to_patient"),
    ("dr.martin@gmail.com", OPEN, 550, "5.7.1", "outside_trust_space"),
    ("dr.martin@ch-lyon.mssante.fr", NONE, 550, "5.7.1", "professional_must_start"),
    ("dr.martin@ch-lyon.mssante.fr", CLOSED, 550, "5.7.1", "exchange_closed"),
    ("Dr.Martin@CH-Lyon.mssante.fr", OPEN, 250, "2.1.5", "rcpt"),
])
def test_patient_decisions(addr: str, facts: RecipientFacts, code: int, status: str, rule: str) -> None:
    d = decide(addr, facts)
    assert (d.code, d.status, d.rule) == (code, status, rule)


def test_patient_decision_order() -> None:
    reply_closed = RecipientFacts(Exchange.OPEN, False, replies_to_closed_message=True)
    assert decide("dr.martin@ch-lyon.mssante.fr", reply_closed) is MESSAGE_CLOSED
    # syntax before domain; own domain before trust; trust before the exchange facts
    assert decide("<>", reply_closed) is BAD_RECIPIENT
    assert patient_recipient_decision("1@patient.mssante.fr", DOMAIN, lambda d: True, OPEN) \
        is PATIENT_TO_PATIENT
    assert decide("x@gmail.com", reply_closed) is OUTSIDE_TRUST_SPACE
    # a closed message wins over the exchange state
    assert decide("dr.martin@ch-lyon.mssante.fr",
                  RecipientFacts(Exchange.NONE, False, True)) is MESSAGE_CLOSED
    assert decide("dr.martin@ch-lyon.mssante.fr", NONE) is PROFESSIONAL_MUST_START
    assert decide("dr.martin@ch-lyon.mssante.fr", CLOSED) is EXCHANGE_CLOSED


def test_pharmacy() -> None:
    pharmacy = "officine@pharmacie-du-port.mssante.fr"
    for exchange in Exchange:
        assert decide(pharmacy, RecipientFacts(exchange, True, False)).accepted
    # the X-MSS-MES mark is on the message: even a pharmacy refuses a reply to it
    assert decide(pharmacy, RecipientFacts(Exchange.OPEN, True, True)) is MESSAGE_CLOSED
    # an allowed pharmacy still has to be in the trust space
    assert decide("officine@gmail.com", RecipientFacts(Exchange.NONE, True, False)) is OUTSIDE_TRUST_SPACE


def test_own_domain_from_configuration() -> None:
    d = patient_recipient_decision("x@Patient.Example.", "patient.example", lambda d: True, OPEN)
    assert d is PATIENT_TO_PATIENT


def test_texts_ascii_french_then_english() -> None:
    decisions = [BAD_RECIPIENT, PATIENT_TO_PATIENT, OUTSIDE_TRUST_SPACE, MESSAGE_CLOSED,
                 PROFESSIONAL_MUST_START, EXCHANGE_CLOSED]
    assert len({d.rule for d in decisions}) == len(decisions)
    for d in decisions:
        line = d.smtp()
        assert line.isascii() and line.isprintable(), line  # RFC 5321 §4.2
        assert line.startswith(f"{d.code} {d.status} {d.fr} / {d.en}")
        assert " / " not in d.fr and " / " not in d.en
    assert PROFESSIONAL_MUST_START.smtp() == \
        "550 5.7.1 Ce professionnel doit d'abord vous ecrire / This professional must write to you first"


def test_a_from_outside_the_authenticated_domain_opens_and_closes_nothing() -> None:
    msg = ProfessionalMessage(from_addresses=("dr@b.mssante.fr",), reply_to=("secretariat@a.mssante.fr",),
                              subject="Fin de suivi [FIN]", mes=None, message_id="<x@a.mssante.fr>",
                              in_reply_to=(), references=())
    effects = professional_effects(msg, lambda d: True, sender_ok=lambda d: d == "a.mssante.fr")
    assert effects.correspondents == ()  # neither the From nor, through it, the Reply-To
    ok = professional_effects(msg, lambda d: True, sender_ok=lambda d: d == "b.mssante.fr")
    assert ok.correspondents == ("dr@b.mssante.fr", "secretariat@a.mssante.fr") and ok.close_exchange
