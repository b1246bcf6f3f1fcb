"""One delivery attempt over SMTP (aiosmtplib): STARTTLS is mandatory in the MSSanté
space, with our client certificate, the server verified against the IGC-Santé anchors
(DESIGN.md §4 "Who may send in" is what our peers require of us too).

Implementation notes:
- The transaction's result is final at the reply to the end of DATA: once the server
  said 250 there, the message is its responsibility (RFC 5321 §4.1.1.4, §6.1), whatever
  happens to QUIT (§4.1.1.10: QUIT only closes the channel). So `settle` is awaited with
  the result while the connection is still open, before QUIT: a crash (SIGKILL) during
  QUIT's round trip no longer leaves a delivered entry queued to be sent twice. The
  window for a duplicate is now only the reply-to-commit gap (at-least-once, as every MTA).
- QUIT is polite, bounded (`QUIT_TIMEOUT`) and its failures ignored: a server that
  delays or drops it holds our slot a few seconds, never the entry.
"""
from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import aiosmtplib

from relay.delivery.routing import Hop

# seconds we wait for the reply to QUIT, at most (`timeout` when smaller): the result is
# already settled, waiting longer would only hold a delivery slot
QUIT_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Outcome:
    code: int  # the SMTP reply to the recipient (or to DATA); 0: no reply (network, TLS)
    text: str
    remote_mta: str | None

    @property
    def delivered(self) -> bool:
        return 200 <= self.code < 300

    @property
    def permanent(self) -> bool:
        return 500 <= self.code < 600


Settle = Callable[[Outcome], Awaitable[None]]


class _NextHop(Exception):
    """This hop gave no final answer for the message; another hop may."""

    def __init__(self, outcome: Outcome):
        super().__init__(outcome.text)
        self.outcome = outcome


def _reply(e: aiosmtplib.SMTPResponseException) -> tuple[int, str]:
    return e.code, " ".join(str(e.message).split())[:500]


async def _transaction(client: aiosmtplib.SMTP, hop: Hop, mail_from: str, rcpt: str, content: bytes,
                       tls: ssl.SSLContext | None) -> Outcome:
    """The final outcome of the message on this hop, or _NextHop."""
    try:
        await client.connect()
        if tls is not None:
            await client.ehlo()
            if not client.supports_extension("starttls"):
                # never in clear text; another hop may do better
                raise _NextHop(Outcome(0, f"{hop.host} does not offer STARTTLS", hop.host))
            await client.starttls(server_hostname=hop.tls_name, tls_context=tls)
        refused, _ = await client.sendmail(mail_from, [rcpt], content)
        if rcpt in refused:
            return Outcome(refused[rcpt].code, refused[rcpt].message, hop.host)
        return Outcome(250, "ok", hop.host)  # the final 250 of DATA (RFC 5321 §4.1.1.4)
    except aiosmtplib.SMTPRecipientsRefused as e:
        refusal = e.recipients[0] if e.recipients else None
        return Outcome(refusal.code, refusal.message, hop.host) if refusal else Outcome(0, "refused", hop.host)
    except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPDataError) as e:
        code, text = _reply(e)
        return Outcome(code, text, hop.host)
    except aiosmtplib.SMTPResponseException as e:
        code, text = _reply(e)
        if code >= 500:
            return Outcome(code, text, hop.host)
        raise _NextHop(Outcome(code, text, hop.host)) from None  # 4xx greeting or EHLO
    except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as e:
        raise _NextHop(Outcome(0, f"{hop.host}:{hop.port}: {type(e).__name__}: {e}"[:500], hop.host)) from None


async def _close(client: aiosmtplib.SMTP, timeout: float) -> None:
    try:
        if client.is_connected:
            await client.quit(timeout=min(timeout, QUIT_TIMEOUT))
    except (aiosmtplib.SMTPException, OSError):
        client.close()


async def attempt(hops: list[Hop], mail_from: str, rcpt: str, content: bytes, tls: ssl.SSLContext | None,
                  local_hostname: str, timeout: float, settle: Settle | None = None) -> Outcome:
    """Try each hop in order until one answers; `tls` None: plain SMTP (a smarthost
    on the operator's own network). Never raises for a network or protocol failure.

    `settle`, when given, is awaited with the final answer of a hop (the reply to
    DATA, or the refusal of MAIL/RCPT) before QUIT; an outcome where no hop answered
    (`no route`, every hop unreachable) is only returned."""
    last = Outcome(0, "no route", None)
    for hop in hops:
        client = aiosmtplib.SMTP(hostname=hop.host, port=hop.port, local_hostname=local_hostname,
                                 timeout=timeout, start_tls=False)
        final: Outcome | None = None
        try:
            final = await _transaction(client, hop, mail_from, rcpt, content, tls)
            if settle is not None:
                await settle(final)
        except _NextHop as e:
            last = e.outcome
        finally:
            await _close(client, timeout)
        if final is not None:
            return final
    return last
