"""certs/professional.py (a CPS card certificate: identity, chain, validity, CRL, key
usage, challenge signature), relay/pro/notice.py (the patient's INBOX message) and the
[pro] configuration keys (issue 18 §2, §4)."""
from __future__ import annotations

import datetime as dt
import email
import email.policy
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certs.pki import Issued, cert_pem, load_ca, make_ca, make_crl
from certs.professional import (ProfessionalRefused, cps_subject, issue_cps, load_crls, sign_challenge,
                                verify_certificate, verify_signature)
from relay.core.config import ConfigError, load_config
from relay.pro.notice import build_pro_notice

RPPS = "10009876543"


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("AC TEST Racine", "IGC-Sante TEST")


def intermediate(root: Issued) -> Issued:
    """An intermediate CA under root, as IGC-Santé puts its CPS CAs under its root."""
    key = make_ca("tmp", "tmp").key
    now = dt.datetime.now(dt.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "AC TEST Personnes")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(root.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(root.key, hashes.SHA256()))
    return Issued(cert, key)


def refused(pem: bytes, anchors: list[x509.Certificate], crls: list = []) -> str:  # noqa: B006
    with pytest.raises(ProfessionalRefused) as e:
        verify_certificate(pem, anchors, crls)
    return e.value.code


def test_identity_from_a_cps_certificate(ca: Issued) -> None:
    card = issue_cps(ca, RPPS, "Jeanne", "Durand")
    cert, who = verify_certificate(cert_pem(card.cert), [ca.cert], [])
    assert cert == card.cert
    assert (who.idnat, who.name) == ("8" + RPPS, "Jeanne Durand")


def test_chain_through_an_intermediate_sent_with_the_leaf(ca: Issued) -> None:
    sub = intermediate(ca)
    card = issue_cps(sub, RPPS, "Jeanne", "Durand")
    assert refused(cert_pem(card.cert), [ca.cert]) == "untrusted_certificate"  # the link is missing
    _, who = verify_certificate(cert_pem(card.cert) + cert_pem(sub.cert), [ca.cert], [])
    assert who.idnat == "8" + RPPS
    # an intermediate that is not a CA cannot be a link
    leaf_as_ca = issue_cps(ca, "10000000001", "Faux", "Relais")
    forged = issue_cps(leaf_as_ca, RPPS, "Jeanne", "Durand")
    assert refused(cert_pem(forged.cert) + cert_pem(leaf_as_ca.cert), [ca.cert]) == "untrusted_certificate"


def test_a_name_alike_ca_with_another_key_is_not_trusted(ca: Issued) -> None:
    twin = make_ca("AC TEST Racine", "IGC-Sante TEST")  # same subject, other key
    card = issue_cps(twin, RPPS, "Jeanne", "Durand")
    assert refused(cert_pem(card.cert), [ca.cert]) == "untrusted_certificate"
    assert refused(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", [ca.cert]) == \
        "untrusted_certificate"


def test_validity_revocation_usage_and_identity(ca: Issued, tmp_path: Path) -> None:
    future = issue_cps(ca, RPPS, "Jeanne", "Durand", not_before=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))
    assert refused(cert_pem(future.cert), [ca.cert]) == "expired_certificate"
    card = issue_cps(ca, RPPS, "Jeanne", "Durand")
    # a CRL is believed only when its issuer signed it
    other = make_ca("AC TEST Racine", "IGC-Sante TEST")
    forged_crl = make_crl(Issued(ca.cert, other.key), [card.cert])
    assert verify_certificate(cert_pem(card.cert), [ca.cert], [forged_crl])[1].idnat == "8" + RPPS
    crl_file = tmp_path / "crls.pem"
    crl_file.write_bytes(make_crl(ca, []).public_bytes(serialization.Encoding.PEM)
                         + make_crl(ca, [card.cert]).public_bytes(serialization.Encoding.PEM))
    der = tmp_path / "crl.der"
    der.write_bytes(make_crl(ca, [card.cert]).public_bytes(serialization.Encoding.DER))
    assert len(load_crls([crl_file, der])) == 3
    assert refused(cert_pem(card.cert), [ca.cert], load_crls([crl_file])) == "revoked_certificate"
    assert refused(cert_pem(card.cert), [ca.cert], load_crls([der])) == "revoked_certificate"
    no_sign = issue_cps(ca, RPPS, "Jeanne", "Durand", digital_signature=False)
    assert refused(cert_pem(no_sign.cert), [ca.cert]) == "untrusted_certificate"
    for cn in ("Jeanne Durand", RPPS, "0" + RPPS, "8" + RPPS + "0"):  # a bare RPPS is not an IdNat_PS either
        subject = x509.Name([a for a in cps_subject(RPPS, "Jeanne", "Durand") if a.oid != NameOID.COMMON_NAME]
                            + [x509.NameAttribute(NameOID.COMMON_NAME, cn)])
        odd = issue_cps(ca, RPPS, "Jeanne", "Durand", subject=subject)
        assert refused(cert_pem(odd.cert), [ca.cert]) == "not_a_professional"


