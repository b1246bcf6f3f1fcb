"""DKIM keys, signing and verification (RFC 6376), results for Authentication-Results (RFC 8601).

dkimpy does the canonicalisation and the RSA arithmetic; this module chooses what to sign,
publishes the key record and turns dkimpy's booleans and exceptions into RFC 8601 results.

Implementation notes (the traps, found by reading dkimpy 1.1.8):
- Verification is CPU-bound (pure-Python RSA, canonicalising the whole body once per
  signature) and DNS-bound, and synchronous: callers in asyncio run `verify` (and `sign`
  for big messages) in a thread, e.g. `await asyncio.to_thread(verify, raw)`.
- `dkim.DKIM.verify_sig` turns a missing key, an unparsable key *and* a DNS timeout into a
  plain `False`, i.e. the same answer as a forged signature. `_Verifier` overrides it the way
  dkimpy's own `asyncsupport` does, so that each case gets its own RFC 8601 result.
- dkimpy raises more than `DKIMException` on hostile input (IndexError for a header block
  starting with a space or for `i=` equal to `d=`, ValueError for an empty `l=`): `verify`
  catches every `Exception` around dkimpy and reports permerror. It never raises.
- dkimpy's DNS helper reports SERVFAIL as "no record" (a permanent result); ours lets it
  raise so that it becomes temperror (RFC 6376 §6.1.2 TEMPFAIL).
- dkimpy does not check on verification that `h=` names From (RFC 6376 §6.1.1), nor the key
  record's `h=` (§3.6.1), and accepts rsa-sha1 (forbidden by RFC 8301 §3.1): checked here.
- `dkim.DKIM.sign` stamps `t=` from `time.time()` with no way to pass a time, so `sign`
  builds the tag list itself and calls `DKIM.gen_header`, the method `DKIM.sign` uses to
  hash and sign the headers.
- dkimpy accepts CRLF or LF messages (it splits lines on `\\r?\\n` and rebuilds the body
  with CRLF, as on the wire), so a signature made over our CRLF store verifies after an LF
  conversion and back. The header `sign` returns uses the message's own line ending.

Results (RFC 8601 §2.7.1), one per DKIM-Signature:
- pass: body hash and signature verify with an acceptable key.
- fail: body hash or signature mismatch (RFC 6376 §6.1.3).
- permerror: unusable DKIM-Signature (§6.1.1), no key record (§6.1.2 says PERMFAIL "no key
  for signature", even though a just-published key may not have propagated yet), revoked
  key (`p=` empty, §3.6.1), key record unusable (syntax, `k=`/`a=` mismatch, `s=` not email,
  `h=` excluding the hash, RSA under 1024 bits: RFC 8301 §3.2), rsa-sha1 (RFC 8301 §3.1).
- temperror: the resolver raised (timeout, SERVFAIL, no resolver configured).
- neutral: an ed25519-sha256 signature (RFC 8463) while PyNaCl is not installed: the
  signature may be fine, we cannot process it.
- policy: the signature does not cover the whole body (`l=`, RFC 6376 §8.2: the rest could
  be anything), or it is beyond `max_signatures` and was not evaluated (RFC 6376 §6.1 lets
  a verifier limit the signatures it tries; "policy" is RFC 8601's word for a signature
  this ADMD does not accept, which reads right for one it refused to look at).
- none: no DKIM-Signature at all.
"""
from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dkim
import dkim.crypto
import dns.exception
import dns.name
import dns.resolver
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from dkim.canonicalization import CanonicalizationPolicy
from dkim.util import parse_tag_value

from certs.pki import write_private

__all__ = ["DkimError", "DkimKey", "DkimResult", "Resolver", "auth_results", "dns_record",
           "dns_resolver", "generate_key", "sign", "txt_value", "verify"]

Resolver = Callable[[bytes], bytes | None]
"""`resolver(b"sel._domainkey.example.fr.")` returns the TXT record (its strings joined) or
None when there is none; it raises when DNS cannot answer now (becomes temperror)."""

# RFC 8301 §3.2: signers MUST use at least 1024 bits and SHOULD use 2048; verifiers MUST NOT
# accept smaller RSA keys.
MIN_RSA_BITS = 1024

