"""Fuzz harness for the trust-list loader (certs/trustlist.py) and the sender rule it
feeds (policy/trust.py).

The contracts:
- `parse_trust_list` returns (TrustList, warnings) or raises TrustListError, nothing
  else: a bad list is refused with a reason and the previous one kept, never a crash of
  the reload; an accepted list names at least one domain, each in lower case;
- every DN it holds is what `normalize_dn` makes of text, and `check_sender` never
  raises: it trusts a (domain, DN) pair only when the list holds that pair.

    python tests/fuzz/fuzz_trustlist.py -max_total_time=600 /tmp/trust-work
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzzing import instrumented, main  # noqa: E402

with instrumented("certs.trustlist", "policy.trust"):
    from certs.trustlist import TrustListError, parse_trust_list  # noqa: E402
    from policy import trust  # noqa: E402

DN = "CN=mail.test-operator.mssante.fr,O=Operateur de test,C=FR"


def test_one_input(data: bytes) -> None:
    try:
        found, warnings = parse_trust_list(data)
    except TrustListError as exc:
        str(exc)
        found = None
    if found is not None:
        assert found.domains and found.entries >= len(found.domains)
        assert all(d == d.lower() for d in found.domains)
        assert all(isinstance(w, str) for w in warnings)
        for domain, dns in list(found.domains.items())[:20]:
            for dn in list(dns)[:3]:
                if dn:  # a normalised DN, written back as RFC 4514 text, matches itself
                    text = ",".join(f"{t}={v}" for t, v in dn)
                    if all("," not in v and "+" not in v and "\\" not in v for _, v in dn):
                        assert trust.check_sender(found, domain, text) is None, (domain, text)
        assert trust.check_sender(found, "not-listed.invalid", DN) is not None or "not-listed.invalid" in found.domains
    # the sender rule on a fuzzed MAIL FROM domain (first line) and certificate DN (the rest)
    domain, _, dn = data[:400].decode("utf-8", "replace").partition("\n")
    listed = trust.TrustList.build([("test-operator.mssante.fr", DN), ("Autre.MSSante.fr.", dn)])
    one = trust.TrustList.build([("test-operator.mssante.fr", DN)])
    trusted = trust.check_sender(one, domain, dn) is None
    assert trusted == (one.lists(domain) and bool(trust.normalize_dn(dn))
                       and trust.normalize_dn(dn) == trust.normalize_dn(DN)), (domain, dn)
    if trust.normalize_dn(dn):  # a listed DN matches itself, for its domain only
        assert trust.check_sender(listed, "autre.mssante.fr", dn) is None, dn
        assert trust.check_sender(listed, None, dn) is None, dn


DICTIONARY = [b"<ListeBlancheMSSante xmlns=\"https://listeblanche.mssante.fr/schema\">", b"</ListeBlancheMSSante>",
              b"<ListeDomaines>", b"</ListeDomaines>", b"<Domaine>", b"</Domaine>", b"<Nom>", b"</Nom>",
              b"<DNCertificatOperateur>", b"</DNCertificatOperateur>", b"<DateDeGeneration>", b"<!DOCTYPE",
              b"<!ENTITY", b"&amp;", b"&#", b"CN=", b",O=", b"+", b"\\,", b"\xef\xbb\xbf"]

if __name__ == "__main__":
    main(sys.argv, "trustlist", test_one_input, DICTIONARY)
