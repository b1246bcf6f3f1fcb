"""A browser-less webmail client for the tests: aiohttp over real TLS on loopback,
with a cookie jar (Secure cookies: only over https) and the forms' CSRF tokens."""
from __future__ import annotations

import re
import ssl
from pathlib import Path
from typing import Any

import aiohttp

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


class WebClient:
    def __init__(self, port: int, ca: Path):
        self.base = f"https://127.0.0.1:{port}"
        ctx = ssl.create_default_context(cafile=str(ca))
        self.http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True),
                                          connector=aiohttp.TCPConnector(ssl=ctx),
                                          timeout=aiohttp.ClientTimeout(total=60))
        self.csrf = ""

    async def close(self) -> None:
        await self.http.close()

    async def get(self, path: str, **kw: Any) -> tuple[int, str, Any]:
        async with self.http.get(self.base + path, allow_redirects=kw.pop("allow_redirects", True), **kw) as r:
            body = await r.read()
            text = body.decode("utf-8", "replace")
            m = CSRF.search(text)
            if m:
                self.csrf = m.group(1)
            return r.status, text, r

    async def get_bytes(self, path: str) -> tuple[int, bytes, Any]:
        async with self.http.get(self.base + path) as r:
            return r.status, await r.read(), r

    async def post(self, path: str, data: Any = None, csrf: bool = True, **kw: Any) -> tuple[int, str, Any]:
        if isinstance(data, aiohttp.FormData):
            form = data
        else:
            form = dict(data or {})
            if csrf:
                form = {"csrf": self.csrf, **form}
        async with self.http.post(self.base + path, data=form, allow_redirects=kw.pop("allow_redirects", True),
                                  **kw) as r:
            text = (await r.read()).decode("utf-8", "replace")
            m = CSRF.search(text)
            if m:
                self.csrf = m.group(1)
            return r.status, text, r

    async def login(self, login: str, password: str) -> tuple[int, str, Any]:
        await self.get("/")
        return await self.post("/", {"identifiant": login, "mot_de_passe": password})

    def multipart(self, fields: dict[str, str], file: tuple[str, bytes, str] | None = None) -> aiohttp.FormData:
        form = aiohttp.FormData()
        form.add_field("csrf", self.csrf)
        for k, v in fields.items():
            form.add_field(k, v)
        if file is not None:
            name, data, ctype = file
            form.add_field("piece_jointe", data, filename=name, content_type=ctype)
        return form
