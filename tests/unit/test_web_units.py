"""The webmail's pure parts: [web] configuration, server-side sessions, the HTML
sanitiser, dossier categories, the audit log in French, autoconfig XML."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dossier_bridge.categories import BIOLOGY, IMAGING, OTHERS, PRESCRIPTIONS, REPORTS, category
from relay.core.config import ConfigError, Listen, load_config
from relay.web.autoconfig import config_xml
from relay.web.sanitize import clean_html
from relay.web.sessions import SessionStore, same_token


@pytest.fixture(scope="module")
def template(dev_instance: Path) -> str:
    return (dev_instance / "relay.toml").read_text(encoding="utf-8")


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    p = tmp_path / "relay.toml"
    p.write_text(text, encoding="utf-8")
    return load_config(p)


def test_web_defaults(dev_instance: Path) -> None:
    web = load_config(dev_instance / "relay.toml").web
    assert web is not None
    assert web.listen == Listen("127.0.0.1", 8443)
    assert (web.session_idle, web.session_max, web.max_sessions) == (900.0, 43200.0, 10000)
    assert web.public_host == "mx.patient.mssante.fr"


@pytest.mark.parametrize("old,new,field", [
    ('listen = "127.0.0.1:8443"', 'listen = "nowhere"', "web.listen"),
    ("session_idle = 900", "session_idle = 0", "web.session_idle"),
    ("session_max = 43200", "session_max = 60", "web.session_max"),
    ("session_max = 43200", 'session_max = "long"', "web.session_max"),
    ("max_sessions = 10000", "max_sessions = -1", "web.max_sessions"),
    ('public_host = ""', 'public_host = "not a host"', "web.public_host"),
])
def test_web_errors_name_the_field(tmp_path: Path, template: str, old: str, new: str, field: str) -> None:
    assert template.count(old) == 1, old
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        _load(tmp_path, template.replace(old, new))


def test_sessions_rotate_expire_and_stay_bounded() -> None:
    store = SessionStore(idle=10, longest=100, capacity=3)
    a = store.create(1, "A", now=0)
    b = store.create(1, "A", now=0)
    assert a.id != b.id and a.csrf != b.csrf and len(a.id) >= 43
    assert store.get(a.id, now=9) is a
    assert store.get(a.id, now=18) is a  # touched at 9
    assert store.get(a.id, now=29) is None  # idle 11 s
    c = store.create(2, "B", now=0)
    for t in range(5, 101, 5):
        assert store.get(c.id, now=t) is c
    assert store.get(c.id, now=101) is None  # session_max, however active
    for i in range(5):
        store.create(3, "C", now=200)
    assert len(store) == 3
    store.drop_user(3)
    assert len(store) == 0
    assert same_token("abc", "abc") and not same_token("abc", "abd") and not same_token("abc", None)


def test_sanitiser() -> None:
    out = clean_html('<p style="color:red" onmouseover="x()">Bonjour</p><script>alert(1)</script>'
                     '<style>body{display:none}</style><img src="http://t.example/p.gif" alt="Logo">'
                     '<img src="data:image/png;base64,AAAA"><a href="javascript:x()">a</a>'
                     '<a href="https://ok.example/">b</a><form action="https://x"><input name=p></form>')
    assert "Bonjour" in out and "Logo" in out
    for bad in ("style", "onmouseover", "script", "alert", "<img", "t.example", "data:", "javascript", "<form",
                "<input", "display:none"):
        assert bad not in out, bad
    assert 'href="https://ok.example/" rel="noopener noreferrer nofollow"' in out


@pytest.mark.parametrize("meta,heading", [
    ({"type_code": "11502-2"}, BIOLOGY),
    ({"category": "Imagerie médicale"}, IMAGING),
    ({"category": "Prescription"}, PRESCRIPTIONS),
    ({"type_display": "Compte rendu opératoire"}, REPORTS),
    ({"category": None}, OTHERS),
])
def test_categories(meta: dict, heading: str) -> None:
    assert category(meta) == heading


def test_autoconfig_xml() -> None:
    root = ET.fromstring(config_xml("patient.mssante.fr", "mx.patient.mssante.fr",
                                    {"imap": 143, "imaps": 993, "submission": 587, "submissions": 465}))
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    servers = [(s.get("type"), s.findtext("port"), s.findtext("socketType")) for s in root.find("emailProvider")
               if s.tag.endswith("Server")]
    assert servers == [("imap", "993", "SSL"), ("imap", "143", "STARTTLS"), ("smtp", "465", "SSL"),
                       ("smtp", "587", "STARTTLS")]
