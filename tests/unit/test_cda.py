"""dossier_bridge/cda.py: the header of a CDA R2 document, and the document a level-1 CDA wraps."""
from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dossier_bridge.cda import (INS_NIA_OID, INS_NIR_DEMO_OID, INS_NIR_OID, INS_NIR_TEST_OID, INS_OIDS, LOINC_OID,
                                RPPS_OID, CdaError, CdaHeader, embedded_document, parse_cda, parse_hl7_ts,
                                rpps_from_idnps)

# the shared folder sits beside the repository: /work/shared and /work/main
CDA_DIR = Path(__file__).resolve().parents[3] / "shared/data/cda"
LDL_SES = CDA_DIR / "LDL-SES_2022.01.xml"
CSE_CS8 = CDA_DIR / "CSE-CS8_2024.01.xml"
NON_STRUCTURE = CDA_DIR / "DOC_NON_STRUCTURE_CDA-R2-N1.xml"

PLUS_ONE = timezone(timedelta(hours=1))


def cda(header: str = "", body: str = "<component><structuredBody/></component>") -> bytes:
    """A minimal ClinicalDocument around `header` and `body`."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ClinicalDocument xmlns="urn:hl7-org:v3">{header}{body}</ClinicalDocument>'
    ).encode()


# --- the ANS examples ----------------------------------------------------------------


def test_ldl_ses_discharge_letter() -> None:
    header = parse_cda(LDL_SES.read_bytes())
    assert header == CdaHeader(
        title="Lettre de liaison à la sortie de l'établissement de santé",
        code="11490-0",
        code_system=LOINC_OID,
        code_display="Lettre de liaison à la sortie d'un établissement de soins",
        effective_time=datetime(2019, 12, 3, 13, 30, tzinfo=PLUS_ONE),
        author_ids=((RPPS_OID, "801234567897"),),
        author_rpps="801234567897",
        author_name="Charles DAVID",
        patient_ids=((INS_NIR_TEST_OID, "279035121518989"), ("1.2.3.4.567.8.9.10", "1234567890121")),
    )
    assert header.ins_ids == ("279035121518989",)
    assert rpps_from_idnps(header.author_rpps) == "01234567897"
    assert embedded_document(LDL_SES.read_bytes()) is None  # structured body


def test_cse_cs8_birth_certificate() -> None:
    # Not a LOINC code: the ANS classifies certificates with its own code system.
    header = parse_cda(CSE_CS8.read_bytes())
    assert header.title == (
        "PREMIER CERTIFICAT DE SANTE (à établir obligatoirement dans les 8 jours suivant la naissance)"
    )
    assert (header.code, header.code_system, header.code_display) == (
        "CERT_DECL",
        "1.2.250.1.213.1.1.4.12",
        "Certificat, déclaration",
    )
    assert header.effective_time == datetime(2021, 5, 3, 11, 45, tzinfo=PLUS_ONE)
    assert header.author_rpps == "801234567897"
    assert header.author_name == "Charles MULLER"  # "Charles " in the file: collapsed
    # The production INS-NIR OID, with a number whose key does not verify (data/README.md).
    assert header.patient_ids == ((INS_NIR_OID, "223042545611404"), ("1.2.3.4.5.6.7.8.9.10", "594857603"))
    assert header.ins_ids == ("223042545611404",)
    assert embedded_document(CSE_CS8.read_bytes()) is None


def test_non_structured_biology_report_wraps_a_pdf() -> None:
    content = NON_STRUCTURE.read_bytes()
    header = parse_cda(content)
    assert header.title == "Compte rendu d'examens biologiques"
    assert (header.code, header.code_system) == ("11502-2", LOINC_OID)
    assert header.code_display == "CR d'examens biologiques"
    assert header.effective_time == datetime(2021, 4, 1, 13, 47, 45, tzinfo=PLUS_ONE)
    assert header.author_ids == ((RPPS_OID, "801234534765"),)
    assert header.author_rpps == "801234534765"
    assert header.author_name == "Marcel CAMPARINI"
    assert header.ins_ids == ("279035121518989",)

    embedded = embedded_document(content)
    assert embedded is not None
    media_type, pdf = embedded
    assert media_type == "application/pdf"
    assert pdf.startswith(b"%PDF-1.5")
    assert pdf.rstrip().endswith(b"%%EOF")
    assert len(pdf) == 326_650
    with pytest.raises(CdaError, match="too large"):
        embedded_document(content, max_bytes=100_000)


# --- header details ------------------------------------------------------------------


def test_ins_oids() -> None:
    assert INS_OIDS == {INS_NIR_OID, INS_NIA_OID, INS_NIR_TEST_OID}
    assert INS_NIR_DEMO_OID not in INS_OIDS
    header = parse_cda(cda(
        "<recordTarget><patientRole>"
        f'<id root="{INS_NIA_OID}" extension="185109912345678"/>'
        f'<id root="{INS_NIR_DEMO_OID}" extension="279035121518989"/>'
        '<id root="1.2.250.1.213.1.4.2" extension="IPP-42"/>'
        '<id nullFlavor="UNK"/>'
        "</patientRole></recordTarget>"
    ))
    assert header.ins_ids == ("185109912345678",)
    assert len(header.patient_ids) == 3


def test_sparse_header() -> None:
    header = parse_cda(cda())
    assert header == CdaHeader(None, None, None, None, None, (), None, None, ())
    assert header.ins_ids == ()


def test_author_without_rpps_and_plain_name() -> None:
    header = parse_cda(cda(
        "<title>  Compte\n   rendu  <sup>bis</sup> </title>"
        '<author><assignedAuthor><id root="1.2.250.1.71.4.2.2" extension="1750803447"/>'
        "<assignedPerson><name>  Jean   Dupont </name></assignedPerson></assignedAuthor></author>"
    ))
    assert header.title == "Compte rendu bis"
    assert header.author_rpps is None
    assert header.author_ids == (("1.2.250.1.71.4.2.2", "1750803447"),)
    assert header.author_name == "Jean Dupont"


def test_rpps_from_idnps() -> None:
    assert rpps_from_idnps("810002909371") == "10002909371"
    assert rpps_from_idnps("012345678") is None  # "0" + ADELI
    assert rpps_from_idnps("8100029093") is None
    assert rpps_from_idnps(None) is None


# --- HL7 TS --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20191203133000+0100", datetime(2019, 12, 3, 13, 30, tzinfo=PLUS_ONE)),
        ("20191203133000-0330", datetime(2019, 12, 3, 13, 30, tzinfo=timezone(-timedelta(hours=3, minutes=30)))),
        ("20191203133000", datetime(2019, 12, 3, 13, 30, tzinfo=timezone.utc)),  # no zone: UTC
        ("201912031330", datetime(2019, 12, 3, 13, 30, tzinfo=timezone.utc)),
        ("2019120313", datetime(2019, 12, 3, 13, tzinfo=timezone.utc)),
        ("20191203", datetime(2019, 12, 3, tzinfo=timezone.utc)),
        ("20191203+0200", datetime(2019, 12, 3, tzinfo=timezone(timedelta(hours=2)))),
        ("20191203133015.25+0000", datetime(2019, 12, 3, 13, 30, 15, 250_000, tzinfo=timezone.utc)),
        (" 20191203133015.1234 ", datetime(2019, 12, 3, 13, 30, 15, 123_400, tzinfo=timezone.utc)),
        ("20240229", datetime(2024, 2, 29, tzinfo=timezone.utc)),
    ],
)
def test_hl7_ts(value: str, expected: datetime) -> None:
    parsed = parse_hl7_ts(value)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "value",
    [None, "", "2019", "201912", "20191", "20191303", "20230229", "20191203250000", "20191203136000",
     "20191203133000+2400", "20191203133000+0160", "20191203133000Z", "2019-12-03", "20191203.5",
     "2019120313300", "20191203133000+01", "٢٠١٩١٢٠٣"],
)
def test_hl7_ts_refused(value: str | None) -> None:
    assert parse_hl7_ts(value) is None


def test_hl7_ts_default_zone() -> None:
    paris_winter = timezone(timedelta(hours=1))
    assert parse_hl7_ts("20191203133000", default_tz=paris_winter) == datetime(2019, 12, 3, 12, 30, tzinfo=timezone.utc)
    assert parse_hl7_ts("20191203133000+0000", default_tz=paris_winter) == datetime(
        2019, 12, 3, 13, 30, tzinfo=timezone.utc
    )


@given(st.text(max_size=40))
def test_hl7_ts_never_raises(value: str) -> None:
    result = parse_hl7_ts(value)
    assert result is None or result.tzinfo is not None


# --- refusals ------------------------------------------------------------------------

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&xxe;</title></ClinicalDocument>"""

EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument SYSTEM "http://example.invalid/cda.dtd">
<ClinicalDocument xmlns="urn:hl7-org:v3"/>"""

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ClinicalDocument xmlns="urn:hl7-org:v3"><title>&lol9;</title></ClinicalDocument>"""


@pytest.mark.parametrize("content", [XXE, EXTERNAL_DTD, BILLION_LAUGHS], ids=["xxe", "external-dtd", "billion-laughs"])
def test_dtd_and_entities_refused(content: bytes) -> None:
    with pytest.raises(CdaError, match="forbidden XML construct"):
        parse_cda(content)
    with pytest.raises(CdaError):
        embedded_document(content)


@pytest.mark.parametrize(
    "content",
    [b"", b"%PDF-1.5\n", b"\x00\xff\xfe garbage", b"<ClinicalDocument xmlns='urn:hl7-org:v3'>",
     b'<?xml version="1.0" encoding="x-unknown"?><a/>', LDL_SES.read_bytes()[:5000]],
    ids=["empty", "pdf", "binary", "unclosed", "unknown-encoding", "truncated"],
)
def test_garbage_refused(content: bytes) -> None:
    with pytest.raises(CdaError):
        parse_cda(content)


@pytest.mark.parametrize(
    "content",
    [b"<ClinicalDocument/>",  # right name, no HL7 namespace
     b'<html xmlns="http://www.w3.org/1999/xhtml"><title>x</title></html>',
     b'<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"/>'],
)
def test_non_cda_xml_refused(content: bytes) -> None:
    with pytest.raises(CdaError, match="not a CDA"):
        parse_cda(content)


