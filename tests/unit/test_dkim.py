"""certs/dkim.py: DKIM keys, signing and verification with a dict resolver (no DNS)."""
from __future__ import annotations

import base64
import re
import stat
from pathlib import Path

import dkim
import dns.exception
import dns.rdata
import dns.resolver
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from certs.dkim import (
    DkimError,
    DkimKey,
    DkimResult,
    auth_results,
    dns_record,
    generate_key,
    sign,
    txt_value,
    verify,
)

SELECTOR, DOMAIN = "mss2025", "patient.mssante.fr"
KEY_NAME = f"{SELECTOR}._domainkey.{DOMAIN}.".encode()

PDF = base64.encodebytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n" + bytes(range(256)) * 4 + b"%%EOF\n")
MESSAGE = (
    b"From: Patient Test <jeanne.dupont@patient.mssante.fr>\r\n"
    b"To: dr.martin@test-operator.mssante.fr\r\n"
    b"Subject: =?utf-8?q?R=C3=A9sultats_d=27analyse?=\r\n"
    b"Date: Tue, 14 Jan 2025 10:00:00 +0100\r\n"
    b"Message-ID: <reply-1@patient.mssante.fr>\r\n"
    b"In-Reply-To: <orig-1@test-operator.mssante.fr>\r\n"
    b"References: <orig-1@test-operator.mssante.fr>\r\n"
    b"X-MSS-INS: 1234567890123\r\n"
    b"Received: from somewhere by nowhere; Tue, 14 Jan 2025 10:00:01 +0100\r\n"
    b"MIME-Version: 1.0\r\n"
    b'Content-Type: multipart/mixed; boundary="b1"\r\n'
    b"\r\n"
    b"--b1\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Bonjour Docteur,  voici mes r\xc3\xa9sultats.   \r\n"
    b"\r\n"
    b"--b1\r\n"
    b'Content-Type: application/pdf; name="analyse.pdf"\r\n'
    b"Content-Transfer-Encoding: base64\r\n"
    b'Content-Disposition: attachment; filename="analyse.pdf"\r\n'
    b"\r\n" + PDF.replace(b"\n", b"\r\n") + b"--b1--\r\n"
)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> DkimKey:
    path = tmp_path_factory.mktemp("dkim") / "dkim.key"
    generate_key(path)
    return DkimKey.load(path, SELECTOR, DOMAIN)


@pytest.fixture(scope="module")
def records(key: DkimKey) -> dict[bytes, bytes]:
    return {KEY_NAME: txt_value(key)}


@pytest.fixture(scope="module")
def signed(key: DkimKey) -> bytes:
    return sign(MESSAGE, key) + MESSAGE


def one(results: list[DkimResult]) -> DkimResult:
    assert len(results) == 1, results
    return results[0]


def dkimpy_dns(records: dict[bytes, bytes]):  # dkimpy calls dnsfunc(name, timeout=…)
    return lambda name, timeout=5: records.get(name)


# --- signing and passing ------------------------------------------------------------------

def test_signed_crlf_multipart_passes(signed: bytes, records: dict[bytes, bytes]) -> None:
    assert b"\r\n" in signed and re.search(rb"[^\r]\n", signed) is None  # still pure CRLF
    r = one(verify(signed, records.get))
    assert (r.result, r.domain, r.selector) == ("pass", DOMAIN, SELECTOR)
    assert r.b is not None and len(r.b) == 8
    # "/" is a tspecial (RFC 2045): a header.b holding one is a quoted-string (RFC 8601 §2.2).
    b = f'"{r.b}"' if "/" in r.b else r.b
    assert auth_results([r]) == f"dkim=pass header.d={DOMAIN} header.s={SELECTOR} header.b={b}"


def test_dkimpy_itself_verifies_our_signature(signed: bytes, records: dict[bytes, bytes]) -> None:
    assert dkim.verify(signed, dnsfunc=dkimpy_dns(records)) is True


