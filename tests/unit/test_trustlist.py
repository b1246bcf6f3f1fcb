"""certs/trustlist.py: loading the official MSSanté trust list (liste blanche)."""
from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest

from certs.trustlist import (NS, LoadedTrustList, TrustListError, load_trust_list, parse_trust_list,
                             render_trust_list)
from policy.trust import check_sender, normalize_dn

# the shared folder sits beside the repository: /work/shared and /work/main
REAL = Path(__file__).resolve().parents[3] / "shared/data/listeblanchemssante-2025-03-13.xml"
REAL_SHA = REAL.with_name(REAL.name + ".sha256")

MIPIH = "CN=medimail-asip.mipih.fr,OU=318310021300028,O=GIP MIPIH,ST=Haute-Garonne (31),C=FR"
DNS_15_20 = {
    "CN=mss.enovacom.fr,OU=344368557300034,O=ENOVACOM,ST=Bouches-du-Rhône (13),C=FR",
    "CN=smtp-1.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR",
    "CN=smtp-2.sesan.santnet.com,OU=1750048886,O=GIP SESAN,ST=Paris (75),C=FR",
    "CN=smtp-1.sante.santnet.com,OU=341459958900028,O=DEDALUS HEALTHCARE FRANCE,ST=Gironde (33),C=FR",
    "CN=smtp-2.sante.santnet.com,OU=341459958900028,O=DEDALUS HEALTHCARE FRANCE,ST=Gironde (33),C=FR",
}


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    return REAL.read_bytes()


@pytest.fixture(scope="module")
def real_loaded() -> LoadedTrustList:
    return load_trust_list(REAL)


def write_copy(tmp_path: Path, data: bytes, name: str = "liste.xml") -> Path:
    """A copy without a .sha256 beside it, so only the XML is judged."""
    p = tmp_path / name
    p.write_bytes(data)
    return p


# --- the real published file ------------------------------------------------------------------

def test_real_file_matches_its_published_digest(real_bytes: bytes) -> None:
    expected = REAL_SHA.read_text().split()[0]
    assert hashlib.sha256(real_bytes).hexdigest() == expected


def test_real_file_loads(real_loaded: LoadedTrustList, real_bytes: bytes) -> None:
    assert real_loaded.path == REAL
    assert real_loaded.sha256 == hashlib.sha256(real_bytes).hexdigest()
    trust = real_loaded.trust
    assert trust.entries == 619
    assert trust.generated == "2025-03-13T14:54:10Z"
    # distinct domains, counted here apart from the loader (names are case-insensitive)
    names = {n.decode().strip().lower() for n in re.findall(rb"<Nom>([^<]*)</Nom>", real_bytes)}
    assert set(trust.domains) == names
    assert len(names) < 619  # several domains are listed more than once


def test_real_file_missing_root_end_tag_is_a_warning(real_loaded: LoadedTrustList,
                                                     real_bytes: bytes) -> None:
    assert b"</ListeBlancheMSSante>" not in real_bytes
    assert len(real_loaded.warnings) == 1
    assert "</ListeBlancheMSSante>" in real_loaded.warnings[0]


def test_real_file_domains_and_dns(real_loaded: LoadedTrustList) -> None:
    trust = real_loaded.trust
    # listed once, in mixed case in the file
    assert trust.dns_for("uc-cmp.mssante.fr") == {normalize_dn(MIPIH)}
    assert check_sender(trust, "UC-CMP.mssante.fr", MIPIH) is None
    # listed five times, once per sending server
    assert trust.dns_for("15-20.mssante.fr") == {normalize_dn(dn) for dn in DNS_15_20}
    for dn in DNS_15_20:
        assert check_sender(trust, "15-20.mssante.fr", dn) is None
    assert check_sender(trust, "15-20.mssante.fr", MIPIH) is not None
    assert check_sender(trust, "not-listed.mssante.fr", MIPIH) is not None


def test_real_file_with_root_end_tag_added_loads_without_warning(tmp_path: Path, real_bytes: bytes,
                                                                 real_loaded: LoadedTrustList) -> None:
    fixed = write_copy(tmp_path, real_bytes + b"</ListeBlancheMSSante>\n")
    loaded = load_trust_list(fixed)
    assert loaded.warnings == ()
    assert loaded.trust.domains == real_loaded.trust.domains


