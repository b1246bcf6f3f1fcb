"""Properties of policy/conversation.py.

A state machine plays random sequences of professional messages and patient sends. The
conversation state (correspondent -> open/closed, X-MSS-MES: FIN ids, allowed pharmacies)
lives here as the store would keep it, changed only through `professional_effects`; patient
sends are decided only by `patient_recipient_decision`. Each decision is checked against
an independent log of what happened (DESIGN.md §4 "Professional initiates", "Closing",
"Nothing leaves the trust space"), never against that state.
"""
from __future__ import annotations

import email
from dataclasses import dataclass
from email import policy as email_policy

from hypothesis import event, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from policy.conversation import (Exchange, RecipientFacts, closes_exchange, closes_message,
                                 decode_subject, normalise_address, parse_msg_ids,
                                 patient_recipient_decision, professional_effects,
                                 professional_from_headers, replies_to_closed_message, thread_root)
from tests.examples import examples

DOMAIN = "patient.mssante.fr"
PATIENT = "164027512345678@patient.mssante.fr"  # the mailbox all messages go to
TRUSTED_DOMAINS = frozenset({"ch-lyon.mssante.fr", "medecin.mssante.fr", "pharmacie-du-port.mssante.fr"})
PROFESSIONALS = ("dr.martin@ch-lyon.mssante.fr", "secretariat@ch-lyon.mssante.fr",
                 "dr.durand@medecin.mssante.fr")
PHARMACY = "officine@pharmacie-du-port.mssante.fr"
UNTRUSTED = "dr.martin@gmail.com"
OTHER_PATIENT = "279035121518989@patient.mssante.fr"
TEST_ADDRESS = "reponse.automatique-test@patient.mssante.fr"
OUTSIDE = "someone@example.org"
BAD = "not-an-address"

SENDERS = (*PROFESSIONALS, PHARMACY, UNTRUSTED)
REPLY_TOS = (*PROFESSIONALS, PHARMACY, UNTRUSTED, OTHER_PATIENT)
TARGETS = (*PROFESSIONALS, PHARMACY, UNTRUSTED, OTHER_PATIENT, TEST_ADDRESS, OUTSIDE, BAD)

# (raw Subject, does it carry [FIN]) — the flag is the test's own knowledge of the subject
SUBJECTS = (
    ("Resultats d'analyse", False),
    ("=?utf-8?q?R=C3=A9sultats_d'analyse?=", False),
    ("[fin] en minuscules", False),
    ("[FIN] Resultats", True),
    ("Re: [FIN]", True),
    ("=?utf-8?q?[FIN]_R=C3=A9sultats?=", True),
    ("=?utf-8?q?Compte_rendu_[F?=\r\n =?utf-8?q?IN]?=", True),
    ("=?x-bogus?q?[FIN]_caf=E9?=", True),
)


def is_mssante(domain: str) -> bool:
    return domain in TRUSTED_DOMAINS


def domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower()


def in_trust_space(address: str) -> bool:
    """The oracle's own view: a well-formed address of a trusted, non-patient domain."""
    return "@" in address and domain_of(address) in TRUSTED_DOMAINS


def spelled(address: str) -> st.SearchStrategy[str]:
    """The same address as different software writes it."""
    return st.sampled_from((address, address.upper(), address.title(), f"<{address}>"))


@dataclass(frozen=True)
class ProEvent:
    message_id: str
    sender: str  # lower case, as the test knows it
    reply_to: tuple[str, ...]  # lower case
    fin: bool  # [FIN] in the subject
    mes_fin: bool  # X-MSS-MES: FIN
    references: tuple[str, ...]

    def names(self, address: str) -> bool:
        """Did this message name `address` as one the patient may answer?"""
        if not in_trust_space(self.sender):
            return False
        return address == self.sender or (address in self.reply_to and in_trust_space(address))


@dataclass(frozen=True)
class PatientEvent:
    target: str
    replied: str | None
    accepted: bool
    rule: str