def test_lf_conversion_keeps_the_signature(signed: bytes, records: dict[bytes, bytes]) -> None:
    # A relay or an mbox export converting to LF changes no canonical byte.
    assert one(verify(signed.replace(b"\r\n", b"\n"), records.get)).result == "pass"


def test_lf_message_gets_an_lf_header(key: DkimKey, records: dict[bytes, bytes]) -> None:
    lf = MESSAGE.replace(b"\r\n", b"\n")
    header = sign(lf, key)
    assert b"\r" not in header and header.endswith(b"\n")
    assert one(verify(header + lf, records.get)).result == "pass"


def test_signed_fields_and_tags(signed: bytes, key: DkimKey) -> None:
    tags = dkim.util.parse_tag_value(re.sub(rb"\r\n", b"", signed.split(b"\r\n\r\n")[0].split(b"From:")[0]
                                            .removeprefix(b"DKIM-Signature:")))
    assert (tags[b"a"], tags[b"c"], tags[b"d"], tags[b"s"]) == (
        b"rsa-sha256", b"relaxed/relaxed", DOMAIN.encode(), SELECTOR.encode())
    h = re.split(rb"\s*:\s*", tags[b"h"])
    assert h.count(b"from") == 2  # RFC 6376 §8.15 over-signing
    assert {b"to", b"subject", b"date", b"message-id", b"in-reply-to", b"references", b"x-mss-ins",
            b"mime-version", b"content-type"} <= set(h)
    assert b"received" not in h and b"l" not in tags


def test_now_sets_t(key: DkimKey) -> None:
    assert b"t=1700000000;" in sign(MESSAGE, key, now=1_700_000_000)


@pytest.mark.parametrize("message", [
    b"To: a@b.fr\r\nSubject: x\r\n\r\nbody\r\n",
    b"From: a@b.fr\r\nFrom: c@d.fr\r\n\r\nbody\r\n",
    b" folded first line\r\nFrom: a@b.fr\r\n\r\nbody\r\n",  # dkimpy raises IndexError here
])
def test_sign_refuses_bad_from_or_headers(message: bytes, key: DkimKey) -> None:
    with pytest.raises(DkimError):
        sign(message, key)


# --- failures -----------------------------------------------------------------------------

def test_body_tampered_fails(signed: bytes, records: dict[bytes, bytes]) -> None:
    tampered = signed.replace(b"voici mes", b"voici vos")
    r = one(verify(tampered, records.get))
    assert (r.result, r.reason) == ("fail", "body hash mismatch")
    assert dkim.verify(tampered, dnsfunc=dkimpy_dns(records)) is False


def test_attachment_tampered_fails(signed: bytes, records: dict[bytes, bytes]) -> None:
    i = signed.index(b"JVBERi0")  # "%PDF-" in base64
    tampered = signed[:i] + b"JVBERi1" + signed[i + 7:]
    assert one(verify(tampered, records.get)).result == "fail"


def test_header_tampered_fails(signed: bytes, records: dict[bytes, bytes]) -> None:
    tampered = signed.replace(b"X-MSS-INS: 1234567890123", b"X-MSS-INS: 2234567890123")
    r = one(verify(tampered, records.get))
    assert (r.result, r.reason) == ("fail", "signature mismatch")


def test_relaxed_survives_refolding(signed: bytes, records: dict[bytes, bytes]) -> None:
    refolded = signed.replace(b"To: dr.martin", b"To:\r\n   dr.martin")
    assert one(verify(refolded, records.get)).result == "pass"


def test_second_from_added_after_signing_fails(signed: bytes, records: dict[bytes, bytes]) -> None:
    forged = signed.replace(b"Subject:", b"From: attacker@evil.example\r\nSubject:", 1)
    assert one(verify(forged, records.get)).result == "fail"
    assert dkim.verify(forged, dnsfunc=dkimpy_dns(records)) is False