# Header fields whose change would change what the patient or professional reads or replies
# to (RFC 6376 §5.4.1 lists the same kind). Reply-To and Sender are there because a Reply-To
# added in transit would divert the reply. Absent fields are not signed (not "over-signed"):
# relays and lists may legitimately add some of them.
SIGNED_FIELDS = frozenset({
    b"from", b"sender", b"reply-to", b"to", b"cc", b"subject", b"date", b"message-id",
    b"in-reply-to", b"references", b"mime-version", b"content-type",
    b"content-transfer-encoding", b"auto-submitted", b"disposition-notification-to",
})
MSS_PREFIX = b"x-mss-"  # MSSanté fields (X-MSS-CODECDA, X-MSS-INS, X-MSS-NIL…): all signed

RESULTS = frozenset({"pass", "fail", "neutral", "policy", "temperror", "permerror", "none"})

# RFC 6376 §3.1 (selector) and §3.5 (d=): dot-separated LDH labels, i.e. A-labels for IDNs.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_B64 = re.compile(rb"[A-Za-z0-9+/]+=*")


class DkimError(ValueError):
    """A key or a message we cannot sign with or for; the text names the file or the rule."""


@dataclass(frozen=True, slots=True)
class DkimKey:
    selector: str
    domain: str
    private_pem: bytes = field(repr=False)  # traditional PKCS#1 PEM, LF line ends (see load)

    def __post_init__(self) -> None:
        # Both end up in the DKIM-Signature header and a DNS name: no ";", "=", spaces…
        for what, value in (("selector", self.selector), ("domain", self.domain)):
            if len(value) > 253 or not _DNS_NAME.fullmatch(value):
                raise DkimError(f"DKIM {what} {value!r} is not a DNS name (RFC 6376 §3.1)")

    @classmethod
    def load(cls, path: Path, selector: str, domain: str) -> DkimKey:
        """Read an unencrypted RSA private key (PKCS#1 or PKCS#8 PEM) of at least 1024 bits."""
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise DkimError(f"cannot read DKIM key {path}: {e.strerror or e}") from e
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise DkimError(f"DKIM key {path} is not an unencrypted PEM private key: {e}") from e
        if not isinstance(key, rsa.RSAPrivateKey):
            raise DkimError(f"DKIM key {path} is not an RSA key (rsa-sha256 needs one)")
        if key.key_size < MIN_RSA_BITS:
            raise DkimError(f"DKIM key {path} has {key.key_size} bits, under {MIN_RSA_BITS} (RFC 8301 §3.2)")
        # Re-encoded because dkimpy's PEM reader only finds a key between "--\n" and "\n--":
        # a CRLF file (edited on Windows) would not parse at signing time, after loading fine.
        return cls(selector, domain, _pkcs1_pem(key))


@dataclass(frozen=True, slots=True)
class DkimResult:
    result: str            # one of RESULTS
    domain: str | None     # d= as written by the signer: sender-controlled
    selector: str | None   # s=, sender-controlled
    b: str | None          # first 8 characters of b= (RFC 6008 header.b), sender-controlled
    reason: str            # our own words, never text from the message


def _pkcs1_pem(key: rsa.RSAPrivateKey) -> bytes:
    # Traditional "BEGIN RSA PRIVATE KEY": what dkimpy documents and every version reads
    # (PKCS#8 only since 1.1.x), and what opendkim-genkey writes.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def generate_key(path: Path, bits: int = 2048) -> None:
    """Write a new RSA key to `path`, 0600 from its creation (an old file is replaced)."""
    if bits < MIN_RSA_BITS:
        raise DkimError(f"DKIM keys need at least {MIN_RSA_BITS} bits (RFC 8301 §3.2), not {bits}")
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    write_private(Path(path), _pkcs1_pem(key))


def txt_value(key: DkimKey) -> bytes:
    """The key record as a resolver returns it: `v=DKIM1; k=rsa; p=<SubjectPublicKeyInfo>`."""
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    # RFC 6376 §3.6.1 p=: base64 of the DER SubjectPublicKeyInfo (what every signer publishes).
    spki = private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    return b"v=DKIM1; k=rsa; p=" + base64.b64encode(spki)


