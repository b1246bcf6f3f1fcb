"""The deployment under test, as the kit sees it: where it listens, who the kit
writes as, and clients (smtplib, imaplib) that record every line of the exchange."""
from __future__ import annotations

import datetime as dt
import http.cookiejar
import imaplib
import re
import secrets
import smtplib
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from policy.ins import ins_key, is_valid_ins

TIMEOUT = 60.0
_STATUS = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})\b")


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Target:
    mx: HostPort
    imap: HostPort | None  # implicit TLS
    submission: HostPort | None  # STARTTLS
    cert: str
    key: str
    ca: str
    sender: str
    patient: str  # INS
    password: str | None
    domain: str = "patient.mssante.fr"
    second_sender: str | None = None
    closed_patient: str | None = None
    web: str | None = None  # base URL of the patients' webmail, whose "Mon dossier" lists documents
    wait: float = 60.0  # seconds to wait for something that must arrive
    quiet_wait: float = 10.0  # seconds to wait for something that must not

    @property
    def patient_address(self) -> str:
        return f"{self.patient}@{self.domain}"

    def tagged(self, tag: str, base: str | None = None) -> str:
        """The sender with a subaddress (RFC 5233), one per scenario: the trust list
        knows domains, so the deployment accepts it, and every reply says which
        scenario it answers."""
        local, _, domain = (base or self.sender).rpartition("@")
        return f"{local}+{tag}@{domain}"


def token() -> str:
    return secrets.token_hex(5)


def random_ins() -> str:
    """A well-formed INS (key correct) that no one has: a NIA range number drawn at
    random, so that 550 5.1.1 is the only right answer."""
    # sex 7 (NIA), year, a real month (policy.ins refuses impossible ones), then 8 digits
    base = f"7{secrets.randbelow(100):02d}{1 + secrets.randbelow(12):02d}{secrets.randbelow(10**8):08d}"
    ins = f"{base}{ins_key(base):02d}"
    assert is_valid_ins(ins), "random_ins drew an INS policy.ins refuses"
    return ins


def wrong_key(ins: str) -> str:
    return f"{ins[:13]}{(int(ins[13:]) + 1) % 100:02d}"


class Log(list[str]):
    def sent(self, line: str) -> None:
        self.append(f"C: {line}")

    def got(self, code: int, text: str) -> None:
        self.append(f"S: {code} {text}")

    def note(self, line: str) -> None:
        self.append(f"   {line}")


@dataclass(frozen=True, slots=True)
class Reply:
    code: int
    text: str

    @property
    def status(self) -> str | None:
        m = _STATUS.match(self.text)
        return m.group(1) if m else None

    def is_(self, code: int, status: str) -> bool:
        return self.code == code and self.status == status

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


def client_context(target: Target, cert: tuple[str, str] | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=target.ca)
    if cert is not None:
        ctx.load_cert_chain(*cert)
    return ctx


class Smtp:
    """An SMTP client session that logs each command and reply."""

    def __init__(self, target: Target, log: Log, where: HostPort | None = None, helo: str = "conformance-kit.invalid"):
        self.target, self.log = target, log
        where = where or target.mx
        log.note(f"connect {where}")
        self.s = smtplib.SMTP(where.host, where.port, local_hostname=helo, timeout=TIMEOUT)
        self.ehlo()

    def ehlo(self) -> Reply:
        self.log.sent(f"EHLO {self.s.local_hostname}")
        code, text = self.s.ehlo()
        r = Reply(code, text.decode("utf-8", "replace").replace("\n", " | "))
        self.log.got(r.code, r.text)
        return r

    def starttls(self, cert: tuple[str, str] | None) -> None:
        self.log.sent("STARTTLS")
        self.s.starttls(context=client_context(self.target, cert))
        self.log.note(f"TLS established ({self.s.sock.version()}, client certificate: {'yes' if cert else 'none'})")
        self.ehlo()

    def login(self, user: str, password: str) -> Reply:
        self.log.sent(f"AUTH PLAIN {user} ****")
        try:
            code, text = self.s.login(user, password)
        except smtplib.SMTPAuthenticationError as e:
            code, text = e.smtp_code, e.smtp_error
        r = Reply(code, text.decode("utf-8", "replace"))
        self.log.got(r.code, r.text)
        return r

    def cmd(self, verb: str, arg: str = "") -> Reply:
        self.log.sent(f"{verb} {arg}".strip())
        code, text = self.s.docmd(verb, arg)
        r = Reply(code, text.decode("utf-8", "replace").replace("\n", " | "))
        self.log.got(r.code, r.text)
        return r

    def data(self, raw: bytes, dot_stuff: bool = True) -> Reply:
        r = self.cmd("DATA")
        if r.code != 354:
            return r
        payload = raw
        if dot_stuff:
            payload = re.sub(rb"(?m)^\.", b"..", raw)
            if not payload.endswith(b"\r\n"):
                payload += b"\r\n"
            payload += b".\r\n"
        self.log.sent(f"<{len(raw)} bytes of message>")
        self.s.send(payload)
        code, text = self.s.getreply()
        r = Reply(code, text.decode("utf-8", "replace").replace("\n", " | "))
        self.log.got(r.code, r.text)
        return r

    def close(self) -> None:
        try:
            self.s.quit()
        except (smtplib.SMTPException, OSError):
            self.s.close()

    def __enter__(self) -> Smtp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def professional(target: Target, log: Log, cert: tuple[str, str] | None = None) -> Smtp:
    s = Smtp(target, log, helo=f"kit.{target.sender.rpartition('@')[2]}")
    s.starttls(cert or (target.cert, target.key))
    return s