def test_missing_key_is_permerror(signed: bytes) -> None:
    # RFC 6376 §6.1.2 step 3: no key record → PERMFAIL "no key for signature" (not
    # temperror: NXDOMAIN is an answer, retrying later is not expected to help).
    r = one(verify(signed, {}.get))
    assert (r.result, r.reason) == ("permerror", "no key for signature")


def test_dns_failure_is_temperror(signed: bytes) -> None:
    def broken(name: bytes) -> bytes | None:
        raise dns.exception.Timeout()
    assert one(verify(signed, broken)).result == "temperror"


def test_revoked_key_is_permerror(signed: bytes) -> None:
    r = one(verify(signed, {KEY_NAME: b"v=DKIM1; k=rsa; p="}.get))
    assert (r.result, r.reason) == ("permerror", "key revoked")


@pytest.mark.parametrize("record, reason", [
    (b"v=DKIM1; k=rsa; p=!!notbase64", "key record unusable"),
    (b"v=DKIM1; k=rsa; h=sha1; p=AAAA", "key does not allow sha256"),
    (b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=", "key type does not match a="),
    (b"garbage without equals", "key record syntax error"),
])
def test_unusable_key_records(signed: bytes, record: bytes, reason: str | None) -> None:
    r = one(verify(signed, {KEY_NAME: record}.get))
    assert r.result == "permerror"
    if reason:
        assert r.reason == reason


def test_ed25519_without_pynacl_is_neutral() -> None:
    # RFC 8463 signatures need PyNaCl in dkimpy; without it we cannot tell pass from fail.
    message = (b"DKIM-Signature: v=1; a=ed25519-sha256; d=example.fr; s=s; h=from; bh=AAAA; b=AAAA\r\n"
               + MESSAGE)
    record = b"v=DKIM1; k=ed25519; p=11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="
    r = one(verify(message, {b"s._domainkey.example.fr.": record}.get))
    try:
        import nacl  # noqa: F401
    except ImportError:
        assert (r.result, r.reason) == ("neutral", "ed25519 not supported here")
    else:
        assert r.result == "fail"


def test_key_for_another_service_is_permerror(signed: bytes, records: dict[bytes, bytes]) -> None:
    record = records[KEY_NAME].replace(b"k=rsa;", b"k=rsa; s=tlsrpt;")
    assert one(verify(signed, {KEY_NAME: record}.get)).reason == "key not for email"


@pytest.mark.parametrize("value", [
    b"garbage",
    b"v=1; a=rsa-sha256; d=; s=;",
    b"v=1; a=rsa-sha256; d=example.fr; s=s; i=example.fr; h=from; bh=AAAA; b=AAAA",  # IndexError in dkimpy
    b"v=1; a=rsa-sha256; d=example.fr; s=s; l=; h=from; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-sha256; d=example.fr; s=s; h=subject; bh=AAAA; b=AAAA",  # From not signed
    b"v=1; a=rsa-sha1; d=example.fr; s=s; h=from; bh=AAAA; b=AAAA",  # RFC 8301
    b"v=2; a=rsa-sha256; d=example.fr; s=s; h=from; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-sha256; c=odd/odd; d=example.fr; s=s; h=from; bh=AAAA; b=AAAA",
    b"v=1; a=rsa-sha256; d=example.fr; s=s; h=from; bh=AAAA; b=A; b=A",
])
def test_garbage_signature_is_permerror(value: bytes) -> None:
    message = b"DKIM-Signature: " + value + b"\r\n" + MESSAGE
    key = b"v=DKIM1; k=rsa; p=" + base64.b64encode(b"\x30" * 300)
    r = one(verify(message, {b"s._domainkey.example.fr.": key}.get))
    assert r.result == "permerror", r


def test_partly_signed_body_is_policy(key: DkimKey, records: dict[bytes, bytes]) -> None:
    # Signed by dkimpy with l= (RFC 6376 §8.2): content appended later is not covered.
    header = dkim.sign(MESSAGE, SELECTOR.encode(), DOMAIN.encode(), key.private_pem, length=True,
                       canonicalize=(b"relaxed", b"relaxed"))
    assert one(verify(header + MESSAGE, records.get)).result == "pass"
    r = one(verify(header + MESSAGE + b"Cliquez ici: https://evil.example/\r\n", records.get))
    assert (r.result, r.reason) == ("policy", "body only partly signed (l=)")


def test_unsigned_is_none() -> None:
    assert verify(MESSAGE, {}.get) == [DkimResult("none", None, None, None, "no signature")]
    assert auth_results(verify(MESSAGE, {}.get)).startswith("dkim=none")


def test_signatures_are_bounded(key: DkimKey, records: dict[bytes, bytes]) -> None:
    message = MESSAGE
    for _ in range(7):
        message = sign(message, key) + message
    asked: list[bytes] = []

    def counting(name: bytes) -> bytes | None:
        asked.append(name)
        return records.get(name)

    results = verify(message, counting, max_signatures=5)
    assert [r.result for r in results] == ["pass"] * 5 + ["policy"] * 2
    assert len(asked) == 5
    assert results[-1].domain == DOMAIN and "not evaluated" in results[-1].reason


def test_several_signatures_each_get_a_result(key: DkimKey, records: dict[bytes, bytes], tmp_path: Path) -> None:
    generate_key(tmp_path / "other.key")
    other = DkimKey.load(tmp_path / "other.key", "old", DOMAIN)
    message = sign(MESSAGE, other) + sign(MESSAGE, key) + MESSAGE  # "old" is not published
    results = verify(message, records.get)
    assert [(r.result, r.selector) for r in results] == [("permerror", "old"), ("pass", SELECTOR)]
    assert ";\r\n\tdkim=pass" in auth_results(results)


# --- default DNS resolver (dnspython), without the network ---------------------------------

class FakeResolver:
    error: Exception | None = None

    def resolve(self, qname: object, rdtype: str, **kw: object) -> list[object]:
        assert rdtype == "TXT" and kw.get("search") is False and kw.get("lifetime") == 2
        assert self.error is not None
        raise self.error


@pytest.mark.parametrize("error, result", [
    (dns.exception.Timeout(), "temperror"),
    (dns.resolver.NoNameservers(), "temperror"),  # SERVFAIL everywhere: dkimpy's helper says "no key"
    (dns.resolver.NXDOMAIN(), "permerror"),
    (dns.resolver.NoAnswer(), "permerror"),
])
def test_default_resolver_maps_dns_errors(signed: bytes, monkeypatch: pytest.MonkeyPatch,
                                          error: Exception, result: str) -> None:
    monkeypatch.setattr(FakeResolver, "error", error)
    monkeypatch.setattr(dns.resolver, "Resolver", FakeResolver)
    assert one(verify(signed, timeout=2)).result == result


# --- key files and DNS record ---------------------------------------------------------------

def test_dns_record_format(key: DkimKey) -> None:
    line = dns_record(key)
    assert line.startswith(f"{SELECTOR}._domainkey.{DOMAIN}. IN TXT ( \"v=DKIM1; k=rsa; p=")
    assert line.endswith(" )") and "\n" not in line
    strings = re.findall(r'"([^"]*)"', line)
    assert len(strings) == 2 and all(len(s) <= 255 for s in strings)
    assert "".join(strings).encode() == txt_value(key)
    # dnspython reads the zone syntax back to the same character-strings.
    rdata = dns.rdata.from_text("IN", "TXT", line.split(" IN TXT ", 1)[1])
    assert b"".join(rdata.strings) == txt_value(key)  # type: ignore[attr-defined]


def test_record_key_matches_private_key(key: DkimKey) -> None:
    p = dkim.util.parse_tag_value(txt_value(key))[b"p"]
    public = serialization.load_der_public_key(base64.b64decode(p))
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    assert public.public_numbers() == private.public_key().public_numbers()  # type: ignore[union-attr]


def test_key_file_is_private_and_recreated(tmp_path: Path) -> None:
    path = tmp_path / "dkim.key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    generate_key(path, bits=1024)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert DkimKey.load(path, "s", "example.fr").selector == "s"


def test_pkcs8_and_crlf_pem_load(tmp_path: Path, key: DkimKey, records: dict[bytes, bytes]) -> None:
    private = serialization.load_pem_private_key(key.private_pem, password=None)
    pkcs8 = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()).replace(b"\n", b"\r\n")
    (tmp_path / "k.pem").write_bytes(pkcs8)
    loaded = DkimKey.load(tmp_path / "k.pem", SELECTOR, DOMAIN)
    assert one(verify(sign(MESSAGE, loaded) + MESSAGE, records.get)).result == "pass"


