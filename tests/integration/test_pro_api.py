"""Issue 18 end to end: the professionals' API against a running daemon, over real TLS
(http.client), with CPS-like certificates from the development CA (certs/professional.py):
every error code, replay, expiry, revocation, foreign CA, live block, the patient's
INBOX messages of first and emergency accesses (and the content-free notification),
the audit rows, and the patient's controls through the CLI as a real process."""
from __future__ import annotations

import base64
import datetime as dt
import email
import email.policy
import hashlib
import http.client
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from certs.pki import Issued, load_ca, make_ca, make_crl
from certs.professional import certificate_pem, cps_subject, issue_cps, sign_challenge
from mailbox_store.documents import NewDocument
from relay.web.pro_api import PRO_SESSIONS
from tests.integration.conftest import INS_ACTIVE, INS_PENDING, INS_UNKNOWN, RunningDaemon
from tests.integration.test_conversations import ProHandler
from tests.ports import free_port
from tests.web.files import pdf

CLI = [sys.executable, "-m", "relay.cli"]
AUTHOR = "10001234567"  # RPPS of the author of the hidden document
OTHER = "10009876543"
ATTENDING = "10005555555"
EMERGENCY_DOC = "10007777777"
NOTIFY = "patient.perso@example.org"


@dataclass
class World:
    rd: RunningDaemon
    instance: Path
    ca: Issued
    smarthost: ProHandler
    docs: dict[str, str]  # name -> document id

    @property
    def port(self) -> int:
        assert self.rd.daemon.web is not None
        return self.rd.daemon.web.port

    def api(self, method: str, path: str, body: Any = None, token: str | None = None,
            raw: bytes | None = None) -> tuple[int, Any, http.client.HTTPResponse]:
        ctx = ssl.create_default_context(cafile=str(self.rd.pki("ca.pem")))
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=60)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            content = resp.read()
        finally:
            conn.close()
        if resp.getheader("Content-Type", "").startswith("application/json"):
            return resp.status, json.loads(content), resp
        return resp.status, content, resp

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, MSSANTE_RELAY_CONFIG=str(self.instance / "relay.toml"))
        return subprocess.run([*CLI, *args], capture_output=True, text=True, env=env, timeout=60)

    def session(self, card: Issued, nonce: str | None = None, signer: Issued | None = None,
                pem: str | None = None) -> tuple[int, Any]:
        if nonce is None:
            status, body, _ = self.api("POST", "/pro/challenge")
            assert status == 200 and body["expires_in"] == 120
            nonce = body["nonce"]
            assert len(base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))) == 32
        signature = base64.b64encode(sign_challenge((signer or card).key, nonce)).decode()
        status, body, _ = self.api("POST", "/pro/session", {"nonce": nonce, "certificate": pem or
                                                             certificate_pem(card.cert), "signature": signature})
        return status, body

    def login(self, card: Issued) -> str:
        status, body = self.session(card)
        assert status == 200, body
        return str(body["token"])

    def inbox(self) -> list[email.message.Message]:
        return [email.message_from_bytes(m, policy=email.policy.default) for m in self.rd.inbox(INS_ACTIVE)]

    def audit(self) -> list[dict[str, Any]]:
        p = self.cli("audit", INS_ACTIVE, "--json")
        assert p.returncode == 0, p.stderr
        return json.loads(p.stdout)


def _file(rd: RunningDaemon, title: str, author: str | None, content: bytes) -> str:
    meta = {"title": title, "filename": f"{title}.pdf", "mime_type": "application/pdf", "size": len(content),
            "sha256": hashlib.sha256(content).hexdigest(), "category": "Compte rendu", "type_code": None,
            "type_display": None, "date": "2026-11-23T10:00:00+01:00",
            "author": {"address": "dr@test-operator.mssante.fr", "cert_subject": None,
                       "id": author, "name": f"Dr {title}" if author else None}}
    mb = rd.call(rd.store.require_mailbox(INS_ACTIVE))
    [doc_id] = rd.call(rd.store.file_documents(mb, [NewDocument(f"<{title}@test>", content, meta)], "mx"))
    return str(doc_id)


