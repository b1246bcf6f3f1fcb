"""Who may send into patient.mssante.fr: the MSSanté trust list (liste blanche) rule.

A sender is trusted when its MAIL FROM domain is listed and the subject DN of the
client certificate it presented is one of the DNs listed for that domain (DESIGN.md §4).
DNs are compared attribute by attribute, ASCII case-insensitively, with insignificant
spaces removed (RFC 4518 §2 "insignificant space handling", simplified: the trust
list writes DNs in the RFC 4514 string form, most specific RDN first).
"""
from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from policy.decisions import SENDER_NOT_TRUSTED, Decision


def _split_unescaped(text: str, sep: str) -> list[str]:
    parts, cur, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur.append(text[i:i + 2])
            i += 2
            continue
        if ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    parts.append("".join(cur))
    return parts


def _ascii_lower(text: str) -> str:
    # ASCII only: Unicode case folding would make "ſ" match "s" (the real list is ASCII)
    return text.translate(_LOWER)


_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


@functools.lru_cache(maxsize=1024)  # the MX asks for the same few operators' DNs at every MAIL
def normalize_dn(dn: str) -> tuple[tuple[str, str], ...]:
    """Canonical form of an RFC 4514 DN string: ((type, value), ...), ASCII lower-cased,
    runs of spaces collapsed. A DN with a control character matches nothing."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in dn):
        return ()
    out = []
    for rdn in _split_unescaped(dn.strip(), ","):
        for ava in _split_unescaped(rdn, "+"):
            typ, eq, value = ava.partition("=")
            if not eq:
                return ()  # not a DN: matches nothing
            value = " ".join(p for p in value.strip(" ").split(" ") if p)
            out.append((typ.strip(" ").upper(), _ascii_lower(value)))
    return tuple(out)


@dataclass(frozen=True)
class TrustList:
    """Domain (lower case) -> set of normalised operator certificate DNs."""

    domains: Mapping[str, frozenset[tuple[tuple[str, str], ...]]] = field(default_factory=dict)
    entries: int = 0  # <Domaine> elements read, duplicates included
    generated: str = ""  # <DateDeGeneration>

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, str]], generated: str = "") -> "TrustList":
        acc: dict[str, set[tuple[tuple[str, str], ...]]] = {}
        n = 0
        for domain, dn in pairs:
            n += 1
            # a domain may be listed once per sending server: union of its DNs
            acc.setdefault(domain.strip().lower().rstrip("."), set()).add(normalize_dn(dn))
        return cls({d: frozenset(s) for d, s in acc.items()}, n, generated)

    def dns_for(self, domain: str) -> frozenset[tuple[tuple[str, str], ...]]:
        return self.domains.get(domain.lower().rstrip("."), frozenset())

    def lists(self, domain: str) -> bool:
        """The domain is in the MSSante trust space (names are case-insensitive)."""
        return domain.lower().rstrip(".") in self.domains

    def knows_dn(self, dn: str) -> bool:
        norm = normalize_dn(dn)
        return bool(norm) and any(norm in dns for dns in self.domains.values())


def check_sender(trust: TrustList, mail_from_domain: str | None, cert_subject: str) -> Decision | None:
    """None when trusted, else the refusal.

    A null reverse-path (RFC 5321 §4.5.5, a bounce) has no domain: it is trusted when
    the certificate belongs to an operator on the list, whatever its domain.
    """
    if mail_from_domain is None:
        return None if trust.knows_dn(cert_subject) else SENDER_NOT_TRUSTED
    norm = normalize_dn(cert_subject)
    if norm and norm in trust.dns_for(mail_from_domain):
        return None
    return SENDER_NOT_TRUSTED