def test_the_challenge_signature(ca: Issued) -> None:
    card = issue_cps(ca, RPPS, "Jeanne", "Durand")
    verify_signature(card.cert, b"nonce-1", sign_challenge(card.key, "nonce-1"))
    for message, signature in ((b"nonce-2", sign_challenge(card.key, "nonce-1")), (b"nonce-1", b""),
                               (b"nonce-1", b"\x00" * 256)):
        with pytest.raises(ProfessionalRefused) as e:
            verify_signature(card.cert, message, signature)
        assert e.value.code == "bad_signature"
    # an EC card key verifies with ECDSA/SHA-256
    ec_key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(cps_subject(RPPS, "A", "B")).issuer_name(ca.cert.subject)
            .public_key(ec_key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + dt.timedelta(days=1)).sign(ca.key, hashes.SHA256()))
    verify_signature(cert, b"n", ec_key.sign(b"n", ec.ECDSA(hashes.SHA256())))


def test_dev_ca_issues_cps_certificates(dev_instance: Path) -> None:
    ca = load_ca(dev_instance / "pki")
    card = issue_cps(ca, RPPS, "Jeanne", "Durand")
    cfg = load_config(dev_instance / "relay.toml")
    anchors = x509.load_pem_x509_certificates(cfg.pro_trust_anchors.read_bytes())  # type: ignore[union-attr]
    assert verify_certificate(cert_pem(card.cert), anchors, [])[1].name == "Jeanne Durand"


def test_pro_config_defaults_to_tls_and_may_differ(dev_instance: Path, tmp_path: Path) -> None:
    text = (dev_instance / "relay.toml").read_text()
    cfg = load_config(dev_instance / "relay.toml")
    assert cfg.pro_trust_anchors == cfg.trust_anchors and cfg.pro_crls == cfg.crls == ()
    own = tmp_path / "relay.toml"
    own.write_text(text.replace('trust_anchors = ""\n', 'trust_anchors = "pki/cps-ca.pem"\ncrls = ["pki/cps.crl"]\n'))
    cfg = load_config(own)
    assert cfg.pro_trust_anchors == tmp_path / "pki/cps-ca.pem" and cfg.pro_crls == (tmp_path / "pki/cps.crl",)
    own.write_text(text.replace('trust_anchors = ""\n', 'trust_anchors = ""\ncrls = [1]\n'))
    with pytest.raises(ConfigError, match=r"pro\.crls\[0\]"):
        load_config(own)
    own.write_text(text.replace('trust_anchors = ""\n', "trust_anchors = 3\n"))
    with pytest.raises(ConfigError, match=r"pro\.trust_anchors"):
        load_config(own)


def test_the_patient_notice() -> None:
    raw = build_pro_notice(from_addr="ne-pas-repondre@patient.mssante.fr", to="279035121518989@patient.mssante.fr",
                           hostname="mx.patient.mssante.fr", idnat="8" + RPPS, name="Jeanne\r\nBcc: x@y Durand",
                           emergency=True, reason="Malaise\r\nX-Injected: 1",
                           now=dt.datetime(2026, 12, 5, 17, 0, tzinfo=dt.timezone.utc))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None and msg["X-Injected"] is None
    assert msg["Auto-Submitted"] == "auto-generated" and "urgence" in msg["Subject"].lower()
    text = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "05/12/2026 à 18:00" in text and RPPS in text and "Malaise X-Injected: 1" in text
    first = email.message_from_bytes(build_pro_notice(
        from_addr="ne-pas-repondre@patient.mssante.fr", to="279035121518989@patient.mssante.fr",
        hostname="mx.patient.mssante.fr", idnat="8" + RPPS, name="Jeanne Durand", emergency=False),
        policy=email.policy.default)
    assert "urgence" not in first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