def dns_record(key: DkimKey) -> str:
    """The zone-file line to publish, e.g. `sel._domainkey.example.fr. IN TXT ( "v=DKIM1; …" "…" )`.

    A TXT character-string holds at most 255 octets (RFC 1035 §3.3.14); a 2048-bit key does
    not fit in one, so the value is cut into several strings, which DKIM verifiers join with
    nothing in between (RFC 6376 §3.6.2.2)."""
    value = txt_value(key).decode("ascii")
    strings = " ".join(f'"{value[i:i + 255]}"' for i in range(0, len(value), 255))
    return f"{key.selector}._domainkey.{key.domain}. IN TXT ( {strings} )"


def _line_ending(message: bytes) -> bytes:
    return b"\r\n" if b"\r\n" in message or b"\n" not in message else b"\n"


def sign(message: bytes, key: DkimKey, now: int | None = None) -> bytes:
    """The `DKIM-Signature: …` header (ending with the message's line ending) to prepend.

    rsa-sha256, relaxed/relaxed (survives the re-folding and trailing-space changes relays
    make). From is listed once more than it occurs (RFC 6376 §8.15, "over-signing"), so a
    second From added later breaks the signature. No `l=` (RFC 6376 §8.2) and no `x=`."""
    try:
        signer = dkim.DKIM(message, signature_algorithm=b"rsa-sha256", linesep=_line_ending(message))
        private = dkim.crypto.parse_pem_private_key(key.private_pem)
    except Exception as e:  # dkimpy raises IndexError as well as DKIMException on odd headers
        raise DkimError(f"cannot DKIM-sign: {e}") from e
    names = [name.lower() for name, _ in signer.headers]
    if names.count(b"from") != 1:
        # RFC 5322 §3.6 wants exactly one From; signing two would bless the one a DMARC
        # check does not look at.
        raise DkimError(f"cannot DKIM-sign a message with {names.count(b'from')} From fields (RFC 5322 §3.6)")
    include = [n for n in names if n in SIGNED_FIELDS or n.startswith(MSS_PREFIX)] + [b"from"]
    canon = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    body_hash = base64.b64encode(hashlib.sha256(canon.canonicalize_body(signer.body)).digest())
    fields = [
        (b"v", b"1"), (b"a", b"rsa-sha256"), (b"c", b"relaxed/relaxed"),
        (b"d", key.domain.encode("ascii")), (b"s", key.selector.encode("ascii")),
        (b"t", str(int(time.time()) if now is None else now).encode("ascii")),
        # " : " as DKIM.sign does: dkimpy folds at spaces only, and with none in h= it cuts
        # a field name in two ("mime\r\n -version"), which breaks the signature.
        (b"h", b" : ".join(include)), (b"bh", body_hash),
        # Placeholder as in DKIM.sign: pushes b= onto its own folded line, so that filling
        # it in does not re-fold the tags hashed before it.
        (b"b", b"0" * 60),
    ]
    signer.hasher = hashlib.sha256  # gen_header hashes with it; DKIM.sign sets it the same way
    try:
        value: bytes = signer.gen_header(fields, tuple(include), canon, b"DKIM-Signature", private)
    except Exception as e:
        raise DkimError(f"cannot DKIM-sign: {e}") from e
    return b"DKIM-Signature: " + value


