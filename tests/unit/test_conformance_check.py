"""relay/conformance/check.py: the ANS example CDA documents packaged in IHE_XDM with
correct headers pass; each broken variant fails, naming its rule."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree as ET


from relay.conformance.check import check_eml
from relay.conformance.report import as_json, junit
from relay.conformance.results import Outcome, Status, exit_status
from relay.conformance.samples import KIT_NIL, XdmDoc, professional_message, xdm_package

ROOT = Path(__file__).resolve().parents[2]
CDA_DIR = ROOT / "../shared/data/cda"
LDL = (CDA_DIR / "LDL-SES_2022.01.xml").read_bytes()  # 11490-0, INS 279035121518989
BIOLOGY = (CDA_DIR / "DOC_NON_STRUCTURE_CDA-R2-N1.xml").read_bytes()  # 11502-2, same patient
CSE = (CDA_DIR / "CSE-CS8_2024.01.xml").read_bytes()  # CERT_DECL, INS 223042545611404
INS = "279035121518989"
OTHER_INS = "223042545611404"
SENDER = "dr.martin@test-operator.mssante.fr"
EXECUTABLE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 240 + b"PE\x00\x00"


def docs(*changes: dict) -> list[XdmDoc]:
    base = [XdmDoc("DOC0001.XML", LDL, "Lettre de liaison", "11490-0", INS),
            XdmDoc("DOC0002.XML", BIOLOGY, "CR de biologie", "11502-2", INS)]
    for i, change in enumerate(changes):
        if change:
            base[i] = XdmDoc(**{**{f: getattr(base[i], f) for f in XdmDoc.__slots__}, **change})
    return base


def eml(documents: list[XdmDoc] | None = None, headers: dict[str, str] | None = None,
        extra: dict[str, bytes] | None = None, to: str = f"{INS}@patient.mssante.fr",
        subject: str = "Documents de sortie") -> bytes:
    h = {"X-MSS-CODECDA": "11490-0,11502-2", "X-MSS-INS": "O", "X-MSS-NIL": KIT_NIL}
    for k, v in (headers or {}).items():
        if v is None:
            h.pop(k, None)
        else:
            h[k] = v
    package = xdm_package(documents or docs(), extra)
    return professional_message(SENDER, to, subject, "Bonjour,\nvos documents.\n", "<c-1@test-operator.mssante.fr>",
                                [(package, "application/zip", "IHE_XDM.ZIP")], h)


def verdicts(raw: bytes) -> dict[str, Outcome]:
    return {o.name: o for o in check_eml(raw)}


def failed(raw: bytes) -> dict[str, Outcome]:
    return {n: o for n, o in verdicts(raw).items() if o.status is Status.FAIL}


def test_the_ans_examples_in_a_correct_package_pass() -> None:
    results = check_eml(eml())
    assert [o.name for o in results if o.status is not Status.PASS] == []
    names = {o.name for o in results}
    assert {"size", "recipient", "attachments", "xdm.structure", "xdm.hash", "xdm.size", "xdm.patient_id",
            "header.codecda", "header.ins", "header.nil", "header.mes", "subject.fin"} <= names
    assert exit_status(results) == 0


def test_the_certificate_example_passes_except_its_ins_key() -> None:
    # the ANS CSE-CS8 example names INS 223042545611404, whose key is not 97 - (N mod 97)
    # (it would be 82): as an address, 501 5.1.3; everything else of the package is right
    raw = eml([XdmDoc("DOC0001.XML", CSE, "Certificat", "CERT_DECL", OTHER_INS, "1.2.250.1.213.1.4.8")],
              {"X-MSS-CODECDA": "CERT_DECL"}, to=f"{OTHER_INS}@patient.mssante.fr")
    bad = failed(raw)
    assert set(bad) == {"recipient"} and "501 5.1.3" in bad["recipient"].reason


def test_a_wrong_codecda_fails() -> None:
    bad = failed(eml(headers={"X-MSS-CODECDA": "11490-0,34112-3"}))
    assert set(bad) == {"header.codecda"} and bad["header.codecda"].rule == "mss.codecda"
    assert "11490-0,11502-2" in bad["header.codecda"].reason


def test_a_missing_codecda_fails() -> None:
    bad = failed(eml(headers={"X-MSS-CODECDA": None}))
    assert set(bad) == {"header.codecda"} and "missing" in bad["header.codecda"].reason


def test_a_patient_id_for_another_patient_fails() -> None:
    bad = failed(eml(docs({"patient_ins": OTHER_INS, "patient_oid": "1.2.250.1.213.1.4.8"})))
    assert set(bad) == {"xdm.patient_id"}
    assert bad["xdm.patient_id"].rule == "patient_id_mismatch"
    assert "DOC0001.XML" in bad["xdm.patient_id"].reason


def test_a_hash_mismatch_fails() -> None:
    bad = failed(eml(docs({}, {"declared_sha1": "0" * 40})))
    assert set(bad) == {"xdm.hash"} and bad["xdm.hash"].rule == "xdm_hash_mismatch"
    assert "DOC0002.XML" in bad["xdm.hash"].reason


def test_a_size_mismatch_fails() -> None:
    bad = failed(eml(docs({"declared_size": 12})))
    assert set(bad) == {"xdm.size"} and "DOC0001.XML" in bad["xdm.size"].reason


def test_an_executable_inside_the_package_fails_naming_the_entry() -> None:
    results = verdicts(eml(extra={"IHE_XDM/SUBSET01/SETUP.EXE": EXECUTABLE}))
    bad = {n: o for n, o in results.items() if o.status is Status.FAIL}
    assert set(bad) == {"attachments"} and bad["attachments"].rule == "attachment_forbidden"
    assert "554 5.6.1" in bad["attachments"].reason and "IHE_XDM.ZIP/IHE_XDM/SUBSET01/SETUP.EXE" in \
        bad["attachments"].reason
    # the headers that depend on the package's documents cannot be judged: skipped, not passed
    assert results["header.codecda"].status is Status.SKIP


def test_ins_header_o_without_a_qualified_ins_fails() -> None:
    unqualified = LDL.replace(b'<administrativeGenderCode', b'<administrativeGenderCodeX')
    assert b"administrativeGenderCodeX" in unqualified
    bad = failed(eml(docs({"content": unqualified}, {"content": BIOLOGY.replace(
        b'<administrativeGenderCode', b'<administrativeGenderCodeX')})))
    assert set(bad) == {"header.ins"} and "expected 'N'" in bad["header.ins"].reason


def test_recipient_nil_mes_and_fin_syntax() -> None:
    bad = failed(eml(headers={"X-MSS-NIL": None, "X-MSS-MES": "fin"}, to="279035121518988@patient.mssante.fr",
                     subject="Resultats [fin]"))
    assert set(bad) == {"recipient", "header.nil", "header.mes", "subject.fin"}
    assert "501 5.1.3" in bad["recipient"].reason and bad["recipient"].rule == "bad_ins"


def test_a_plain_message_needs_only_x_mss_nil() -> None:
    raw = professional_message(SENDER, f"{INS}@patient.mssante.fr", "Bonjour", "Texte.\n", "<p@t>", None,
                               {"X-MSS-NIL": "LPS-1"})
    assert failed(raw) == {}


def test_junit_and_json_reports() -> None:
    results = check_eml(eml(headers={"X-MSS-CODECDA": None}))
    for o in results:
        o.group = "bad.eml"
    root = ET.fromstring(junit(results, "conformance.check"))
    [suite] = root.findall("testsuite")
    assert suite.get("name") == "bad.eml" and suite.get("failures") == "1"
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    assert len(cases) == len(results)
    assert cases["header.codecda"].find("failure").get("type") == "mss.codecda"
    data = json.loads(as_json(results))
    assert data["summary"]["fail"] == 1 and len(data["results"]) == len(results)


def test_the_check_command(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.eml", tmp_path / "bad.eml"
    good.write_bytes(eml())
    bad.write_bytes(eml(headers={"X-MSS-CODECDA": "99999-9"}))
    env_cmd = [sys.executable, "-m", "relay.cli", "conformance", "check"]
    ok = subprocess.run([*env_cmd, str(good)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "PASS  header.codecda" in ok.stdout and ok.stderr == ""
    junit_file = tmp_path / "check.xml"
    ko = subprocess.run([*env_cmd, str(good), str(bad), "--junit", str(junit_file)], capture_output=True, text=True,
                        cwd=ROOT, timeout=120)
    assert ko.returncode == 1 and "FAIL  header.codecda" in ko.stdout and ko.stderr == ""
    assert len(ET.parse(junit_file).getroot().findall("testsuite")) == 2
    missing = subprocess.run([*env_cmd, str(tmp_path / "nope.eml")], capture_output=True, text=True, cwd=ROOT,
                             timeout=120)
    assert missing.returncode == 2 and missing.stderr.startswith("mssante-relay: error: ")
    assert "nope.eml" in missing.stderr and "Traceback" not in missing.stderr