def test_real_file_with_its_sidecar_copied_loads(tmp_path: Path, real_bytes: bytes) -> None:
    copy = write_copy(tmp_path, real_bytes, REAL.name)
    shutil.copy(REAL_SHA, tmp_path / REAL_SHA.name)
    assert load_trust_list(copy, require_digest=True).trust.entries == 619


# --- truncated copies ------------------------------------------------------------------------

def _nth(data: bytes, needle: bytes, n: int) -> int:
    i = -1
    for _ in range(n):
        i = data.index(needle, i + 1)
    return i


def _cut_points(data: bytes) -> dict[str, int]:
    dom = _nth(data, b"<Domaine>", 300)
    dn = _nth(data, b"<DNCertificatOperateur>", 300)
    end_dom = _nth(data, b"</Domaine>", 300)
    last_end_dom = data.rindex(b"</Domaine>")
    liste_end = data.rindex(b"</ListeDomaines>")
    return {
        "domaine: just after <Domaine>": dom + len(b"<Domaine>"),
        "domaine: inside <Nom> text": data.index(b"<Nom>", dom) + len(b"<Nom>") + 3,
        "domaine: inside a DN": dn + len(b"<DNCertificatOperateur>") + 10,
        "domaine: before </Domaine>": end_dom,
        "domaine: inside </Domaine>": end_dom + 4,
        "liste: between two entries": end_dom + len(b"</Domaine>\n"),
        "liste: inside <Domaine> start tag": dom + 4,
        "liste: after the last entry": last_end_dom + len(b"</Domaine>\n"),
        "liste: inside </ListeDomaines>": liste_end + 8,
    }


@pytest.mark.parametrize("where", list(_cut_points(REAL.read_bytes())))
def test_truncated_copy_refused(tmp_path: Path, real_bytes: bytes, where: str) -> None:
    cut = _cut_points(real_bytes)[where]
    path = write_copy(tmp_path, real_bytes[:cut])
    with pytest.raises(TrustListError, match="truncated") as exc:
        load_trust_list(path)
    inside = ("<ListeBlancheMSSante/ListeDomaines/Domaine" if where.startswith("domaine")
              else "<ListeBlancheMSSante/ListeDomaines>")
    assert inside in str(exc.value)


def test_truncated_rendered_list_refused() -> None:
    text = render_trust_list([("a.mssante.fr", "A", "CN=a,O=A,C=FR"),
                              ("b.mssante.fr", "B", "CN=b,O=B,C=FR")], "2025-01-01T00:00:00Z")
    cut = text.index("<Domaine>", text.index("b.mssante.fr") - 40) + 3
    with pytest.raises(TrustListError):
        parse_trust_list(text[:cut].encode())


# --- digest sidecar ---------------------------------------------------------------------------

def test_wrong_sidecar_refused(tmp_path: Path, real_bytes: bytes) -> None:
    path = write_copy(tmp_path, real_bytes, REAL.name)
    wrong = hashlib.sha256(real_bytes + b"x").hexdigest()
    (tmp_path / (REAL.name + ".sha256")).write_text(f"{wrong}  {REAL.name}\n")
    with pytest.raises(TrustListError, match=r"\.sha256") as exc:
        load_trust_list(path)
    assert wrong in str(exc.value)


def test_sidecar_of_the_original_refuses_an_edited_copy(tmp_path: Path, real_bytes: bytes) -> None:
    edited = real_bytes.replace(b"<Nom>UC-CMP.mssante.fr</Nom>", b"<Nom>evil.mssante.fr</Nom>")
    assert edited != real_bytes
    path = write_copy(tmp_path, edited, REAL.name)
    shutil.copy(REAL_SHA, tmp_path / REAL_SHA.name)
    with pytest.raises(TrustListError, match="does not match"):
        load_trust_list(path)


def test_empty_sidecar_refused(tmp_path: Path, real_bytes: bytes) -> None:
    path = write_copy(tmp_path, real_bytes)
    (tmp_path / "liste.xml.sha256").write_text("")
    with pytest.raises(TrustListError, match="expected nothing"):
        load_trust_list(path)