def send_as_professional(target: Target, log: Log, mail_from: str, raw: bytes,
                         rcpt: str | None = None) -> Reply:
    """MAIL, RCPT, DATA over STARTTLS with the kit's certificate; the first refusal."""
    with professional(target, log) as s:
        r = s.cmd("MAIL", f"FROM:<{mail_from}>")
        if r.code != 250:
            return r
        r = s.cmd("RCPT", f"TO:<{rcpt or target.patient_address}>")
        if r.code != 250:
            return r
        return s.data(raw)


def patient_submission(target: Target, log: Log) -> Smtp:
    assert target.submission is not None and target.password is not None
    s = Smtp(target, log, where=target.submission, helo="patient-laptop")
    s.starttls(None)
    r = s.login(target.patient_address, target.password)
    if r.code != 235:
        s.close()
        raise KitError(f"the patient's submission login was refused: {r}")
    return s


class KitError(Exception):
    """The kit could not run a scenario as set up (a login refused, a port closed)."""


class Imap:
    def __init__(self, target: Target, log: Log):
        assert target.imap is not None and target.password is not None
        self.log = log
        log.note(f"IMAP connect {target.imap} (implicit TLS)")
        self.c = imaplib.IMAP4_SSL(target.imap.host, target.imap.port,
                                   ssl_context=client_context(target, None), timeout=TIMEOUT)
        log.sent(f"LOGIN {target.patient_address} ****")
        try:
            typ, _ = self.c.login(target.patient_address, target.password)
        except imaplib.IMAP4.error as e:
            raise KitError(f"the patient's IMAP login was refused: {e}") from None
        log.note(f"{typ}")

    def search(self, folder: str, *criteria: str) -> list[bytes]:
        self.log.sent(f"SELECT {folder}")
        typ, _ = self.c.select(folder)
        if typ != "OK":
            raise KitError(f"SELECT {folder} refused")
        self.log.sent(f"UID SEARCH {' '.join(criteria)}")
        typ, data = self.c.uid("SEARCH", *criteria)
        uids = data[0].split() if typ == "OK" and data and data[0] else []
        self.log.note(f"{typ}: {len(uids)} message(s)")
        return uids

    def fetch(self, uid: bytes, item: str = "BODY.PEEK[]") -> bytes:
        self.log.sent(f"UID FETCH {uid.decode()} {item}")
        _, data = self.c.uid("FETCH", uid, f"({item})")
        for part in data or []:
            if isinstance(part, tuple):
                return part[1]
        raise KitError(f"UID FETCH {uid.decode()} returned nothing")

    def close(self) -> None:
        try:
            self.c.logout()
        except (imaplib.IMAP4.error, OSError):
            pass

    def __enter__(self) -> Imap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Webmail:
    """The patient's webmail, as a browser without JavaScript uses it: the login form
    (its CSRF token, double-submitted in a cookie), then pages. Only "Mon dossier" is read."""

    MAX_PAGE = 2 * 1024 * 1024

    def __init__(self, target: Target, log: Log):
        assert target.web is not None and target.password is not None
        self.base, self.log = target.web.rstrip("/"), log
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=client_context(target, None)),
            urllib.request.HTTPCookieProcessor(self.jar))
        page = self.get("/")
        m = re.search(r'name="csrf" value="([^"]+)"', page)
        if m is None:
            raise KitError("the webmail's login page has no csrf field")
        form = urllib.parse.urlencode({"csrf": m.group(1), "identifiant": target.patient_address,
                                       "mot_de_passe": target.password}).encode()
        log.sent(f"POST {self.base}/ identifiant={target.patient_address} mot_de_passe=****")
        try:
            with self.opener.open(urllib.request.Request(self.base + "/", form), timeout=TIMEOUT) as resp:
                log.note(f"{resp.status} {resp.url}")
        except urllib.error.HTTPError as e:
            raise KitError(f"the patient's webmail login was refused: HTTP {e.code}") from None

    def get(self, path: str) -> str:
        self.log.sent(f"GET {self.base}{path}")
        try:
            with self.opener.open(self.base + path, timeout=TIMEOUT) as resp:
                body = resp.read(self.MAX_PAGE)
                self.log.note(f"{resp.status} ({len(body)} bytes)")
        except urllib.error.HTTPError as e:
            raise KitError(f"GET {path}: HTTP {e.code}") from None
        return body.decode("utf-8", "replace")


def self_signed(folder: Path, cn: str = "untrusted.conformance-kit.invalid") -> tuple[str, str]:
    """A client certificate no trust anchor vouches for (the 'untrusted certificate' scenario)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    c, k = folder / "untrusted.pem", folder / "untrusted.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.touch(mode=0o600)
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return str(c), str(k)


def scratch_dir() -> tempfile.TemporaryDirectory[str]:
    return tempfile.TemporaryDirectory(prefix="mssante-conformance-")