@pytest.fixture
def world(instance: Path) -> Iterator[World]:
    port = free_port()
    smarthost = ProHandler()
    controller = Controller(smarthost, hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    ca = load_ca(instance / "pki")
    (instance / "pki/pro.crl").write_bytes(make_crl(ca, []).public_bytes(Encoding.PEM))
    config = instance / "relay.toml"
    # a short notifications.window: the documents filed below do not hold back the notices tested
    text = config.read_text().replace('smarthost = ""', f'smarthost = "127.0.0.1:{port}"')
    assert "window = 3600" in text
    text = text.replace("window = 3600", "window = 0.05")
    assert 'trust_anchors = ""\n' in text
    config.write_text(text.replace('trust_anchors = ""\n', 'trust_anchors = ""\ncrls = ["pki/pro.crl"]\n', 1))
    rd = RunningDaemon(config).start()
    try:
        mb = rd.call(rd.store.require_mailbox(INS_ACTIVE))
        docs = {"hidden": _file(rd, "Hidden", "8" + AUTHOR, pdf("Hidden")),
                "plain": _file(rd, "Plain", None, pdf("Plain")),
                "other": _file(rd, "Other", OTHER, pdf("Other"))}
        time.sleep(0.2)  # past the window of the documents' own (address-less) notifications
        rd.call(rd.store.set_notify_email(INS_ACTIVE, NOTIFY))
        time.sleep(1.1)  # store.mailbox_cache_ttl: the notifier sees the address within it
        rd.call(rd.store.set_document_hidden(mb, docs["hidden"], True, "patient"))
        yield World(rd, instance, ca, smarthost, docs)
    finally:
        rd.stop()
        controller.stop()


def test_consent_then_list_and_read_with_first_access_message_and_audit(world: World) -> None:
    card = issue_cps(world.ca, OTHER, "Jeanne", "Durand")
    status, body = world.session(card)
    assert status == 200 and body["idnat"] == "8" + OTHER and body["name"] == "Jeanne Durand"
    token = body["token"]
    base = f"/pro/patients/{INS_ACTIVE}"
    status, body, resp = world.api("GET", f"{base}/documents", token=token)
    assert (status, body) == (403, {"error": "not_authorised"})
    assert resp.getheader("Strict-Transport-Security") and resp.getheader("X-Content-Type-Options") == "nosniff"
    assert world.api("POST", f"{base}/access", {"consent": False}, token=token)[0] == 400
    before = len(world.inbox())
    status, body, _ = world.api("POST", f"{base}/access", {"consent": True}, token=token)
    assert status == 200, body
    status, body, _ = world.api("GET", f"{base}/documents", token=token)
    assert status == 200
    listed = {d["id"]: d for d in body["documents"]}
    # the hidden document is not theirs: not listed; the others are, with the contract's fields
    assert set(listed) == {world.docs["plain"], world.docs["other"]}
    other = listed[world.docs["other"]]
    assert other["author"] == {"idnat": "8" + OTHER, "name": "Dr Other"}
    assert set(other) == {"id", "title", "class", "author", "date", "size", "mime"}
    assert other["mime"] == "application/pdf" and other["title"] == "Other"
    assert listed[world.docs["plain"]]["author"]["idnat"] is None
    status, content, resp = world.api("GET", f"{base}/documents/{world.docs['other']}", token=token)
    assert status == 200 and content.startswith(b"%PDF") and resp.getheader("Content-Type") == "application/pdf"
    for doc_id in (world.docs["hidden"], "0" * 32, "not-an-id"):  # hidden, absent, malformed: all alike
        assert world.api("GET", f"{base}/documents/{doc_id}", token=token)[:2] == \
            (404, {"error": "unknown_document"})
    # a second consent tells the patient nothing new: one message for the first access
    assert world.api("POST", f"{base}/access", {"consent": True}, token=token)[0] == 200
    told = world.inbox()[before:]
    assert len(told) == 1
    msg = told[0]
    assert msg["From"].addresses[0].addr_spec == world.rd.config.notify_from
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Jeanne Durand" in text and OTHER in text and "première fois" in text
    assert "urgence" not in msg["Subject"].lower()
    # the content-free notification to the personal address follows
    [notice] = world.smarthost.wait(1)
    assert notice.rcpts == [NOTIFY] and b"Jeanne" not in notice.content and OTHER.encode() not in notice.content
    rows = [r for r in world.audit() if r["actor"].startswith("pro:")]
    actor = f"pro:8{OTHER} Jeanne Durand"
    assert {(r["actor"], r["action"]) for r in rows} >= {(actor, "pro.consent"), (actor, "pro.list"),
                                                          (actor, "dossier.download")}
    listing = json.loads(world.cli("pro", "list", INS_ACTIVE, "--json").stdout)
    assert [(p["idnat"], p["name"], p["by"]) for p in listing["authorised"]] == [("8" + OTHER, "Jeanne Durand",
                                                                                  "consent")]
    assert listing["blocked"] == []


def test_session_refusals_replay_expiry_revocation_and_foreign_ca(world: World) -> None:
    card = issue_cps(world.ca, OTHER, "Jeanne", "Durand")
    # a nonce is single-use: the replay of a good login is refused
    status, body, _ = world.api("POST", "/pro/challenge")
    nonce = body["nonce"]
    assert world.session(card, nonce=nonce)[0] == 200
    assert world.session(card, nonce=nonce) == (401, {"error": "unknown_nonce"})
    assert world.session(card, nonce="never-issued") == (401, {"error": "unknown_nonce"})
    # a failed attempt spends the nonce too
    status, body, _ = world.api("POST", "/pro/challenge")
    impostor = issue_cps(world.ca, AUTHOR, "Paul", "Faux")
    assert world.session(card, nonce=body["nonce"], signer=impostor) == (401, {"error": "bad_signature"})
    assert world.session(card, nonce=body["nonce"]) == (401, {"error": "unknown_nonce"})
    # an expired nonce
    assert world.rd.daemon.web is not None
    pros = world.rd.daemon.web.app[PRO_SESSIONS]
    pros.nonce_ttl = -1.0
    try:
        assert world.session(card) == (401, {"error": "unknown_nonce"})
    finally:
        pros.nonce_ttl = 120.0
    foreign = issue_cps(make_ca("Fausse AC", "Pas IGC-Sante"), OTHER, "Jeanne", "Durand")
    assert world.session(foreign) == (401, {"error": "untrusted_certificate"})
    assert world.session(card, pem="not a certificate") == (401, {"error": "untrusted_certificate"})
    old = issue_cps(world.ca, OTHER, "Jeanne", "Durand", days=30,
                    not_before=dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=60))
    assert world.session(old) == (401, {"error": "expired_certificate"})
    subject = x509.Name([a for a in cps_subject(OTHER, "Jeanne", "Durand") if a.oid != NameOID.COMMON_NAME]
                        + [x509.NameAttribute(NameOID.COMMON_NAME, "Jeanne Durand")])
    no_idnat = issue_cps(world.ca, OTHER, "Jeanne", "Durand", subject=subject)
    assert world.session(no_idnat) == (401, {"error": "not_a_professional"})
    no_signing = issue_cps(world.ca, OTHER, "Jeanne", "Durand", digital_signature=False)
    assert world.session(no_signing) == (401, {"error": "untrusted_certificate"})
    # revocation: the CRL file is read at each login, a new CRL applies at once
    token = world.login(card)
    (world.instance / "pki/pro.crl").write_bytes(make_crl(world.ca, [card.cert]).public_bytes(Encoding.PEM))
    assert world.session(card) == (401, {"error": "revoked_certificate"})
    assert world.session(issue_cps(world.ca, AUTHOR, "Paul", "Martin"))[0] == 200  # others still log in
    # tokens: missing, unknown, idle too long
    base = f"/pro/patients/{INS_ACTIVE}/documents"
    assert world.api("GET", base)[:2] == (401, {"error": "unauthenticated"})
    assert world.api("GET", base, token="forged")[:2] == (401, {"error": "unauthenticated"})
    assert world.api("GET", base, token=token)[:2] == (403, {"error": "not_authorised"})
    pros.idle = -1.0
    try:
        assert world.api("GET", base, token=token)[:2] == (401, {"error": "unauthenticated"})
    finally:
        pros.idle = 900.0
    assert world.api("POST", "/pro/session", raw=b"{not json")[:2] == (400, {"error": "bad_request"})
    assert world.api("POST", "/pro/session", {"nonce": 1})[:2] == (400, {"error": "bad_request"})
    assert world.api("POST", "/pro/session", raw=b"{" + b" " * 70_000 + b"}")[:2] == (400, {"error": "bad_request"})


