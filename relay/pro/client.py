"""`mssante-relay pro dossier`: a professional consults a patient's dossier with their CPS card
(issue 18 §6), through the professional API exactly as issue 18 §3 writes it:

    POST /pro/challenge                      -> {"nonce", "expires_in"}
    POST /pro/session {nonce, certificate, signature}
         signature = RSASSA-PKCS1-v1_5 / SHA-256 over the nonce's ASCII bytes, made by the card
    Authorization: Bearer <token>, then
    POST /pro/patients/{INS}/access {"consent": true}     (--consent)
    POST /pro/patients/{INS}/emergency {"reason"}         (--emergency REASON)
    GET  /pro/patients/{INS}/documents                    (the list)
    GET  /pro/patients/{INS}/documents/{id}               (--get ID --output FILE)

The PIN is read from the terminal (getpass on /dev/tty), never from an argument or a pipe.
Every failure is one line on stderr, French (no accents) then English, and exit status 1;
never a traceback. A blocking client (urllib): one professional, one command, no event loop.
"""
from __future__ import annotations

import argparse
import base64
import getpass
import json
import os
import socket
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certs.cps import CardError, CardProfile, open_card
from policy.ins import InsError, parse_ins
from relay.core.config import Config

EXIT_FAILURE = 1
EXIT_USAGE = 2
TIMEOUT = 30.0
MAX_JSON_BYTES = 4 * 1024 * 1024
MAX_DOCUMENT_BYTES = 64 * 1024 * 1024  # the MX takes 25 MB messages: a document is smaller

# The API's refusal codes (issue 18 §3), as the professional reads them.
API_ERRORS: dict[str, str] = {
    "bad_signature": "signature de la carte refusee par le serveur / card signature refused",
    "unknown_nonce": "defi inconnu, deja utilise ou expire : recommencez / unknown, used or expired challenge",
    "untrusted_certificate": "certificat de la carte non reconnu (autorite non approuvee) / untrusted card certificate",
    "expired_certificate": "certificat de la carte expire ou pas encore valide / card certificate expired",
    "revoked_certificate": "certificat de la carte revoque / card certificate revoked",
    "not_a_professional": "certificat sans identifiant de professionnel de sante (IdNat_PS) "
                          "/ certificate without a health professional id",
    "unauthenticated": "session inconnue ou expiree : reconnectez-vous / unknown or expired session",
    "blocked": "le patient vous a bloque : acces refuse / the patient blocked you",
    "not_authorised": "le patient ne vous a pas autorise (--consent si le patient est d'accord, "
                      "--emergency en cas d'urgence) / not authorised by the patient",
    "unknown_patient": "patient inconnu (aucune boite active pour cet INS) / unknown patient",
    "unknown_document": "document introuvable / unknown document",
    "reason_required": "motif de l'acces en urgence obligatoire / emergency reason required",
    "emergency_disabled": "le patient a desactive l'acces en cas d'urgence / emergency access disabled by the patient",
}


class ProClientError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ProSession:
    token: str
    idnat: str
    name: str


@dataclass(frozen=True)
class Document:
    id: str
    title: str
    doc_class: str
    author_idnat: str | None
    author_name: str
    date: str
    size: int
    mime: str