def test_key_repr_hides_the_private_key(key: DkimKey) -> None:
    assert "PRIVATE" not in repr(key)


def test_unreadable_key_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.key"
    with pytest.raises(DkimError, match=re.escape(str(missing))):
        DkimKey.load(missing, SELECTOR, DOMAIN)
    garbage = tmp_path / "garbage.key"
    garbage.write_bytes(b"not a key")
    with pytest.raises(DkimError, match=re.escape(str(garbage))):
        DkimKey.load(garbage, SELECTOR, DOMAIN)
    ec_key = tmp_path / "ec.key"
    ec_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(DkimError, match=f"{re.escape(str(ec_key))}.*not an RSA key"):
        DkimKey.load(ec_key, SELECTOR, DOMAIN)


@pytest.mark.parametrize("selector, domain", [("a;b", DOMAIN), (SELECTOR, "x.fr; h=to"), ("", DOMAIN)])
def test_selector_and_domain_are_dns_names(selector: str, domain: str, key: DkimKey) -> None:
    with pytest.raises(DkimError):
        DkimKey(selector, domain, key.private_pem)


def test_small_keys_refused(tmp_path: Path) -> None:
    with pytest.raises(DkimError):
        generate_key(tmp_path / "k", bits=512)


# --- Authentication-Results -----------------------------------------------------------------