def test_not_bytes_refused() -> None:
    with pytest.raises(CdaError):
        parse_cda("<ClinicalDocument xmlns='urn:hl7-org:v3'/>")  # type: ignore[arg-type]


# --- the wrapped document ------------------------------------------------------------


def nonxml(text: str, **attributes: str) -> bytes:
    attrs = " ".join(f'{k}="{v}"' for k, v in attributes.items())
    return cda(body=f"<component><nonXMLBody><text {attrs}>{text}</text></nonXMLBody></component>")


def test_embedded_b64_with_line_breaks() -> None:
    payload = b"%PDF-1.4\n" + bytes(range(256)) * 4
    encoded = base64.encodebytes(payload).decode()  # 76-character lines
    assert embedded_document(nonxml(encoded, mediaType="application/pdf", representation="B64")) == (
        "application/pdf",
        payload,
    )


def test_embedded_txt_defaults() -> None:
    assert embedded_document(nonxml("Bonjour")) == ("text/plain", b"Bonjour")


@pytest.mark.parametrize(
    ("text", "match"),
    [("JVBER!0x", "base64"), ("JVBERi0", "base64"), ("JVBERg==JVBE", "base64"), ("", "empty"), ("  \n ", "empty")],
)
def test_embedded_bad_b64(text: str, match: str) -> None:
    with pytest.raises(CdaError, match=match):
        embedded_document(nonxml(text, mediaType="application/pdf", representation="B64"))


def test_embedded_reference_and_compression_refused() -> None:
    with pytest.raises(CdaError, match="external"):
        embedded_document(cda(body=(
            '<component><nonXMLBody><text mediaType="application/pdf">'
            '<reference value="http://example.invalid/doc.pdf"/></text></nonXMLBody></component>'
        )))
    with pytest.raises(CdaError, match="compressed"):
        embedded_document(nonxml("eJwDAAAAAAE=", mediaType="application/pdf", representation="B64", compression="DF"))
    with pytest.raises(CdaError, match="representation"):
        embedded_document(nonxml("x", representation="HEX"))


def test_embedded_size_bound_checked_before_decoding() -> None:
    big = base64.b64encode(bytes(3000)).decode()
    with pytest.raises(CdaError, match="too large"):
        embedded_document(nonxml(big, mediaType="application/pdf", representation="B64"), max_bytes=2999)
    assert embedded_document(nonxml(big, representation="B64"), max_bytes=3000) == ("text/plain", bytes(3000))


# --- fuzz ----------------------------------------------------------------------------

_TAGS = st.sampled_from(["ClinicalDocument", "title", "code", "author", "assignedAuthor", "id", "recordTarget",
                         "patientRole", "component", "nonXMLBody", "text", "effectiveTime", "name", "given"])


@st.composite
def xmlish(draw: st.DrawFn) -> bytes:
    """Fragments that get past the first bytes of the parser more often than random bytes."""
    parts = draw(st.lists(st.one_of(
        _TAGS.map(lambda t: f"<{t}>"), _TAGS.map(lambda t: f"</{t}>"),
        st.just('<id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>'),
        st.just('<text representation="B64" mediaType="application/pdf">'),
        st.just('<effectiveTime value="2019120313'), st.just("<!DOCTYPE x ["), st.just("&amp;"), st.just("&x;"),
        st.text(max_size=10),
    ), max_size=20))
    prefix = draw(st.sampled_from(["", '<ClinicalDocument xmlns="urn:hl7-org:v3">', '<?xml version="1.0"?>']))
    return (prefix + "".join(parts)).encode("utf-8", "surrogatepass")


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=300), xmlish()))
def test_parse_cda_only_raises_cda_error(content: bytes) -> None:
    try:
        parse_cda(content)
    except CdaError:
        pass
    try:
        embedded_document(content, max_bytes=1000)
    except CdaError:
        pass


@settings(max_examples=150)
@given(st.data())
def test_mutated_real_cda_only_raises_cda_error(data: st.DataObject) -> None:
    original = cda(
        '<title>Compte rendu</title><code code="11502-2" codeSystem="2.16.840.1.113883.6.1"/>'
        '<effectiveTime value="20210401134745+0100"/>'
        '<author><assignedAuthor><id root="1.2.250.1.71.4.2.1" extension="801234534765"/></assignedAuthor></author>'
        '<recordTarget><patientRole><id root="1.2.250.1.213.1.4.10" extension="279035121518989"/>'
        "</patientRole></recordTarget>",
        '<component><nonXMLBody><text mediaType="application/pdf" representation="B64">JVBERi0xLjUK</text>'
        "</nonXMLBody></component>",
    )
    assert parse_cda(original).ins_ids == ("279035121518989",)
    position = data.draw(st.integers(0, len(original) - 1))
    replacement = data.draw(st.binary(min_size=0, max_size=8))
    mutated = original[:position] + replacement + original[position + 1:]
    try:
        parse_cda(mutated)
        embedded_document(mutated)
    except CdaError:
        pass