class ProApi:
    """The professional API over HTTPS, verified against `ca_file` (the dev instance's CA)
    or the system's trust store."""

    def __init__(self, base_url: str, ca_file: Path | None, timeout: float = TIMEOUT):
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme != "https" or not parsed.hostname:
            raise ProClientError(f"--server : URL https:// attendue, recu {base_url!r} / expected an https:// URL")
        self.base = base_url.rstrip("/")
        try:
            self.ctx = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        except (OSError, ssl.SSLError):
            raise ProClientError(f"--ca : certificat d'autorite illisible : {ca_file} / unreadable CA file") from None
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None,
              limit: int = MAX_JSON_BYTES) -> tuple[bytes, str]:
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, context=self.ctx, timeout=self.timeout) as resp:
                payload = resp.read(limit + 1)
                if len(payload) > limit:
                    raise ProClientError("reponse du serveur trop grande / server response too large")
                return payload, resp.headers.get_content_type()
        except urllib.error.HTTPError as e:
            raise ProClientError(_refusal(e)) from None
        except urllib.error.URLError as e:
            raise ProClientError(_unreachable(self.base, e.reason)) from None
        except (TimeoutError, socket.timeout):
            raise ProClientError(f"le serveur {self.base} ne repond pas / server timed out") from None
        except (ConnectionError, ssl.SSLError, OSError) as e:
            raise ProClientError(_unreachable(self.base, e)) from None

    def _json(self, method: str, path: str, body: dict[str, Any] | None = None,
              token: str | None = None) -> dict[str, Any]:
        payload, _ = self._call(method, path, body, token)
        try:
            out = json.loads(payload) if payload.strip() else {}
        except ValueError:
            raise ProClientError("reponse du serveur illisible / unreadable server response") from None
        if not isinstance(out, dict):
            raise ProClientError("reponse du serveur illisible / unreadable server response")
        return out

    def challenge(self) -> str:
        nonce = self._json("POST", "/pro/challenge", {}).get("nonce")
        if not isinstance(nonce, str) or not nonce.isascii() or not nonce:
            raise ProClientError("defi du serveur illisible / unreadable server challenge")
        return nonce

    def session(self, nonce: str, certificate_pem: str, signature: bytes) -> ProSession:
        out = self._json("POST", "/pro/session", {"nonce": nonce, "certificate": certificate_pem,
                                                   "signature": base64.b64encode(signature).decode()})
        token = out.get("token")
        if not isinstance(token, str) or not token:
            raise ProClientError("session refusee par le serveur / session refused")
        return ProSession(token, str(out.get("idnat", "")), str(out.get("name", "")))

    def consent(self, token: str, ins: str) -> None:
        self._json("POST", f"/pro/patients/{ins}/access", {"consent": True}, token)

    def emergency(self, token: str, ins: str, reason: str) -> None:
        self._json("POST", f"/pro/patients/{ins}/emergency", {"reason": reason}, token)

    def documents(self, token: str, ins: str) -> list[Document]:
        raw = self._json("GET", f"/pro/patients/{ins}/documents", token=token).get("documents")
        if not isinstance(raw, list):
            raise ProClientError("liste de documents illisible / unreadable document list")
        docs = []
        for d in raw:
            if not isinstance(d, dict):
                raise ProClientError("liste de documents illisible / unreadable document list")
            author = d.get("author") if isinstance(d.get("author"), dict) else {}
            docs.append(Document(id=str(d.get("id", "")), title=str(d.get("title", "")),
                                 doc_class=str(d.get("class", "") or ""),
                                 author_idnat=author.get("idnat") if isinstance(author.get("idnat"), str) else None,
                                 author_name=str(author.get("name", "") or ""), date=str(d.get("date", "") or ""),
                                 size=int(d.get("size", 0) or 0), mime=str(d.get("mime", "") or "")))
        return docs

    def document(self, token: str, ins: str, doc_id: str) -> tuple[bytes, str]:
        return self._call("GET", f"/pro/patients/{ins}/documents/{urllib.parse.quote(doc_id, safe='')}",
                          token=token, limit=MAX_DOCUMENT_BYTES)


def _refusal(e: urllib.error.HTTPError) -> str:
    code = None
    try:
        body = json.loads(e.read(MAX_JSON_BYTES))
        code = body.get("error") if isinstance(body, dict) else None
    except (ValueError, OSError):
        pass
    if isinstance(code, str) and code in API_ERRORS:
        return f"{API_ERRORS[code]} (HTTP {e.code} {code})"
    if e.code == 404:
        return "service professionnel absent de ce serveur (HTTP 404) / professional API not found"
    return f"refus du serveur (HTTP {e.code}) / server refused the request"


def _unreachable(base: str, reason: object) -> str:
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (f"certificat du serveur {base} non reconnu (--ca pour l'autorite de l'instance) "
                "/ server certificate not trusted")
    return f"serveur {base} injoignable / server unreachable"


def _read_pin(tries_left: int | None) -> str:
    """From the terminal only: getpass reads /dev/tty; with no terminal, no PIN (a PIN piped in
    or passed as an argument would sit in shell history or process lists)."""
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
        os.close(fd)
    except OSError:
        raise ProClientError("aucun terminal pour saisir le code PIN / no terminal to type the PIN") from None
    hint = f" ({tries_left} essais restants)" if tries_left is not None and tries_left < 3 else ""
    try:
        return getpass.getpass(f"Code PIN de la carte CPS{hint} : ")
    except (EOFError, KeyboardInterrupt):
        raise ProClientError("saisie du code PIN annulee / PIN entry cancelled") from None


def login_with_card(api: ProApi, reader: str | None, profile: CardProfile) -> ProSession:
    """Card: certificate, PIN, then the server's challenge signed by the card; one transaction."""
    card = open_card(reader, profile)
    try:
        with card.transaction():
            der = card.read_certificate()
            try:
                pem = x509.load_der_x509_certificate(der).public_bytes(serialization.Encoding.PEM).decode()
            except ValueError:
                raise ProClientError("certificat de la carte illisible / unreadable card certificate") from None
            tries = card.pin_tries_left()
            if tries is not None:
                card.verify_pin(_read_pin(tries))
            nonce = api.challenge()
            signature = card.sign_sha256(nonce.encode("ascii"))
    finally:
        card.close()
    return api.session(nonce, pem, signature)


