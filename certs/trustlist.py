"""Loading the MSSanté trust list (liste blanche) from its official XML.

Format: <ListeBlancheMSSante xmlns="https://listeblanche.mssante.fr/schema">
          <DateDeGeneration/> <ListeDomaines> <Domaine> <Nom/> <DNCertificatOperateur/> ...

Safety rules, because the file comes from outside and decides who may send:
- no DTD, no entity: the real list has none, and refusing them closes XXE and
  entity-expansion attacks without depending on the parser's defaults;
- if a `FILE.sha256` lies beside the list (as the ANS publishes it), the digest must match;
- the list as published on 2025-03-13 lacks its closing </ListeBlancheMSSante> tag.
  We accept a document whose *only* defect is a missing end tag of the root element,
  after a complete </ListeDomaines>: every entry is then known to be whole. Anything
  else that is not well-formed (cut inside the list or an entry, stray markup) is
  refused, and a reload keeps the previous list.
"""
from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from policy.trust import TrustList

NS = "https://listeblanche.mssante.fr/schema"
_DTD_RE = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


class TrustListError(ValueError):
    """The trust list could not be loaded; the message says why."""


@dataclass(frozen=True)
class LoadedTrustList:
    trust: TrustList
    path: Path
    sha256: str
    warnings: tuple[str, ...]  # accepted defects, e.g. the missing root end tag


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def parse_trust_list(data: bytes) -> tuple[TrustList, tuple[str, ...]]:
    # The official list is UTF-8. Decoding first means the DTD check below sees exactly
    # the characters the parser will see (a UTF-16 document would hide "<!ENTITY" from
    # a byte search), and the parser, fed text, ignores any encoding declaration.
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise TrustListError(f"trust list is not UTF-8 (byte {e.start}): refused") from None
    if _DTD_RE.search(text):
        raise TrustListError("trust list contains a DTD or entity declaration: refused")
    parser: ET.XMLPullParser = ET.XMLPullParser(events=("start", "end"))
    stack: list[str] = []
    pairs: list[tuple[str, str]] = []
    generated = ""
    seen_domain_list_end = False
    entry: dict[str, list[str]] | None = None
    try:
        parser.feed(text)
        for event, item in cast("list[tuple[str, ET.Element]]", parser.read_events()):
            elem = item  # start/end events always carry an element
            name = _local(elem.tag)
            if event == "start":
                if not stack and name != "ListeBlancheMSSante":
                    raise TrustListError(f"root element is <{name}>, expected <ListeBlancheMSSante>")
                if stack and stack[-1] in ("Nom", "DNCertificatOperateur"):
                    raise TrustListError(f"<{stack[-1]}> holds an element <{name}>: text only")
                if name == "Domaine" and stack != ["ListeBlancheMSSante", "ListeDomaines"]:
                    raise TrustListError(f"<Domaine> outside <ListeDomaines> (inside <{'/'.join(stack)}>)")
                stack.append(name)
                if name == "Domaine":
                    entry = {"Nom": [], "DNCertificatOperateur": []}
                continue
            stack.pop()
            if name == "DateDeGeneration":
                generated = (elem.text or "").strip()
            elif entry is not None and name in entry and stack and stack[-1] == "Domaine":
                entry[name].append((elem.text or "").strip())
            elif name == "Domaine" and entry is not None:
                if len(entry["Nom"]) != 1 or not entry["Nom"][0]:
                    raise TrustListError(f"a <Domaine> entry has {len(entry['Nom'])} <Nom>")
                if not entry["DNCertificatOperateur"]:
                    raise TrustListError(f"domain {entry['Nom'][0]} has no <DNCertificatOperateur>")
                pairs.extend((entry["Nom"][0], dn) for dn in entry["DNCertificatOperateur"] if dn)
                entry = None
                elem.clear()
            elif name == "ListeDomaines":
                seen_domain_list_end = True
    except ET.ParseError as e:
        raise TrustListError(f"trust list is not well-formed XML: {e}") from None
    if not stack and not seen_domain_list_end:
        raise TrustListError("trust list has no <ListeDomaines>")
    if stack and stack[0] != "ListeBlancheMSSante":
        raise TrustListError(f"root element is <{stack[0]}>, expected <ListeBlancheMSSante>")
    warnings: tuple[str, ...] = ()
    if stack:
        # The document ended with elements still open: tolerate only the root's end tag.
        if stack != ["ListeBlancheMSSante"] or not seen_domain_list_end:
            raise TrustListError(f"trust list is truncated inside <{'/'.join(stack)}>")
        if not text.rstrip().endswith("</ListeDomaines>"):
            raise TrustListError("trust list has content after </ListeDomaines> and no root end tag")
        warnings = ("missing </ListeBlancheMSSante> end tag: accepted, every <Domaine> is complete",)
    if not pairs:
        raise TrustListError("trust list lists no domain")
    return TrustList.build(pairs, generated), warnings


def load_trust_list(path: Path, require_digest: bool = False) -> LoadedTrustList:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TrustListError(f"cannot read trust list {path}: {e.strerror}") from None
    digest = hashlib.sha256(data).hexdigest()
    sidecar = path.with_name(path.name + ".sha256")
    if sidecar.exists():
        expected = sidecar.read_text().split()[0].lower() if sidecar.read_text().split() else ""
        if expected != digest:
            raise TrustListError(f"trust list {path} does not match {sidecar.name} "
                                 f"(sha256 {digest}, expected {expected or 'nothing'})")
    elif require_digest:
        raise TrustListError(f"trust list {path} has no {sidecar.name} beside it")
    trust, warnings = parse_trust_list(data)
    return LoadedTrustList(trust, path, digest, warnings)


def render_trust_list(entries: list[tuple[str, str, str]], generated: str) -> str:
    """Write a list in the official format: entries of (domain, description, operator DN)."""
    from xml.sax.saxutils import escape
    items = "".join(
        "        <Domaine>\n"
        f"            <Nom>{escape(d)}</Nom>\n"
        f"            <Description>{escape(desc)}</Description>\n"
        f"            <DNCertificatOperateur>{escape(dn)}</DNCertificatOperateur>\n"
        f"            <DateMAJ>{escape(generated)}</DateMAJ>\n"
        "        </Domaine>\n" for d, desc, dn in entries)
    return ('<?xml version="1.0" encoding="UTF-8"?>'
            f'<ListeBlancheMSSante xmlns="{NS}">\n'
            f"    <DateDeGeneration>{escape(generated)}</DateDeGeneration>\n"
            "    <ListeDomaines>\n" + items + "    </ListeDomaines>\n</ListeBlancheMSSante>\n")