def dns_resolver(timeout: float = 5.0) -> Resolver:
    """A `Resolver` over dnspython and the system's resolv.conf, each lookup bounded by `timeout`.

    NXDOMAIN and "no TXT record" give None (permerror); timeouts, SERVFAIL and a missing
    resolver configuration raise (temperror). The dnspython resolver is made at the first
    lookup, so an unconfigured host fails there, inside `verify`, not here."""
    made: list[dns.resolver.Resolver] = []

    def lookup(name: bytes) -> bytes | None:
        try:
            qname = dns.name.from_text(name.decode("ascii"))
        except (UnicodeError, dns.exception.DNSException):
            return None  # a name DNS cannot carry has no record: permanent, not a DNS failure
        if not made:
            made.append(dns.resolver.Resolver())
        try:
            answer = made[0].resolve(qname, "TXT", search=False, lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        # RFC 6376 §3.6.2.2: several records at one selector give undefined results; we take
        # the first, as dkimpy does.
        for rdata in answer:
            return b"".join(rdata.strings)
        return None

    return lookup


class _Outcome(Exception):
    """How a signature ended, when it is not a plain pass/fail from dkimpy."""

    def __init__(self, result: str, reason: str) -> None:
        super().__init__(reason)
        self.result, self.reason = result, reason


class _Verifier(dkim.DKIM):  # type: ignore[misc,unused-ignore]  # dkimpy is untyped (Any)
    """dkim.DKIM whose key lookup reports each failure distinctly (see the module notes)."""

    def __init__(self, message: bytes, lookup: Resolver) -> None:
        super().__init__(message, minkey=MIN_RSA_BITS)
        self._lookup = lookup

    # Called by DKIM.verify(idx) once the DKIM-Signature tags are parsed and validated.
    def verify_sig(self, sig: dict[bytes, bytes], include_headers: list[bytes],
                   sig_header: tuple[bytes, bytes], dnsfunc: Any) -> bool:
        if b"from" not in include_headers:
            raise _Outcome("permerror", "From not signed")  # RFC 6376 §6.1.1
        algorithm, _, digest = sig[b"a"].partition(b"-")
        if digest != b"sha256":
            raise _Outcome("permerror", "sha1 not accepted")  # RFC 8301 §3.1
        name = sig[b"s"] + b"._domainkey." + sig[b"d"] + b"."
        try:
            record = self._lookup(name)
        except Exception as e:
            raise _Outcome("temperror", "key lookup failed") from e  # RFC 6376 §6.1.2
        if record is None:
            raise _Outcome("permerror", "no key for signature")  # RFC 6376 §6.1.2 step 3
        try:
            tags = parse_tag_value(record)
        except Exception as e:
            raise _Outcome("permerror", "key record syntax error") from e
        if tags.get(b"p") == b"":
            raise _Outcome("permerror", "key revoked")  # RFC 6376 §3.6.1 p=
        if b"h" in tags and digest not in re.split(rb"\s*:\s*", tags[b"h"].lower()):
            raise _Outcome("permerror", "key does not allow sha256")  # RFC 6376 §3.6.1 h=
        if tags.get(b"k", b"rsa") != algorithm:
            raise _Outcome("permerror", "key type does not match a=")  # RFC 6376 §3.6.1 k=
        try:
            pk, keysize, ktag, for_tlsrpt = dkim.evaluate_pk(name, record)
        except dkim.NaClNotFoundError as e:
            raise _Outcome("neutral", "ed25519 not supported here") from e
        except Exception as e:
            raise _Outcome("permerror", "key record unusable") from e
        if pk is None or for_tlsrpt:
            # evaluate_pk swallows its own "unknown s=" error and returns pk=None.
            raise _Outcome("permerror", "key not for email")  # RFC 6376 §3.6.1 s=
        if ktag == b"rsa" and keysize < MIN_RSA_BITS:
            raise _Outcome("permerror", "key too short")  # RFC 8301 §3.2
        self.pk, self.keysize, self.ktag, self.seqtlsrpt = pk, keysize, ktag, for_tlsrpt
        try:
            ok = self.verify_sig_process(sig, include_headers, sig_header, dnsfunc)
        except dkim.ValidationError as e:
            # The tlsrpt checks, the other ValidationError raised there, cannot fire: the key
            # is for email (checked above) and the message is not a TLS report.
            raise _Outcome("fail", "body hash mismatch") from e
        except Exception as e:  # bad c=, bh= not base64…
            raise _Outcome("permerror", "signature unusable") from e
        if not ok:
            return False
        if b"l" in sig:
            canon = CanonicalizationPolicy.from_c_value(sig.get(b"c", b"simple/simple"))
            if int(sig[b"l"]) < len(canon.canonicalize_body(self.body)):
                raise _Outcome("policy", "body only partly signed (l=)")  # RFC 6376 §8.2
        return True


def _tag_text(tags: dict[bytes, bytes], tag: bytes) -> str | None:
    value = tags.get(tag)
    return None if value is None else value.decode("utf-8", "replace")


def _identity(raw: bytes) -> tuple[str | None, str | None, str | None]:
    """d=, s= and the header.b prefix of a DKIM-Signature, as far as they can be read."""
    try:
        tags = parse_tag_value(re.sub(rb"\r?\n", b"", raw))
    except Exception:
        return None, None, None
    b = re.sub(rb"\s+", b"", tags.get(b"b", b""))[:8]
    return (_tag_text(tags, b"d"), _tag_text(tags, b"s"),
            b.decode("ascii") if b and _B64.fullmatch(b) else None)


def _signature_field_present(message: bytes) -> bool:
    head = re.split(rb"\r?\n\r?\n", message, maxsplit=1)[0]
    return re.search(rb"(?im)^dkim-signature[ \t]*:", head) is not None


def verify(message: bytes, resolver: Resolver | None = None, max_signatures: int = 5,
           timeout: float = 5.0) -> list[DkimResult]:
    """One result per DKIM-Signature, top first; `[DkimResult("none", …)]` when unsigned.

    Never raises. `resolver` answers key lookups (tests pass a dict's `get`); None means DNS
    through `dns_resolver(timeout)`, so a whole call may last about max_signatures × timeout.
    Signatures past `max_signatures` are reported as "policy" without being evaluated.
    Blocking and CPU-heavy: from asyncio, run it in a thread (asyncio.to_thread)."""
    lookup = resolver if resolver is not None else dns_resolver(timeout)
    try:
        verifier = _Verifier(message, lookup)
    except Exception:
        if _signature_field_present(message):
            return [DkimResult("permerror", None, None, None, "message header unparsable")]
        return [DkimResult("none", None, None, None, "no signature")]
    signatures = [value for name, value in verifier.headers if name.lower() == b"dkim-signature"]
    if not signatures:
        return [DkimResult("none", None, None, None, "no signature")]
    results = []
    for idx, raw in enumerate(signatures):
        domain, selector, b = _identity(raw)
        if idx >= max(max_signatures, 0):
            results.append(DkimResult("policy", domain, selector, b,
                                      f"not evaluated: more than {max_signatures} signatures"))
            continue
        try:
            ok = verifier.verify(idx=idx, dnsfunc=None)
            result, reason = ("pass", "") if ok else ("fail", "signature mismatch")
        except _Outcome as o:
            result, reason = o.result, o.reason
        except Exception:  # DKIMException from tag parsing and validation, and worse
            result, reason = "permerror", "malformed DKIM-Signature"  # RFC 6376 §6.1.1
        results.append(DkimResult(result, domain, selector, b, reason))
    return results


# RFC 2045 §5.1 token: printable US-ASCII except tspecials.
_TOKEN = re.compile(r'[!#$%&\'*+\-.0-9A-Z^_`a-z{|}~]+')
_PRINTABLE = re.compile(r"[\x20-\x7e]*")


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pvalue(value: str) -> str | None:
    """RFC 8601 §2.2 value: a token as is, else a quoted-string; None (omit) for values a
    quoted-string cannot carry (CR, LF, controls, non-ASCII), all sender-controlled here."""
    if _TOKEN.fullmatch(value):
        return value
    if _PRINTABLE.fullmatch(value):
        return _quoted(value)
    return None


def auth_results(results: list[DkimResult]) -> str:
    """The resinfo parts for an Authentication-Results field (RFC 8601 §2.2), joined by
    `;\\r\\n\\t`, e.g. `dkim=pass header.d=example.fr header.s=sel1 header.b=AbCdEfGh`.
    The caller writes `Authentication-Results: <authserv-id>;\\r\\n\\t` before it."""
    parts = []
    for r in results:
        if r.result not in RESULTS:
            raise ValueError(f"not an RFC 8601 DKIM result: {r.result!r}")
        text = f"dkim={r.result}"
        if r.reason and r.result != "pass" and _PRINTABLE.fullmatch(r.reason):
            text += f" reason={_quoted(r.reason)}"  # always quoted: reasons hold spaces
        for prop, value in (("header.d", r.domain), ("header.s", r.selector), ("header.b", r.b)):
            pv = None if value is None else _pvalue(value)
            if pv:
                text += f" {prop}={pv}"
        parts.append(text)
    return ";\r\n\t".join(parts)