def _write_new(path: Path, data: bytes) -> None:
    """A new file, 0600 (health data), never over an existing one."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ProClientError(f"--output : {path} existe deja / already exists") from None
    except OSError as e:
        raise ProClientError(f"--output : ecriture impossible dans {path} ({e.strerror}) / cannot write") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _print_documents(ins: str, docs: list[Document], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{"id": d.id, "title": d.title, "class": d.doc_class, "date": d.date, "size": d.size,
                           "mime": d.mime, "author": {"idnat": d.author_idnat, "name": d.author_name}}
                          for d in docs], indent=2, ensure_ascii=False))
        return
    print(f"Dossier du patient {ins} : {len(docs)} document(s)")
    for d in docs:
        author = d.author_name or "auteur non precise"
        if d.author_idnat:
            author += f" ({d.author_idnat})"
        print(f"{d.id}  {d.date[:10]}  {d.mime}  {d.size} o  {d.title}  -- {author}")


@dataclass(frozen=True)
class ClientSettings:
    server: str
    ca_file: Path | None
    profile: CardProfile


def settings_for(args: argparse.Namespace, config: "Config | None") -> ClientSettings:
    """--server/--ca win; else the instance's web.listen and tls.trust_anchors when a relay.toml
    is given (--config or $MSSANTE_RELAY_CONFIG); else https://127.0.0.1:8443 and the system CAs."""
    server, ca, profile = "https://127.0.0.1:8443", None, CardProfile()
    if config is not None:
        profile = config.cps
        ca = config.trust_anchors
        if config.web is not None:
            host = config.web.listen.host
            host = "127.0.0.1" if host in ("", "0.0.0.0") else host
            server = f"https://[{host}]:{config.web.listen.port}" if ":" in host else \
                f"https://{host}:{config.web.listen.port}"
    return ClientSettings(server=args.server or server, ca_file=Path(args.ca) if args.ca else ca, profile=profile)


def run_pro_dossier(args: argparse.Namespace, settings: ClientSettings) -> int:
    try:
        ins = parse_ins(args.ins.strip()).value
    except InsError as e:
        sys.stderr.write(f"mssante-relay: error: {e}\n")
        return EXIT_USAGE
    if (args.get is None) != (args.output is None):
        sys.stderr.write("mssante-relay: error: --get DOC_ID et --output FILE vont ensemble "
                         "/ --get and --output go together\n")
        return EXIT_USAGE
    if args.emergency is not None and not args.emergency.strip():
        sys.stderr.write("mssante-relay: error: --emergency : motif vide / empty reason\n")
        return EXIT_USAGE
    try:
        api = ProApi(settings.server, settings.ca_file)
        session = login_with_card(api, args.reader, settings.profile)
        print(f"Connecte : {session.name} ({session.idnat})", file=sys.stderr)
        if args.consent:
            api.consent(session.token, ins)
        if args.emergency is not None:
            api.emergency(session.token, ins, args.emergency.strip())
            print("Acces en urgence ouvert pour une heure (le patient en est informe)", file=sys.stderr)
        if args.get is not None:
            output = Path(args.output)
            if output.exists():
                raise ProClientError(f"--output : {output} existe deja / already exists")
            content, mime = api.document(session.token, ins, args.get)
            _write_new(output, content)
            print(f"{output} : {len(content)} octets ({mime})")
        else:
            _print_documents(ins, api.documents(session.token, ins), args.json)
    except (CardError, ProClientError) as e:
        sys.stderr.write(f"mssante-relay: {e.message}\n")
        return EXIT_FAILURE
    return 0


def add_dossier_arguments(s: argparse.ArgumentParser) -> None:
    s.add_argument("ins", metavar="INS", help="the patient's INS (matricule)")
    s.add_argument("--reader", metavar="NAME", help="card reader (its name or a part of it; default: the first with a card)")
    s.add_argument("--server", metavar="URL", help="https://host:port of the relay (default: from web.listen)")
    s.add_argument("--ca", metavar="FILE", help="CA certificate of the server (default: tls.trust_anchors)")
    s.add_argument("--get", metavar="DOC_ID", help="download this document (with --output)")
    s.add_argument("--output", metavar="FILE", help="file to write the document to (must not exist)")
    s.add_argument("--emergency", metavar="REASON", help="emergency access for one hour, with its reason")
    s.add_argument("--consent", action="store_true", help="declare that the patient agreed to this access")
    s.add_argument("--json", action="store_true", help="the list as JSON")
