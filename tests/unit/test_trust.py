"""policy/trust.py: DN normalisation and the trust-list rule for MAIL FROM (DESIGN.md §4
"Who may send in")."""
from __future__ import annotations

import pytest

from policy.decisions import SENDER_NOT_TRUSTED, Decision
from policy.trust import TrustList, check_sender, normalize_dn

DN_A = "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"
DN_B = "CN=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rhône (13),C=FR"
DN_C = "CN=smtp-1.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR"


# --- normalize_dn ------------------------------------------------------------------------

def test_normalize_dn_shape() -> None:
    assert normalize_dn("CN=mx.example.fr,O=Example,C=FR") == (
        ("CN", "mx.example.fr"), ("O", "example"), ("C", "fr"))


@pytest.mark.parametrize("variant", [
    "cn=MEDIMAIL-ASIP.MIPIH.FR,ou=318310021300028,o=gip mipih,st=haute-garonne (31),c=fr",
    "CN = medimail-asip.mipih.fr , OU = 318310021300028 , O = GIP MIPIH , ST = Haute-Garonne (31) , C = FR",
    "  CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP  MIPIH,ST=Haute-Garonne (31),C=FR  ",
    "Cn=Medimail-Asip.Mipih.Fr, Ou=318310021300028, O=Gip Mipih, St=Haute-Garonne (31), c=Fr",
])
def test_normalize_dn_equal_across_case_and_spaces(variant: str) -> None:
    assert normalize_dn(variant) == normalize_dn(DN_A)


def test_normalize_dn_keeps_order_and_values_apart() -> None:
    # order of RDNs is significant, and different values are different DNs
    assert normalize_dn("CN=a,O=b") != normalize_dn("O=b,CN=a")
    assert normalize_dn(DN_A) != normalize_dn(DN_B)
    assert normalize_dn("CN=a,O=b") != normalize_dn("CN=a,O=c")


def test_normalize_dn_escaped_comma_stays_in_the_value() -> None:
    norm = normalize_dn(r"CN=mx.example.fr,O=Foo\, Bar,C=FR")
    assert len(norm) == 3  # the escaped comma did not split the RDN
    assert norm[1][0] == "O"
    assert "foo" in norm[1][1] and "bar" in norm[1][1]
    assert normalize_dn(r"cn = MX.example.fr , o = FOO\, BAR , c = fr") == norm
    # unescaped, the comma splits: a different (and here malformed) DN
    assert normalize_dn("CN=mx.example.fr,O=Foo, Bar,C=FR") != norm


def test_normalize_dn_multivalued_rdn() -> None:
    assert normalize_dn("CN=a+OU=b,O=c") == (("CN", "a"), ("OU", "b"), ("O", "c"))
    assert normalize_dn(r"CN=a\+b,O=c") == (("CN", r"a\+b"), ("O", "c"))


@pytest.mark.parametrize("text", ["", "not a dn", "CN=a,garbage"])
def test_normalize_dn_non_dn_is_empty(text: str) -> None:
    assert normalize_dn(text) == ()


# --- TrustList and check_sender ----------------------------------------------------------

@pytest.fixture
def trust() -> TrustList:
    return TrustList.build([
        ("hopital.mssante.fr", DN_A),
        ("Cabinet.MSSante.fr", DN_B),
        ("multi.mssante.fr", DN_A),   # one domain, two sending servers
        ("multi.mssante.fr", DN_C),
    ], generated="2025-03-13T14:54:10Z")


def test_build_counts_entries_and_merges_domains(trust: TrustList) -> None:
    assert trust.entries == 4
    assert set(trust.domains) == {"hopital.mssante.fr", "cabinet.mssante.fr", "multi.mssante.fr"}
    assert trust.dns_for("multi.mssante.fr") == {normalize_dn(DN_A), normalize_dn(DN_C)}
    assert trust.generated == "2025-03-13T14:54:10Z"


