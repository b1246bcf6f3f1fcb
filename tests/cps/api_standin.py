"""A loopback HTTPS server that speaks the professional API's contract (issue 18 §3) for the
client tests on this branch, where the real API (relay/web, h/cpsapi) is not merged yet.

It checks what the client sends as the real server must: the nonce it issued (single use),
the certificate, and the RSASSA-PKCS1-v1_5 / SHA-256 signature over the nonce's ASCII bytes.
`refuse` makes one route answer a given refusal code, to check the client's French lines.
The end-to-end test against the daemon is tests/integration/test_pro_dossier_e2e.py."""
from __future__ import annotations

import base64
import json
import secrets
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from certs.pki import _name, cert_pem, issue, key_pem, make_ca, write_private

INS = "279035121518989"
DOC = b"%PDF-1.4\n% compte rendu de test\n%%EOF\n"


class StandIn:
    def __init__(self, root: Path):
        ca = make_ca("AC serveur TEST", "TEST")
        server = issue(ca, _name("localhost", "TEST"), ("localhost", "127.0.0.1"), server=True, client=False)
        root.mkdir(parents=True, exist_ok=True)
        self.ca_file = root / "server-ca.pem"
        self.ca_file.write_bytes(cert_pem(ca.cert))
        (root / "server.pem").write_bytes(cert_pem(server.cert))
        write_private(root / "server.key", key_pem(server.key))
        self.nonces: set[str] = set()
        self.tokens: dict[str, str] = {}
        self.refuse: dict[str, tuple[int, str]] = {}  # route name -> (status, code)
        self.verified_signatures = 0
        self.requests: list[tuple[str, str, dict]] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: object) -> None:
                pass

            def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _json(self, status: int, obj: object) -> None:
                self._send(status, json.dumps(obj).encode())

            def _handle(self, method: str) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n)) if n else {}
                standin.requests.append((method, self.path, body))
                route = standin.route(method, self.path)
                if route in standin.refuse:
                    status, code = standin.refuse[route]
                    return self._json(status, {"error": code})
                if route == "challenge":
                    nonce = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
                    standin.nonces.add(nonce)
                    return self._json(200, {"nonce": nonce, "expires_in": 120})
                if route == "session":
                    if body.get("nonce") not in standin.nonces:
                        return self._json(401, {"error": "unknown_nonce"})
                    standin.nonces.discard(body["nonce"])
                    cert = x509.load_pem_x509_certificate(body["certificate"].encode())
                    try:
                        cert.public_key().verify(base64.b64decode(body["signature"]), body["nonce"].encode("ascii"),
                                                 padding.PKCS1v15(), hashes.SHA256())
                    except InvalidSignature:
                        return self._json(401, {"error": "bad_signature"})
                    standin.verified_signatures += 1
                    idnat = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
                    token = secrets.token_urlsafe(16)
                    standin.tokens[token] = idnat
                    return self._json(200, {"token": token, "idnat": idnat, "name": "Jeanne Medecin"})
                if self.headers.get("Authorization", "").removeprefix("Bearer ") not in standin.tokens:
                    return self._json(401, {"error": "unauthenticated"})
                if route in ("access", "emergency"):
                    if route == "emergency" and not str(body.get("reason", "")).strip():
                        return self._json(400, {"error": "reason_required"})
                    return self._json(200, {})
                if route == "documents":
                    return self._json(200, {"documents": [
                        {"id": "d1", "title": "Compte rendu", "class": "11490-0",
                         "author": {"idnat": "810001234567", "name": "Jeanne Medecin"},
                         "date": "2026-11-23T10:00:00+00:00", "size": len(DOC), "mime": "application/pdf"}]})
                if route == "document":
                    if self.path.rsplit("/", 1)[1] != "d1":
                        return self._json(404, {"error": "unknown_document"})
                    return self._send(200, DOC, "application/pdf")
                return self._json(404, {"error": "not_found"})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(root / "server.pem", root / "server.key")
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @staticmethod
    def route(method: str, path: str) -> str:
        parts = path.strip("/").split("/")
        if parts == ["pro", "challenge"]:
            return "challenge"
        if parts == ["pro", "session"]:
            return "session"
        if len(parts) >= 4 and parts[:2] == ["pro", "patients"]:
            if parts[3] == "documents":
                return "documents" if len(parts) == 4 else "document"
            return parts[3]
        return "unknown"

    def __enter__(self) -> "StandIn":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
