"""One delivery attempt over SMTP (aiosmtplib): STARTTLS is mandatory in the MSSanté
space, with our client certificate, the server verified against the IGC-Santé anchors
(DESIGN.md §4 "Who may send in" is what our peers require of us too)."""
from __future__ import annotations

import ssl
from dataclasses import dataclass

import aiosmtplib

from relay.delivery.routing import Hop


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


def _reply(e: aiosmtplib.SMTPResponseException) -> tuple[int, str]:
    return e.code, " ".join(str(e.message).split())[:500]


async def attempt(hops: list[Hop], mail_from: str, rcpt: str, content: bytes, tls: ssl.SSLContext | None,
                  local_hostname: str, timeout: float) -> Outcome:
    """Try each hop in order until one answers; `tls` None: plain SMTP (a smarthost
    on the operator's own network). Never raises for a network or protocol failure."""
    last = Outcome(0, "no route", None)
    for hop in hops:
        client = aiosmtplib.SMTP(hostname=hop.host, port=hop.port, local_hostname=local_hostname,
                                 timeout=timeout, start_tls=False)
        try:
            await client.connect()
            if tls is not None:
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    last = Outcome(0, f"{hop.host} does not offer STARTTLS", hop.host)
                    continue  # never in clear text; another hop may do better
                await client.starttls(server_hostname=hop.tls_name, tls_context=tls)
            refused, _ = await client.sendmail(mail_from, [rcpt], content)
            if rcpt in refused:
                code, text = refused[rcpt].code, refused[rcpt].message
                return Outcome(code, text, hop.host)
            return Outcome(250, "ok", hop.host)
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
            last = Outcome(code, text, hop.host)  # 4xx greeting or EHLO: try the next hop
        except (aiosmtplib.SMTPException, OSError, ssl.SSLError) as e:
            last = Outcome(0, f"{hop.host}:{hop.port}: {type(e).__name__}: {e}"[:500], hop.host)
        finally:
            try:
                if client.is_connected:
                    await client.quit()
            except (aiosmtplib.SMTPException, OSError):
                client.close()
    return last
