"""The dossier's categories as the webmail shows them (issue 11): the CDA/XDS class
and type codes grouped under five French headings. Pure: metadata in, heading out."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

REPORTS, BIOLOGY, IMAGING, PRESCRIPTIONS, OTHERS = (
    "Comptes rendus", "Résultats de biologie", "Imagerie", "Prescriptions", "Autres")
ORDER = (REPORTS, BIOLOGY, IMAGING, PRESCRIPTIONS, OTHERS)

# LOINC document codes (CDA `code`, XDS typeCode) most used by French professional software
_LOINC = {
    "11502-2": BIOLOGY, "26436-6": BIOLOGY, "18719-5": BIOLOGY,  # laboratory reports
    "18748-4": IMAGING, "18782-3": IMAGING, "85430-7": IMAGING,  # imaging reports
    "57833-6": PRESCRIPTIONS, "57832-8": PRESCRIPTIONS, "18776-5": PRESCRIPTIONS,  # prescriptions, plan
    "11490-0": REPORTS, "34133-9": REPORTS, "11488-4": REPORTS, "28570-0": REPORTS,  # discharge, summary,
    "34112-3": REPORTS, "11506-3": REPORTS,  # consultation, procedure, hospital, progress notes
}
# words of the class code's display name (XDS classCode, FR: JDV_J06-XdsClassCode-CISIS)
_WORDS = ((BIOLOGY, ("biolog", "laborat", "analyse")), (IMAGING, ("imag", "radiolog", "echograph", "scanner")),
          (PRESCRIPTIONS, ("prescri", "ordonnance")), (REPORTS, ("compte", "rendu", "report", "synth", "lettre")))


def category(meta: Mapping[str, Any]) -> str:
    code = meta.get("type_code")
    if isinstance(code, str) and code in _LOINC:
        return _LOINC[code]
    text = " ".join(str(meta.get(k) or "") for k in ("category", "type_display")).lower()
    text = text.replace("é", "e").replace("è", "e")
    for heading, words in _WORDS:
        if any(w in text for w in words):
            return heading
    return OTHERS
