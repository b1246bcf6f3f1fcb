"""Where outbound mail for a domain goes: the static transport map of the config, else
the domain's MX records (RFC 5321 §5.1), through dnspython's asyncio resolver."""
from __future__ import annotations

from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.resolver

from relay.core.config import Listen


class RouteError(Exception):
    """No route. `permanent`: the domain cannot receive mail (bounce); else retry."""

    def __init__(self, message: str, permanent: bool):
        super().__init__(message)
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Hop:
    host: str  # where to connect
    port: int
    tls_name: str  # the name the server certificate must carry


async def route(domain: str, transport: dict[str, Listen], timeout: float = 10.0) -> list[Hop]:
    static = transport.get(domain.lower())
    if static is not None:
        return [Hop(static.host, static.port, static.host)]
    resolver = dns.asyncresolver.Resolver()
    resolver.lifetime = timeout
    try:
        answer = await resolver.resolve(domain, "MX")
    except dns.resolver.NXDOMAIN:
        raise RouteError(f"domain {domain} does not exist", permanent=True) from None
    except dns.resolver.NoAnswer:
        # RFC 5321 §5.1: no MX, the domain itself is the implicit MX
        return [Hop(domain, 25, domain)]
    except (dns.exception.Timeout, dns.resolver.NoNameservers) as e:
        raise RouteError(f"DNS lookup of {domain} failed: {type(e).__name__}", permanent=False) from None
    records = sorted(answer, key=lambda r: r.preference)
    hosts = [str(r.exchange).rstrip(".") for r in records]
    if hosts == [""]:  # RFC 7505 null MX: the domain accepts no mail
        raise RouteError(f"domain {domain} accepts no mail (null MX)", permanent=True)
    return [Hop(h, 25, h) for h in hosts if h]