def test_unknown_patient(world: World) -> None:
    token = world.login(issue_cps(world.ca, OTHER, "Jeanne", "Durand"))
    for ins in (INS_UNKNOWN, INS_PENDING, "123", "279035121518988"):
        assert world.api("GET", f"/pro/patients/{ins}/documents", token=token)[:2] == \
            (404, {"error": "unknown_patient"})


def test_live_block_and_unblock_through_the_cli(world: World) -> None:
    token = world.login(issue_cps(world.ca, OTHER, "Jeanne", "Durand"))
    base = f"/pro/patients/{INS_ACTIVE}"
    assert world.api("POST", f"{base}/access", {"consent": True}, token=token)[0] == 200
    assert world.api("GET", f"{base}/documents", token=token)[0] == 200
    p = world.cli("pro", "block", INS_ACTIVE, OTHER)  # the bare RPPS is accepted
    assert p.returncode == 0, p.stderr
    # the live token is refused at its next request, in every mode
    assert world.api("GET", f"{base}/documents", token=token)[:2] == (403, {"error": "blocked"})
    assert world.api("GET", f"{base}/documents/{world.docs['other']}", token=token)[:2] == \
        (403, {"error": "blocked"})
    assert world.api("POST", f"{base}/access", {"consent": True}, token=token)[:2] == (403, {"error": "blocked"})
    assert world.api("POST", f"{base}/emergency", {"reason": "Malaise"}, token=token)[:2] == \
        (403, {"error": "blocked"})
    listing = json.loads(world.cli("pro", "list", INS_ACTIVE, "--json").stdout)
    assert [b["idnat"] for b in listing["blocked"]] == ["8" + OTHER] and listing["authorised"] == []
    assert world.cli("pro", "unblock", INS_ACTIVE, "8" + OTHER).returncode == 0
    assert world.api("GET", f"{base}/documents", token=token)[0] == 200  # the authorisation was kept
    p = world.cli("pro", "block", INS_ACTIVE, "12345")
    assert p.returncode == 2 and p.stderr.startswith("mssante-relay: error: IDNAT") and "Traceback" not in p.stderr
    actions = [(r["actor"], r["action"], r["detail"]) for r in world.audit()]
    assert ("admin", "pro.block", "8" + OTHER) in actions and ("admin", "pro.unblock", "8" + OTHER) in actions
    assert (f"pro:8{OTHER} Jeanne Durand", "pro.refused", "blocked") in actions