class Conversations(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # state as the store keeps it, changed only from professional_effects
        self.correspondents: dict[str, Exchange] = {}
        self.closed_ids: set[str] = set()
        self.pharmacies: frozenset[str] = frozenset()
        # independent log
        self.history: list[ProEvent | PatientEvent] = []
        self.pro_messages: list[ProEvent] = []
        self.counter = 0

    @initialize(allowed=st.booleans())
    def allow_pharmacy(self, allowed: bool) -> None:
        self.pharmacies = frozenset({PHARMACY} if allowed else ())

    # --- professionals ------------------------------------------------------------------

    def deliver(self, sender: str, sender_spelling: str, reply_to: list[tuple[str, str]],
                subject: tuple[str, bool], mes_fin: bool, parent: int | None, compat: bool) -> ProEvent:
        self.counter += 1
        message_id = f"<pro.{self.counter}@{domain_of(sender)}>"
        refs: tuple[str, ...] = ()
        lines = [f"From: Dr =?utf-8?q?Andr=C3=A9?= <{sender_spelling.strip('<>')}>",
                 f"To: {PATIENT}", f"Subject: {subject[0]}", f"Message-ID: {message_id}"]
        if reply_to:
            lines.append("Reply-To: " + ",\r\n ".join(f"<{s.strip('<>')}>" for _, s in reply_to))
        if mes_fin:
            lines.append("X-MSS-MES: FIN")
        if parent is not None and self.pro_messages:
            p = self.pro_messages[parent % len(self.pro_messages)]
            refs = (*p.references, p.message_id)
            lines.append(f"In-Reply-To: {p.message_id}")
            lines.append("References: " + "\r\n ".join(refs))
        raw = ("\r\n".join(lines) + "\r\n\r\nbody\r\n").encode()
        msg = email.message_from_bytes(raw, policy=email_policy.compat32 if compat else email_policy.default)

        effects = professional_effects(professional_from_headers(msg), is_mssante)
        assert effects.thread == (refs[0] if refs else message_id)
        for c in effects.correspondents:
            self.correspondents[c] = Exchange.CLOSED if effects.close_exchange else Exchange.OPEN
        if effects.closed_message is not None:
            self.closed_ids.add(effects.closed_message)

        delivered = ProEvent(message_id, sender, tuple(a for a, _ in reply_to), subject[1], mes_fin, refs)
        self.history.append(delivered)
        self.pro_messages.append(delivered)
        return delivered

    @rule(data=st.data(), sender=st.sampled_from(SENDERS),
          reply_to=st.lists(st.sampled_from(REPLY_TOS), max_size=2, unique=True),
          subject=st.sampled_from(SUBJECTS), mes_fin=st.booleans(),
          parent=st.none() | st.integers(min_value=0), compat=st.booleans())
    def professional_writes(self, data: st.DataObject, sender: str, reply_to: list[str],
                            subject: tuple[str, bool], mes_fin: bool, parent: int | None,
                            compat: bool) -> None:
        spellings = [(a, data.draw(spelled(a))) for a in reply_to]
        self.deliver(sender, data.draw(spelled(sender)), spellings, subject, mes_fin, parent, compat)

    # --- the patient --------------------------------------------------------------------

    def send(self, target: str, reply: int | None, with_in_reply_to: bool = True) -> PatientEvent:
        in_reply_to: tuple[str, ...] = ()
        references: tuple[str, ...] = ()
        replied: ProEvent | None = None
        if reply is not None and self.pro_messages:
            replied = self.pro_messages[reply % len(self.pro_messages)]
            # some clients write only References: the last one is the message answered
            in_reply_to = (replied.message_id,) if with_in_reply_to else ()
            references = (*replied.references, replied.message_id)
        norm = normalise_address(target)
        facts = RecipientFacts(
            exchange=self.correspondents.get(norm, Exchange.NONE) if norm else Exchange.NONE,
            pharmacy_allowed=norm in self.pharmacies,
            replies_to_closed_message=replies_to_closed_message(in_reply_to, references, self.closed_ids))
        decision = patient_recipient_decision(target, DOMAIN, is_mssante, facts)
        assert decision.smtp().isascii()
        event(f"patient send: {decision.rule}")  # --hypothesis-show-statistics shows the mix

        t = target.strip("<>").lower()
        naming = [e for e in self.history if isinstance(e, ProEvent) and e.names(t)]
        last_open = bool(naming) and not naming[-1].fin
        pharmacy = t == PHARMACY and PHARMACY in self.pharmacies
        reply_closed = replied is not None and replied.mes_fin
        if decision.accepted:
            assert t != BAD and in_trust_space(t), (target, decision)
            assert domain_of(t) != DOMAIN
            assert pharmacy or last_open, (target, naming, decision)
            assert not reply_closed, (target, replied, decision)
        # liveness: whatever the rules allow is accepted
        if t != BAD and in_trust_space(t) and not reply_closed and (pharmacy or last_open):
            assert decision.accepted, (target, naming, decision)
        if t == BAD:
            assert decision.rule == "bad_recipient_syntax"
        elif domain_of(t) == DOMAIN:
            assert decision.rule == "patient_to_patient"
        elif not in_trust_space(t):
            assert decision.rule == "outside_trust_space"

        sent = PatientEvent(t, replied.message_id if replied else None, decision.accepted, decision.rule)
        self.history.append(sent)
        return sent

    @rule(data=st.data(), recipient=st.sampled_from(TARGETS), reply=st.none() | st.integers(min_value=0),
          with_in_reply_to=st.booleans())
    def patient_sends(self, data: st.DataObject, recipient: str, reply: int | None,
                      with_in_reply_to: bool) -> None:
        self.send(data.draw(spelled(recipient)) if recipient != BAD else recipient, reply, with_in_reply_to)

    @rule(sender=st.sampled_from((*PROFESSIONALS, PHARMACY)), mes_fin=st.booleans())
    def professional_writes_then_patient_starts_a_thread(self, sender: str, mes_fin: bool) -> None:
        self.deliver(sender, sender, [], SUBJECTS[0], mes_fin, None, False)
        assert self.send(sender, None).accepted

    @rule(fin_subject=st.sampled_from([s for s in SUBJECTS if s[1]]))
    def fin_closes_until_the_professional_writes_again(self, fin_subject: tuple[str, bool]) -> None:
        sender = PROFESSIONALS[self.counter % len(PROFESSIONALS)]
        self.deliver(sender, sender, [], fin_subject, False, None, True)
        refused = self.send(sender, None)
        assert not refused.accepted and refused.rule == "exchange_closed"

    @invariant()
    def correspondents_stay_in_the_trust_space(self) -> None:
        for address in self.correspondents:
            assert address == address.lower() and in_trust_space(address)
            assert domain_of(address) != DOMAIN
        assert all(i.startswith("<") and i.endswith(">") for i in self.closed_ids)


Conversations.TestCase.settings = settings(max_examples=examples(200), stateful_step_count=30, deadline=None)
TestConversations = Conversations.TestCase


# --- the header helpers never raise ---------------------------------------------------------

any_text = st.text(st.characters(codec=None, categories=None), max_size=300) | st.text(
    st.sampled_from("=?_<>()\"\\@ \t\r\nqQbB[FIN]abc\udce9\ud800\x00é"), max_size=200)


@settings(max_examples=examples(500), deadline=None)
@given(st.none() | any_text)
def test_header_helpers_never_raise(value: str | None) -> None:
    subject = decode_subject(value)
    assert isinstance(subject, str)
    assert "\r" not in subject and "\n" not in subject
    assert not any(0xD800 <= ord(c) <= 0xDFFF for c in subject)
    closes_exchange(subject)
    closes_message(value)
    ids = parse_msg_ids(value)
    assert len(ids) <= 100
    for i in ids:
        assert i.startswith("<") and i.endswith(">") and "@" in i and len(i) <= 998
        assert not any(0xD800 <= ord(c) <= 0xDFFF for c in i)
        assert parse_msg_ids(i) == (i,)  # one form, stable
    assert thread_root(value, (value or "",), ids) in (*ids, None) or ids == ()
    if value is not None:
        norm = normalise_address(value)
        assert norm is None or (norm == norm.lower() and norm.isascii() and normalise_address(norm) == norm)


@settings(max_examples=examples(300), deadline=None)
@given(st.binary(max_size=400))
def test_professional_from_headers_never_raises(raw: bytes) -> None:
    for pol in (email_policy.compat32, email_policy.default):
        msg = email.message_from_bytes(b"Subject: " + raw + b"\r\nFrom: " + raw + b"\r\nReferences: " + raw
                                       + b"\r\nReply-To: " + raw + b"\r\n\r\n", policy=pol)
        p = professional_from_headers(msg)
        professional_effects(p, is_mssante)
