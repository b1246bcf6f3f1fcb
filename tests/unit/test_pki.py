"""certs/pki.py through `mssante-relay init` (relay/ops/instance.py): the development PKI that
imitates IGC-Santé, the trust list and master key written beside it."""
from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

from certs.pki import load_ca, make_crl
from certs.trustlist import load_trust_list
from policy.trust import check_sender, normalize_dn
from relay.ops.instance import KEY_FILES, InstanceExists, init_instance


def cert(inst: Path, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((inst / "pki" / name).read_bytes())


def sans(c: x509.Certificate) -> set[str]:
    ext = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(ext.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}


def eku(c: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_ca_is_a_self_signed_ca(dev_instance: Path) -> None:
    ca = cert(dev_instance, "ca.pem")
    assert ca.subject == ca.issuer
    ca.verify_directly_issued_by(ca)
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign


def test_operator_chains_to_ca_with_both_usages(dev_instance: Path) -> None:
    ca, op = cert(dev_instance, "ca.pem"), cert(dev_instance, "operator.pem")
    op.verify_directly_issued_by(ca)
    assert op.issuer == ca.subject
    assert {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH} <= eku(op)
    assert sans(op) == {"mail.test-operator.mssante.fr", "localhost", "127.0.0.1"}
    ip_sans = op.extensions.get_extension_for_class(x509.SubjectAlternativeName).value \
        .get_values_for_type(x509.IPAddress)
    assert ip_sans == [ipaddress.ip_address("127.0.0.1")]  # an IP SAN, not a DNS name "127.0.0.1"
    assert not op.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_server_chains_to_ca_with_its_names(dev_instance: Path) -> None:
    ca, srv = cert(dev_instance, "ca.pem"), cert(dev_instance, "server.pem")
    srv.verify_directly_issued_by(ca)
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku(srv)
    assert sans(srv) == {"mx.patient.mssante.fr", "localhost", "127.0.0.1"}


def test_untrusted_not_issued_by_ca(dev_instance: Path) -> None:
    ca, bad = cert(dev_instance, "ca.pem"), cert(dev_instance, "untrusted.pem")
    with pytest.raises((ValueError, InvalidSignature)):
        bad.verify_directly_issued_by(ca)
    assert bad.issuer != ca.subject
    bad.verify_directly_issued_by(cert(dev_instance, "untrusted-ca.pem"))
    # same subject as the operator: only the chain tells them apart
    assert bad.subject == cert(dev_instance, "operator.pem").subject


def test_certificates_match_their_keys(dev_instance: Path) -> None:
    pem = serialization.Encoding.PEM
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    for stem in ("ca", "server", "operator", "untrusted"):
        key = serialization.load_pem_private_key((dev_instance / "pki" / f"{stem}.key").read_bytes(), None)
        c = cert(dev_instance, f"{stem}.pem")
        assert key.public_key().public_bytes(pem, spki) == c.public_key().public_bytes(pem, spki), stem


def test_key_files_are_0600(dev_instance: Path) -> None:
    for rel in KEY_FILES:
        mode = stat.S_IMODE((dev_instance / rel).stat().st_mode)
        assert mode == 0o600, (rel, oct(mode))
    assert stat.S_IMODE((dev_instance / "keys").stat().st_mode) & 0o077 == 0


def test_trust_list_names_the_operator_certificate(dev_instance: Path) -> None:
    subject = cert(dev_instance, "operator.pem").subject.rfc4514_string()
    loaded = load_trust_list(dev_instance / "trustlist.xml")
    assert loaded.warnings == ()
    assert loaded.trust.entries == 1
    assert dict(loaded.trust.domains) == {"test-operator.mssante.fr": frozenset({normalize_dn(subject)})}
    assert check_sender(loaded.trust, "test-operator.mssante.fr", subject) is None
    server_subject = cert(dev_instance, "server.pem").subject.rfc4514_string()
    assert check_sender(loaded.trust, "test-operator.mssante.fr", server_subject) is not None


def test_load_ca_and_crl(dev_instance: Path) -> None:
    ca = load_ca(dev_instance / "pki")
    op = cert(dev_instance, "operator.pem")
    crl = make_crl(ca, [op])
    assert crl.is_signature_valid(ca.cert.public_key())
    assert crl.get_revoked_certificate_by_serial_number(op.serial_number) is not None
    server_serial = cert(dev_instance, "server.pem").serial_number
    assert crl.get_revoked_certificate_by_serial_number(server_serial) is None


def test_init_again_without_force_refused_and_keeps_keys(tmp_path: Path) -> None:
    target = tmp_path / "inst"
    init_instance(target)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    with pytest.raises(InstanceExists, match="--force"):
        init_instance(target)
    after = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert after[target / "keys/master.key"] == before[target / "keys/master.key"]
    assert after == before  # nothing at all was rewritten


def test_init_force_replaces_keys_and_drops_the_store(tmp_path: Path) -> None:
    target = tmp_path / "inst"
    init_instance(target)
    old_key = (target / "keys/master.key").read_bytes()
    old_ca = (target / "pki/ca.pem").read_bytes()
    for suffix in ("", "-wal", "-shm"):
        (target / f"relay.db{suffix}").write_bytes(b"old store")
    init_instance(target, force=True)
    assert (target / "keys/master.key").read_bytes() != old_key
    assert (target / "pki/ca.pem").read_bytes() != old_ca
    assert not any((target / f"relay.db{s}").exists() for s in ("", "-wal", "-shm"))
    for rel in KEY_FILES:
        assert stat.S_IMODE((target / rel).stat().st_mode) == 0o600, rel


def test_init_force_writes_new_keys_0600_over_lax_files(tmp_path: Path) -> None:
    target = tmp_path / "inst"
    init_instance(target)
    (target / "pki/ca.key").chmod(0o644)
    init_instance(target, force=True)
    assert stat.S_IMODE((target / "pki/ca.key").stat().st_mode) == 0o600