def test_upper_case_sidecar_accepted(tmp_path: Path, real_bytes: bytes) -> None:
    path = write_copy(tmp_path, real_bytes)
    (tmp_path / "liste.xml.sha256").write_text(hashlib.sha256(real_bytes).hexdigest().upper() + "\n")
    assert load_trust_list(path, require_digest=True).trust.entries == 619


def test_require_digest_without_sidecar_refused(tmp_path: Path, real_bytes: bytes) -> None:
    path = write_copy(tmp_path, real_bytes)
    with pytest.raises(TrustListError, match=r"no liste\.xml\.sha256"):
        load_trust_list(path, require_digest=True)
    # the same file is accepted when the digest is not required
    assert load_trust_list(path).trust.entries == 619


def test_missing_file_refused(tmp_path: Path) -> None:
    with pytest.raises(TrustListError, match="cannot read"):
        load_trust_list(tmp_path / "absent.xml")


# --- DTD and entities ---------------------------------------------------------------------------

XXE = f"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE ListeBlancheMSSante [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>
<ListeBlancheMSSante xmlns="{NS}"><ListeDomaines><Domaine><Nom>&xxe;</Nom>
<DNCertificatOperateur>CN=a,O=b,C=FR</DNCertificatOperateur></Domaine></ListeDomaines></ListeBlancheMSSante>
"""

BILLION_LAUGHS = f"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<ListeBlancheMSSante xmlns="{NS}"><ListeDomaines><Domaine><Nom>a.mssante.fr</Nom>
<Description>&lol9;</Description>
<DNCertificatOperateur>CN=a,O=b,C=FR</DNCertificatOperateur></Domaine></ListeDomaines></ListeBlancheMSSante>
"""


@pytest.mark.parametrize("doc", [XXE, BILLION_LAUGHS, XXE.replace("<!DOCTYPE", "<!doctype")],
                         ids=["xxe", "billion-laughs", "lower-case-doctype"])
def test_dtd_and_entities_refused(tmp_path: Path, doc: str) -> None:
    path = write_copy(tmp_path, doc.encode())
    with pytest.raises(TrustListError, match="DTD or entity"):
        load_trust_list(path)


def test_entity_declaration_alone_refused() -> None:
    doc = render_trust_list([("a.mssante.fr", "A", "CN=a,O=b,C=FR")], "2025")
    doc = doc.replace("<ListeBlancheMSSante", '<!ENTITY x "y">\n<ListeBlancheMSSante', 1)
    with pytest.raises(TrustListError, match="DTD or entity"):
        parse_trust_list(doc.encode())




def test_dtd_in_utf16_document_refused() -> None:
    doc = f"""<?xml version="1.0" encoding="UTF-16"?>
<!DOCTYPE ListeBlancheMSSante [<!ENTITY d "evil.mssante.fr">]>
<ListeBlancheMSSante xmlns="{NS}"><ListeDomaines><Domaine><Nom>&d;</Nom>
<DNCertificatOperateur>CN=a,O=b,C=FR</DNCertificatOperateur></Domaine></ListeDomaines></ListeBlancheMSSante>
"""
    with pytest.raises(TrustListError):
        parse_trust_list(doc.encode("utf-16"))


# --- small lists of our own -----------------------------------------------------------------------

def test_rendered_list_domain_twice_in_mixed_case(tmp_path: Path) -> None:
    dn1 = "CN=mx1.example.fr,OU=111,O=Example & Co,ST=Paris (75),C=FR"
    dn2 = "CN=mx2.example.fr,OU=111,O=Example & Co,ST=Paris (75),C=FR"
    text = render_trust_list([("Example.MSSante.fr", "serveur 1", dn1),
                              ("example.mssante.FR", "serveur 2 <b>", dn2)], "2025-06-01T00:00:00Z")
    path = tmp_path / "small.xml"
    path.write_text(text, encoding="utf-8")
    loaded = load_trust_list(path)
    assert loaded.warnings == ()
    trust = loaded.trust
    assert trust.entries == 2
    assert trust.generated == "2025-06-01T00:00:00Z"
    assert set(trust.domains) == {"example.mssante.fr"}
    assert trust.dns_for("EXAMPLE.mssante.fr") == {normalize_dn(dn1), normalize_dn(dn2)}
    assert check_sender(trust, "example.mssante.fr", dn1) is None
    assert check_sender(trust, "example.mssante.fr", dn2) is None