def test_auth_results_escapes_sender_values() -> None:
    hostile = DkimResult("fail", 'evil.fr dkim=pass', 'a"b\\c', "ab/cd+=", "signature mismatch")
    text = auth_results([hostile])
    assert text == ('dkim=fail reason="signature mismatch" header.d="evil.fr dkim=pass" '
                    'header.s="a\\"b\\\\c" header.b="ab/cd+="')
    injected = DkimResult("permerror", "x.fr\r\nX-Evil: 1", "s\x00", None, "r")
    assert auth_results([injected]) == 'dkim=permerror reason="r"'  # values a header cannot carry are dropped


def test_auth_results_rejects_unknown_result() -> None:
    with pytest.raises(ValueError):
        auth_results([DkimResult("maybe", None, None, None, "")])


# --- robustness -----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_verify_never_raises_on_bytes(data: bytes) -> None:
    results = verify(data, {}.get)
    assert results and all(r.result in {"none", "permerror", "fail", "policy"} for r in results)
    auth_results(results)


_TAG = st.sampled_from([b"v", b"a", b"c", b"d", b"s", b"h", b"bh", b"b", b"l", b"i", b"t", b"x", b"q", b"z"])
_VALUE = st.one_of(st.binary(max_size=40), st.sampled_from(
    [b"1", b"rsa-sha256", b"ed25519-sha256", b"relaxed/relaxed", b"example.fr", b"s", b"from:to", b"AAAA", b"",
     b"99999999999", b"@example.fr", b"dns/txt"]))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_TAG, _VALUE), max_size=12), st.binary(max_size=200))
def test_verify_never_raises_on_signature_fields(tags: list[tuple[bytes, bytes]], record: bytes) -> None:
    value = b"; ".join(t + b"=" + v for t, v in tags)
    message = b"DKIM-Signature: " + value + b"\r\n" + MESSAGE
    results = verify(message, {b"s._domainkey.example.fr.": record}.get)
    assert len(results) == 1 or results[0].result == "none"
    auth_results(results)
