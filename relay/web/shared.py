"""What the webmail's server (app.py) and its page modules share, below both so that
no page imports the server: the cookie names, the CSP of a framed attachment, the
client's address, and the mark of a page served without a session."""
from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

SESSION_COOKIE = "__Host-mssante"
LOGIN_COOKIE = "__Host-mssante-login"  # CSRF of the login form (double submit: no session yet)
# an attachment shown inside our conversation page: framed by us only, runs nothing
VIEW_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'self'"


def client_ip(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return peer[0] if peer else ""


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def public(handler: Handler) -> Handler:
    handler.public = True  # type: ignore[attr-defined]
    return handler
