"""Server-side webmail sessions: the browser holds only a random id (secrets, 256
bits) in a Secure, HttpOnly, SameSite=Strict cookie; everything else stays here.

- A new id at every login (session fixation: an id known before login is worthless
  after it); logout and expiry forget it.
- Ends after `idle` seconds without a request and `longest` seconds after login,
  whichever comes first (web.session_idle, web.session_max).
- Each session has its own CSRF token (secrets), compared in constant time.
- At most `capacity` sessions: beyond, the least recently used is dropped (memory is
  bounded whatever the number of logins).
"""
from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field


@dataclass
class WebSession:
    id: str
    user_id: int
    user_ins: str
    csrf: str
    created: float
    seen: float
    space_ins: str  # whose space is shown: the user's own or a child's
    flash: list[str] = field(default_factory=list)  # one-time notices for the next page
    streams: int = 0  # open SSE connections


class SessionStore:
    def __init__(self, idle: float, longest: float, capacity: int = 10_000):
        self.idle = idle
        self.longest = longest
        self.capacity = capacity
        self._sessions: OrderedDict[str, WebSession] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, user_id: int, user_ins: str, now: float | None = None) -> WebSession:
        now = time.monotonic() if now is None else now
        s = WebSession(secrets.token_urlsafe(32), user_id, user_ins, secrets.token_urlsafe(32), now, now, user_ins)
        self._sessions[s.id] = s
        while len(self._sessions) > self.capacity:
            self._sessions.popitem(last=False)
        return s

    def expired(self, s: WebSession, now: float) -> bool:
        return now - s.seen > self.idle or now - s.created > self.longest

    def get(self, sid: str | None, now: float | None = None, touch: bool = True) -> WebSession | None:
        """The live session of that id (its idle clock restarted when `touch`), else None."""
        if not sid:
            return None
        s = self._sessions.get(sid)
        if s is None:
            return None
        now = time.monotonic() if now is None else now
        if self.expired(s, now):
            del self._sessions[sid]
            return None
        if touch:
            s.seen = now
            self._sessions.move_to_end(sid)
        return s

    def alive(self, s: WebSession, now: float | None = None) -> bool:
        """Whether a session held by a long request (SSE) is still valid."""
        now = time.monotonic() if now is None else now
        return self._sessions.get(s.id) is s and not self.expired(s, now)

    def drop(self, sid: str) -> None:
        self._sessions.pop(sid, None)

    def drop_user(self, user_id: int) -> None:
        """Every session of one account (password changed, space closed)."""
        for sid in [k for k, s in self._sessions.items() if s.user_id == user_id]:
            del self._sessions[sid]


def same_token(expected: str, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(expected.encode(), given.encode())