def test_listed_domain_and_listed_dn_trusted(trust: TrustList) -> None:
    assert check_sender(trust, "hopital.mssante.fr", DN_A) is None
    # DN as a certificate would spell it with other case and spacing
    assert check_sender(trust, "hopital.mssante.fr", DN_A.lower().replace(",", ", ")) is None


def test_listed_domain_other_dn_refused(trust: TrustList) -> None:
    d = check_sender(trust, "hopital.mssante.fr", DN_B)  # DN_B is listed, but for another domain
    assert isinstance(d, Decision)
    assert d is SENDER_NOT_TRUSTED
    assert (d.code, d.status) == (550, "5.7.1")
    assert d.smtp().startswith("550 5.7.1 ")
    assert not d.accepted


def test_unlisted_domain_refused(trust: TrustList) -> None:
    d = check_sender(trust, "gmail.com", DN_A)
    assert d is not None and (d.code, d.status) == (550, "5.7.1")


@pytest.mark.parametrize("domain", ["HOPITAL.MSSANTE.FR", "Hopital.Mssante.Fr", "hopital.mssante.fr."])
def test_domain_case_insensitive_and_trailing_dot(trust: TrustList, domain: str) -> None:
    assert check_sender(trust, domain, DN_A) is None


def test_mixed_case_listed_domain_found(trust: TrustList) -> None:
    assert check_sender(trust, "cabinet.mssante.fr", DN_B) is None


def test_domain_listed_twice_accepts_both_dns(trust: TrustList) -> None:
    assert check_sender(trust, "multi.mssante.fr", DN_A) is None
    assert check_sender(trust, "multi.mssante.fr", DN_C) is None
    assert check_sender(trust, "multi.mssante.fr", DN_B) is SENDER_NOT_TRUSTED


def test_null_sender_trusted_iff_dn_known_for_any_domain(trust: TrustList) -> None:
    assert check_sender(trust, None, DN_B) is None  # listed for cabinet.mssante.fr
    assert check_sender(trust, None, DN_C.upper()) is None
    unknown = "CN=mail.inconnu.fr,OU=1,O=Inconnu,ST=Paris (75),C=FR"
    assert check_sender(trust, None, unknown) is SENDER_NOT_TRUSTED


def test_non_dn_subject_never_trusted_for_a_domain(trust: TrustList) -> None:
    assert check_sender(trust, "hopital.mssante.fr", "") is SENDER_NOT_TRUSTED
    assert check_sender(trust, "hopital.mssante.fr", "garbage") is SENDER_NOT_TRUSTED


def test_empty_trust_list_trusts_nobody() -> None:
    empty = TrustList()
    assert check_sender(empty, "hopital.mssante.fr", DN_A) is SENDER_NOT_TRUSTED
    assert check_sender(empty, None, DN_A) is SENDER_NOT_TRUSTED


def test_null_sender_with_non_dn_subject_not_trusted() -> None:
    trust = TrustList.build([("hopital.mssante.fr", DN_A), ("typo.mssante.fr", "medimail-asip.mipih.fr")])
    assert check_sender(trust, None, "") is SENDER_NOT_TRUSTED


def test_dn_with_control_characters_matches_nothing() -> None:
    trust = TrustList.build([("hopital.mssante.fr", "CN=a,O=GIP MIPIH,C=FR")])
    assert normalize_dn("CN=a,O=GIP\r\nMIPIH,C=FR") == ()
    assert check_sender(trust, "hopital.mssante.fr", "CN=a,O=GIP\r\nMIPIH,C=FR") is SENDER_NOT_TRUSTED
    assert check_sender(trust, "hopital.mssante.fr", "CN=a,O=GIP  MIPIH,C=FR") is None  # spaces collapse


def test_case_folding_is_ascii_only() -> None:
    trust = TrustList.build([("h.mssante.fr", "CN=smtp,O=Op,C=FR")])
    assert check_sender(trust, "h.mssante.fr", "CN=SMTP,O=OP,C=fr") is None
    assert check_sender(trust, "h.mssante.fr", "CN=ſmtp,O=Op,C=FR") is SENDER_NOT_TRUSTED
