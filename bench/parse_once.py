"""The MX's parse-and-decide step alone (relay/inbound/pipeline.decide), CPU ms per
message, for a 10 KB text message and a 500 KB message with a PDF, in this process.

Run it from two checkouts in the same session to compare them (the cwd wins over the
installed package), e.g. issue 15 item 3, one parse against the header parse of the
stdlib plus the MIME parse:

    (cd /work/main && python bench/parse_once.py)   # or the path of this file
    (cd <worktree> && python bench/parse_once.py)

Bounded: ROUNDS rounds of N messages, each round timed with process_time; the best
round is printed (the machine is shared: the best is the least disturbed)."""
from __future__ import annotations

import datetime as dt
import os
import sys
import time
from email.message import EmailMessage

sys.path.insert(0, os.getcwd())

from mailbox_store.store import MailboxInfo  # noqa: E402
from policy.attachments import AttachmentLimits  # noqa: E402
from policy.recipients import MailboxState  # noqa: E402
from policy.trust import TrustList  # noqa: E402
from relay.inbound.pipeline import InboundRequest, decide  # noqa: E402
from tests.web.files import pdf  # noqa: E402

ROUNDS = 5
N = {"10 KB": 400, "500 KB + PDF": 40}
PRO = "dr.martin@test-operator.mssante.fr"
CERT = "CN=mail.test-operator.mssante.fr,O=Operateur test,C=FR"
PATIENT = MailboxInfo(7, "279035121518989", MailboxState.ACTIVE, None, dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc))


def message(kind: str) -> bytes:
    m = EmailMessage()
    m["From"] = f"Dr Martin <{PRO}>"
    m["To"] = f"{PATIENT.ins}@patient.mssante.fr"
    m["Subject"] = "=?utf-8?q?Compte_rendu_d=27examen?="
    m["Message-ID"] = "<bench@test-operator.mssante.fr>"
    m["Disposition-Notification-To"] = PRO
    m.set_content("Bonjour,\n" + "ligne de texte du compte rendu, sans contenu reel.\n" * 190)
    if kind != "10 KB":
        m.add_attachment(pdf(size=500_000), maintype="application", subtype="pdf", filename="cr.pdf")
    return m.as_bytes(policy=m.policy.clone(linesep="\r\n"))


def main() -> None:
    import relay.inbound.pipeline as where
    trust = TrustList.build([("test-operator.mssante.fr", CERT)])
    print(f"code: {os.path.dirname(os.path.dirname(os.path.dirname(where.__file__)))}")
    for kind, n in N.items():
        raw = message(kind)
        req = InboundRequest(raw, (PATIENT,), AttachmentLimits(), CERT, False, trust, "patient.mssante.fr")
        decide(req)  # warm-up
        best = float("inf")
        for _ in range(ROUNDS):
            start = time.process_time()
            for _ in range(n):
                decide(req)
            best = min(best, (time.process_time() - start) / n)
        print(f"{kind:>14}: {len(raw) // 1024} KiB, {best * 1000:.3f} ms CPU per decide (best of {ROUNDS} x {n})")


if __name__ == "__main__":
    main()