def test_hidden_documents_author_attending_and_emergency(world: World) -> None:
    base = f"/pro/patients/{INS_ACTIVE}"
    hidden = world.docs["hidden"]
    # the author sees their hidden document once authorised (by the patient, through the CLI)
    assert world.cli("pro", "allow", INS_ACTIVE, AUTHOR).returncode == 0
    author = world.login(issue_cps(world.ca, AUTHOR, "Paul", "Martin"))
    ids = {d["id"] for d in world.api("GET", f"{base}/documents", token=author)[1]["documents"]}
    assert hidden in ids
    assert world.api("GET", f"{base}/documents/{hidden}", token=author)[0] == 200
    # the attending doctor too
    assert world.cli("mailbox", "attending", INS_ACTIVE, "8" + ATTENDING).returncode == 0
    assert json.loads(world.cli("pro", "list", INS_ACTIVE, "--json").stdout)["attending"] == "8" + ATTENDING
    attending = world.login(issue_cps(world.ca, ATTENDING, "Anne", "Traitant"))
    assert world.api("POST", f"{base}/access", {"consent": True}, token=attending)[0] == 200
    assert hidden in {d["id"] for d in world.api("GET", f"{base}/documents", token=attending)[1]["documents"]}
    # emergency access shows the rest for one hour, never the hidden document
    urgent = world.login(issue_cps(world.ca, EMERGENCY_DOC, "Marc", "Urgentiste"))
    assert world.api("POST", f"{base}/emergency", {"reason": "  "}, token=urgent)[:2] == \
        (400, {"error": "reason_required"})
    assert world.api("POST", f"{base}/emergency", {}, token=urgent)[:2] == (400, {"error": "reason_required"})
    before = len(world.inbox())
    status, body, _ = world.api("POST", f"{base}/emergency", {"reason": "Patient inconscient aux urgences"},
                                token=urgent)
    assert status == 200 and body["expires_in"] == 3600
    listed = {d["id"] for d in world.api("GET", f"{base}/documents", token=urgent)[1]["documents"]}
    assert listed == {world.docs["plain"], world.docs["other"]}
    assert world.api("GET", f"{base}/documents/{hidden}", token=urgent)[:2] == (404, {"error": "unknown_document"})
    assert world.api("GET", f"{base}/documents/{world.docs['plain']}", token=urgent)[0] == 200
    # hiding applies at the next request; unhiding too
    assert world.cli("dossier", "hide", INS_ACTIVE, world.docs["plain"]).returncode == 0
    assert world.api("GET", f"{base}/documents/{world.docs['plain']}", token=urgent)[0] == 404
    assert world.cli("dossier", "unhide", INS_ACTIVE, world.docs["plain"]).returncode == 0
    assert world.api("GET", f"{base}/documents/{world.docs['plain']}", token=urgent)[0] == 200
    p = world.cli("dossier", "hide", INS_ACTIVE, "0" * 32)
    assert p.returncode == 2 and "0" * 32 in p.stderr
    # the patient is told, with the word "urgence" and the reason
    told = world.inbox()[before:]
    assert len(told) == 1
    assert "urgence" in told[0]["Subject"].lower()
    text = told[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Marc Urgentiste" in text and "urgence" in text and "Patient inconscient aux urgences" in text
    # a second emergency access is told again
    assert world.api("POST", f"{base}/emergency", {"reason": "Reprise"}, token=urgent)[0] == 200
    assert len(world.inbox()) == before + 2
    # switched off: refused for a new emergency, and the live one ends at the next request
    assert world.cli("mailbox", "emergency", INS_ACTIVE, "off").returncode == 0
    assert world.api("GET", f"{base}/documents", token=urgent)[:2] == (403, {"error": "emergency_disabled"})
    assert world.api("POST", f"{base}/emergency", {"reason": "Malaise"}, token=urgent)[:2] == \
        (403, {"error": "emergency_disabled"})
    assert world.cli("mailbox", "emergency", INS_ACTIVE, "maybe").returncode == 2
    assert json.loads(world.cli("pro", "list", INS_ACTIVE, "--json").stdout)["emergency"] is False
    assert "emergency access: off" in world.cli("pro", "list", INS_ACTIVE).stdout
    rows = [(r["actor"], r["action"]) for r in world.audit()]
    assert (f"pro:8{EMERGENCY_DOC} Marc Urgentiste", "pro.emergency") in rows
    assert ("admin", "pro.emergency_setting") in rows and ("admin", "dossier.hide") in rows
    assert all("inconscient" not in r["detail"] for r in world.audit())  # the reason stays in the INBOX
