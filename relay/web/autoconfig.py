"""Mozilla autoconfig (Thunderbird, K-9/Thunderbird for Android, and others): the
client asks https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml (or
autoconfig.<domain>/mail/config-v1.1.xml) and learns our IMAP and submission servers,
so a patient types only their address and password. Format:
https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat"""
from __future__ import annotations

from typing import TYPE_CHECKING
from xml.sax.saxutils import escape

from aiohttp import web

from relay.web.shared import public

if TYPE_CHECKING:
    from relay.web.app import Web


def config_xml(domain: str, host: str, ports: dict[str, int]) -> str:
    def server(tag: str, kind: str, port: int, socket: str) -> str:
        return (f'    <{tag} type="{kind}">\n'
                f"      <hostname>{escape(host)}</hostname>\n"
                f"      <port>{port}</port>\n"
                f"      <socketType>{socket}</socketType>\n"
                "      <authentication>password-cleartext</authentication>\n"
                "      <username>%EMAILADDRESS%</username>\n"
                f"    </{tag}>\n")

    return ('<?xml version="1.0" encoding="UTF-8"?>\n'
            '<clientConfig version="1.1">\n'
            f'  <emailProvider id="{escape(domain)}">\n'
            f"    <domain>{escape(domain)}</domain>\n"
            "    <displayName>Messagerie de sante (MSSante patient)</displayName>\n"
            "    <displayShortName>MSSante</displayShortName>\n"
            # implicit TLS first: the client tries servers in this order (RFC 8314 §3.1)
            + server("incomingServer", "imap", ports["imaps"], "SSL")
            + server("incomingServer", "imap", ports["imap"], "STARTTLS")
            + server("outgoingServer", "smtp", ports["submissions"], "SSL")
            + server("outgoingServer", "smtp", ports["submission"], "STARTTLS")
            + "  </emailProvider>\n</clientConfig>\n")


def routes(app: web.Application, w: Web) -> None:
    @public
    async def autoconfig(request: web.Request) -> web.StreamResponse:
        cfg = w.rt.config
        ports = {"imap": cfg.imap_listen.port, "imaps": cfg.imap_listen_tls.port,
                 "submission": cfg.submission_listen.port, "submissions": cfg.submission_listen_tls.port}
        ports.update({k: v for k, v in w.ports().items() if v})  # the bound ports (listen on port 0)
        assert cfg.web is not None
        return web.Response(text=config_xml(cfg.domain, cfg.web.public_host, ports), content_type="application/xml",
                            charset="utf-8", headers={"Cache-Control": "max-age=3600"})

    app.router.add_get("/.well-known/autoconfig/mail/config-v1.1.xml", autoconfig)
    app.router.add_get("/mail/config-v1.1.xml", autoconfig)