@pytest.mark.parametrize("tail", [
    b"junk text\n",
    b"<Extra/>\n",
    b"<Domaine><Nom>evil.example</Nom><DNCertificatOperateur>CN=evil</DNCertificatOperateur></Domaine>\n",
    b"<!-- comment -->\n",
])
def test_content_after_liste_domaines_without_root_end_refused(real_bytes: bytes, tail: bytes) -> None:
    with pytest.raises(TrustListError):
        parse_trust_list(real_bytes + tail)


def test_garbage_after_rendered_list_refused() -> None:
    text = render_trust_list([("a.mssante.fr", "A", "CN=a,O=b,C=FR")], "2025")
    text = text.replace("</ListeBlancheMSSante>\n", "")
    assert parse_trust_list(text.encode())[1]  # as is: accepted, with the warning
    with pytest.raises(TrustListError, match="after </ListeDomaines>"):
        parse_trust_list((text + "garbage").encode())


def test_garbage_after_root_end_refused() -> None:
    text = render_trust_list([("a.mssante.fr", "A", "CN=a,O=b,C=FR")], "2025")
    with pytest.raises(TrustListError, match="not well-formed"):
        parse_trust_list((text + "<Domaine>").encode())




def test_domaine_outside_liste_domaines_not_trusted() -> None:
    text = render_trust_list([("a.mssante.fr", "A", "CN=a,O=b,C=FR")], "2025")
    text = text.replace("</ListeDomaines>", "</ListeDomaines><Domaine><Nom>evil.example</Nom>"
                        "<DNCertificatOperateur>CN=evil</DNCertificatOperateur></Domaine>")
    try:
        trust, _ = parse_trust_list(text.encode())
    except TrustListError:
        return  # refusing the file is right too
    assert "evil.example" not in trust.domains


def test_list_without_domaine_refused() -> None:
    with pytest.raises(TrustListError, match="lists no domain"):
        parse_trust_list(render_trust_list([], "2025").encode())


def test_list_without_liste_domaines_refused() -> None:
    doc = f'<ListeBlancheMSSante xmlns="{NS}"><DateDeGeneration>x</DateDeGeneration></ListeBlancheMSSante>'
    with pytest.raises(TrustListError, match="no <ListeDomaines>"):
        parse_trust_list(doc.encode())


def test_wrong_root_refused() -> None:
    doc = f'<Autre xmlns="{NS}"><ListeDomaines><Domaine><Nom>a.fr</Nom>'
    with pytest.raises(TrustListError, match="expected <ListeBlancheMSSante>"):
        parse_trust_list(doc.encode())


def test_entry_without_dn_refused() -> None:
    text = render_trust_list([("a.mssante.fr", "A", "CN=a,O=b,C=FR")], "2025")
    text = re.sub(r"<DNCertificatOperateur>.*</DNCertificatOperateur>", "", text)
    with pytest.raises(TrustListError, match="a.mssante.fr has no <DNCertificatOperateur>"):
        parse_trust_list(text.encode())


def test_entry_without_nom_refused() -> None:
    text = render_trust_list([("a.mssante.fr", "A", "CN=a,O=b,C=FR")], "2025")
    text = text.replace("<Nom>a.mssante.fr</Nom>", "")
    with pytest.raises(TrustListError, match=r"0 <Nom>"):
        parse_trust_list(text.encode())


def test_element_inside_a_name_refused() -> None:
    text = render_trust_list([("a.mssante.fr", "A", "CN=a,O=b,C=FR")], "2025")
    text = text.replace("<Nom>a.mssante.fr</Nom>", "<Nom>a<b/>.mssante.fr</Nom>")
    with pytest.raises(TrustListError, match="text only"):
        parse_trust_list(text.encode())
