"""relay.toml: loading and validating the configuration.

Every error names the bad field (`mx.listen: ...`) so an operator knows what to fix.
"""
from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from certs.cps import CardProfile, card_profile
from certs.tls import PROFILES
from mailbox_store import engines
from policy.attachments import AttachmentLimits
from policy.headers import HeaderLimits
from relay.core.configkeys import Tracked, unknown_key_error

ENV_CONFIG = "MSSANTE_RELAY_CONFIG"
MAX_IMAP_PROCESSES = 16  # imap.processes: one per core is the point; more only share them


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Listen:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class DeliveryConfig:
    """[delivery]: the outbound queue runner (issue 3 §3)."""

    transport: dict[str, Listen]  # domain -> host:port; else DNS MX (RFC 5321 §5.1)
    backoff: tuple[float, ...]  # seconds before attempt 2, 3, ...; the last one repeats
    lifetime: float  # seconds before a message that cannot be delivered bounces
    concurrency: int  # deliveries in flight
    per_destination: int  # deliveries in flight to one domain
    timeout: float  # per SMTP command (RFC 5321 §4.5.3.2 asks for minutes; we are less patient)
    client_cert: Path
    client_key: Path
    auto_reply_per_sender: int  # TEST acknowledgements per sender ...
    auto_reply_window: float  # ... per this many seconds (RFC 3834 §2)
    lease: float = 60.0  # seconds a killed node's queue entries wait for another node (issue 14)


@dataclass(frozen=True)
class AuthConfig:
    """[auth]: login throttling (policy/throttle.py, relay/auth/login.py; issue 10 §1)."""

    failures_per_account_source: int = 5  # free failures of one account from one source network
    failures_per_source: int = 20  # free failures of one source network, all accounts
    first_delay: float = 1.0  # seconds required after the first failure beyond the free ones; doubles
    max_delay: float = 900.0  # cap of the doubling
    forget_after: float = 3600.0  # a key without failure for this long starts from zero
    failure_reply_delay: float = 1.0  # every failed answer waits this long (one session guesses slowly)
    hash_threads: int = 2  # argon2 checks in parallel (their own pool: DESIGN.md §6)


def _cores(share: float, floor: int) -> int:
    return max(floor, min(8, round((os.cpu_count() or 1) * share)))


@dataclass(frozen=True)
class WorkersConfig:
    """[workers]: bounded pools off the event loop (relay/core/pools.py; issue 15 §2-3)."""

    parse: int = field(default_factory=lambda: _cores(1.0, 1))  # MIME inspection of received mail
    crypto: int = field(default_factory=lambda: _cores(1.0, 1))  # AES-GCM of whole messages, documents
    dkim: int = field(default_factory=lambda: _cores(1.0, 2))  # DKIM sign and verify (DNS waits too)
    parse_mode: str = "threads"  # "threads" or "processes" (relay/core/pools.py says which wins and why)
    max_bytes_in_flight: int = 268_435_456  # message bytes held by all SMTP DATA at once (MX + submission)
    bytes_wait: float = 30.0  # seconds a new DATA waits for that budget before 452 4.3.1


@dataclass(frozen=True)
class WebConfig:
    """[web]: the webmail (issue 11) over HTTPS with tls.cert."""
    listen: Listen
    session_idle: float  # seconds without a request before a session ends
    session_max: float  # seconds after login a session ends whatever happens
    max_sessions: int  # server-side sessions held at once (oldest dropped beyond)
    public_host: str  # host name in autoconfig (IMAP/submission server), default server.hostname


@dataclass(frozen=True)
class Config:
    path: Path
    hostname: str
    domain: str
    mx_listen: Listen
    max_message_size: int
    max_recipients: int
    max_sessions_per_ip: int
    mx_timeout: float
    shutdown_grace: float
    imap_listen: Listen
    imap_listen_tls: Listen
    imap_reuse_port: bool
    imap_processes: int
    imap_max_line: int
    imap_max_literal: int
    imap_idle_timeout: float
    imap_max_sessions_per_ip: int
    imap_max_sessions_per_account: int
    imap_command_rate: float
    imap_command_burst: int
    admin_listen: Listen
    trust_list_max_age_days: float
    archive_dir: Path
    archive_recipient: str
    gnupg_home: Path
    archive_retention_years: int
    tls_profile: str
    tls_cert: Path
    tls_key: Path
    trust_anchors: Path
    crls: tuple[Path, ...]
    trust_list: Path
    trust_list_require_digest: bool
    store_url: str
    master_key: Path
    group_commit_max: int
    mailbox_cache_ttl: float
    log_level: str
    attachments: AttachmentLimits = AttachmentLimits()
    submission_listen: Listen = Listen("127.0.0.1", 2587)
    submission_listen_tls: Listen = Listen("127.0.0.1", 2465)
    delivery: "DeliveryConfig | None" = None
    dkim_selector: str = "mssante"
    dkim_key: Path = Path("keys/dkim.key")
    notify_smarthost: Listen | None = None
    notify_from: str = "ne-pas-repondre@patient.mssante.fr"
    notify_window: float = 3600.0
    notify_webmail_url: str = ""
    auth: AuthConfig = AuthConfig()
    # [imap] bounds on time and on bytes in flight (issue 10)
    imap_command_timeout: float = 120.0
    imap_literal_timeout: float = 600.0
    imap_max_append_bytes_per_account: int = 104_857_600
    imap_max_append_bytes_in_flight: int = 536_870_912
    imap_qresync_expunged_keep: int = 1000  # [imap] expunged UIDs kept per folder for QRESYNC (issue 12)
    mx_data_timeout: float = 600.0  # the whole DATA transfer, MX and submission (451 4.4.2 beyond)
    workers: WorkersConfig = field(default_factory=WorkersConfig)
    store_key_cache: int = 10_000  # unwrapped mailbox keys kept (least recently used dropped)
    header_limits: HeaderLimits = HeaderLimits()
    store_min_free_bytes: int = 104_857_600  # below it: 452 4.3.1 at MAIL, /healthz 503
    web: "WebConfig | None" = None
    # [trust_list] where `trustlist update` fetches the published list (issue 16 §3)
    trust_list_url: str = ""
    trust_list_fetch_ca: Path | None = None  # CA bundle for that HTTPS server; None: the system's
    # the file as read (reload compares it key by key to name what changed)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    spool_dir: Path | None = None  # [store] spool_dir: IMAP APPENDs being received; None = <config dir>/spool
    store_password_file: Path | None = None  # [store] password_file: PostgreSQL's password; None = PGPASSFILE
    # [pro] professionals' card certificates (issue 18); load_config sets them, default tls.*
    pro_trust_anchors: Path | None = None
    pro_crls: tuple[Path, ...] | None = None
    cps: CardProfile = CardProfile()  # [cps]: the CPS card's application, files and keys (certs/cps.py)

    @property
    def base_dir(self) -> Path:
        return self.path.parent


def _get(tbl: dict[str, Any], section: str, key: str, typ: type | tuple[type, ...], default: Any = None) -> Any:
    sec = tbl.get(section, {})
    if not isinstance(sec, dict):
        raise ConfigError(f"{section}: must be a table")
    if key not in sec:
        if default is None:
            raise ConfigError(f"{section}.{key}: missing")
        return default
    value = sec[key]
    numeric = typ in (int, float) or (isinstance(typ, tuple) and bool(set(typ) & {int, float}))
    if isinstance(value, bool) and numeric:  # TOML true is an int to Python
        raise ConfigError(f"{section}.{key}: expected a number, got {value!r}")
    if not isinstance(value, typ):
        name = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        raise ConfigError(f"{section}.{key}: expected {name}, got {value!r}")
    return value


def parse_listen(field: str, text: str) -> Listen:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 <= int(port) <= 65535:
        raise ConfigError(f"{field}: expected host:port, got {text!r}")
    return Listen(host, int(port))


def _bounded(field: str, value: int, low: int, high: int) -> int:
    if not low <= value <= high:
        raise ConfigError(f"{field}: must be between {low} and {high}, got {value!r}")
    return value


def _positive(field: str, value: int | float) -> int | float:
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"{field}: must be > 0, got {value!r}")
    return value


_DOMAIN_RE = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")


def _domain_name(field: str, value: str) -> str:
    """An ASCII host name: it is written into every greeting and trace header."""
    if not _DOMAIN_RE.match(value):
        raise ConfigError(f"{field}: expected an ASCII domain name, got {value!r}")
    return value


def _domain_label(field: str, value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?", value):
        raise ConfigError(f"{field}: expected a DNS label, got {value!r}")
    return value


def _attachment_limits(data: dict[str, Any]) -> AttachmentLimits:
    """[attachments]: each field of AttachmentLimits, a positive integer."""
    defaults = AttachmentLimits()
    values = {name: int(_positive(f"attachments.{name}", _get(data, "attachments", name, int,
                                                               getattr(defaults, name))))
              for name in AttachmentLimits.__dataclass_fields__}
    return AttachmentLimits(**values)


def _auth(data: dict[str, Any]) -> AuthConfig:
    d = AuthConfig()
    section = data.get("auth", {})
    if not isinstance(section, dict):
        raise ConfigError("auth: must be a table")

    def num(key: str, typ: type | tuple[type, ...], zero_ok: bool = False) -> Any:
        v = _get(data, "auth", key, typ, getattr(d, key))
        if zero_ok and (not math.isfinite(v) or v < 0):
            raise ConfigError(f"auth.{key}: must be >= 0, got {v!r}")
        return v if zero_ok else _positive(f"auth.{key}", v)

    cfg = AuthConfig(
        failures_per_account_source=int(num("failures_per_account_source", int)),
        failures_per_source=int(num("failures_per_source", int)),
        first_delay=float(num("first_delay", (int, float))),
        max_delay=float(num("max_delay", (int, float))),
        forget_after=float(num("forget_after", (int, float))),
        failure_reply_delay=float(num("failure_reply_delay", (int, float), zero_ok=True)),
        hash_threads=int(num("hash_threads", int)),
    )
    if cfg.max_delay < cfg.first_delay:
        raise ConfigError(f"auth.max_delay: must be >= auth.first_delay ({cfg.first_delay}), got {cfg.max_delay}")
    return cfg


def _workers(data: dict[str, Any]) -> WorkersConfig:
    d = WorkersConfig()
    values = {k: _positive(f"workers.{k}", _get(data, "workers", k, (int, float) if k == "bytes_wait" else int,
                                                  getattr(d, k)))
              for k in WorkersConfig.__dataclass_fields__ if k != "parse_mode"}
    mode = _get(data, "workers", "parse_mode", str, d.parse_mode)
    if mode not in ("threads", "processes"):
        raise ConfigError(f"workers.parse_mode: expected threads or processes, got {mode!r}")
    return WorkersConfig(**{k: float(v) if k == "bytes_wait" else int(v) for k, v in values.items()},
                         parse_mode=mode)


def _header_limits(data: dict[str, Any]) -> HeaderLimits:
    """[mx] max_header_field_bytes, max_header_fields, max_header_bytes."""
    d = HeaderLimits()
    return HeaderLimits(**{name: int(_positive(f"mx.{key}", _get(data, "mx", key, int, getattr(d, name))))
                           for name, key in (("max_field_bytes", "max_header_field_bytes"),
                                             ("max_fields", "max_header_fields"),
                                             ("max_section_bytes", "max_header_bytes"))})


def _delivery(data: dict[str, Any], base: Path) -> DeliveryConfig:
    raw = _get(data, "delivery", "transport", dict, {})
    transport = {}
    for domain, target in raw.items():
        if not isinstance(target, str):
            raise ConfigError(f"delivery.transport.{domain}: expected \"host:port\", got {target!r}")
        transport[_domain_name(f"delivery.transport.{domain}", domain).lower()] = \
            parse_listen(f"delivery.transport.{domain}", target)
    backoff = _get(data, "delivery", "backoff", list, [60, 300, 900, 1800, 3600, 7200, 14400])
    if not backoff:
        raise ConfigError("delivery.backoff: must list at least one delay")
    for i, b in enumerate(backoff):
        if isinstance(b, bool) or not isinstance(b, (int, float)):
            raise ConfigError(f"delivery.backoff[{i}]: expected seconds, got {b!r}")
        _positive(f"delivery.backoff[{i}]", b)

    def p(key: str, default: str) -> Path:
        v = Path(_get(data, "delivery", key, str, default))
        return v if v.is_absolute() else base / v

    return DeliveryConfig(
        transport=transport, backoff=tuple(float(b) for b in backoff),
        lifetime=float(_positive("delivery.lifetime_days",
                                 _get(data, "delivery", "lifetime_days", (int, float), 5))) * 86400,
        concurrency=int(_positive("delivery.concurrency", _get(data, "delivery", "concurrency", int, 16))),
        per_destination=int(_positive("delivery.per_destination",
                                      _get(data, "delivery", "per_destination", int, 4))),
        timeout=float(_positive("delivery.timeout", _get(data, "delivery", "timeout", (int, float), 60))),
        client_cert=p("client_cert", "pki/server.pem"), client_key=p("client_key", "pki/server.key"),
        auto_reply_per_sender=int(_positive("delivery.auto_reply_per_sender",
                                            _get(data, "delivery", "auto_reply_per_sender", int, 10))),
        auto_reply_window=float(_positive("delivery.auto_reply_window",
                                          _get(data, "delivery", "auto_reply_window", (int, float), 3600))),
        lease=float(_positive("delivery.lease", _get(data, "delivery", "lease", (int, float), 60))),
    )


def _web(data: dict[str, Any], hostname: str) -> WebConfig:
    idle = float(_positive("web.session_idle", _get(data, "web", "session_idle", (int, float), 900)))
    longest = float(_positive("web.session_max", _get(data, "web", "session_max", (int, float), 43200)))
    if longest < idle:
        raise ConfigError(f"web.session_max: must be >= web.session_idle ({idle:g}), got {longest:g}")
    public = _get(data, "web", "public_host", str, "") or hostname
    return WebConfig(listen=parse_listen("web.listen", _get(data, "web", "listen", str, "127.0.0.1:8443")),
                     session_idle=idle, session_max=longest,
                     max_sessions=int(_positive("web.max_sessions", _get(data, "web", "max_sessions", int, 10000))),
                     public_host=_domain_name("web.public_host", public))


def _https_url(field: str, url: str) -> str:
    """"" or an https:// URL: the trust list decides who may send, never fetched in clear."""
    if url and not re.fullmatch(r"https://[^\s/?#]+(/\S*)?", url):
        raise ConfigError(f"{field}: expected an https:// URL, got {url!r}")
    return url
def _pro(data: dict[str, Any], base: Path, anchors: Path, crls: tuple[Path, ...]) -> tuple[Path, tuple[Path, ...]]:
    """[pro] trust_anchors and crls: "" and absent mean tls.trust_anchors and tls.crls."""
    given = _get(data, "pro", "trust_anchors", str, "")
    pro_crls = _get(data, "pro", "crls", list, []) if "crls" in data.get("pro", {}) else None
    for i, c in enumerate(pro_crls or []):
        if not isinstance(c, str):
            raise ConfigError(f"pro.crls[{i}]: expected a path string, got {c!r}")
    return ((base / given if given else anchors),
            crls if pro_crls is None else tuple(base / c for c in pro_crls))
def _cps(data: dict[str, Any]) -> CardProfile:
    try:
        return card_profile(data.get("cps", {}))
    except ValueError as e:
        raise ConfigError(str(e)) from None


def resolve_store_url(url: str, base: Path) -> str:
    """A relative SQLite path in the URL is relative to the config file's folder.
    ConfigError for an engine we do not run or a password in the URL (engines.py)."""
    problem = engines.url_problem(url)
    if problem is not None:
        raise ConfigError(f"store.url: {problem}")
    prefix = "sqlite+aiosqlite:///"
    if url.startswith(prefix):
        p = Path(url[len(prefix):])
        if not p.is_absolute():
            return prefix + str((base / p).resolve())
    return url


def _store_password_file(data: Any, base: Path) -> Path | None:
    given = _get(data, "store", "password_file", str, "")
    if not given:
        return None
    return Path(given) if Path(given).is_absolute() else base / given


def load_config(path: Path) -> Config:
    path = path.resolve()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} not found") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    raw, data = data, Tracked(data)  # records the keys asked for: the rest is unknown
    base = path.parent

    def p(section: str, key: str, default: str) -> Path:
        v = Path(_get(data, section, key, str, default))
        return v if v.is_absolute() else base / v

    profile = _get(data, "tls", "profile", str, "default")
    if profile not in PROFILES:
        raise ConfigError(f"tls.profile: expected one of {', '.join(PROFILES)}, got {profile!r}")
    crls = _get(data, "tls", "crls", list, [])
    for i, c in enumerate(crls):
        if not isinstance(c, str):
            raise ConfigError(f"tls.crls[{i}]: expected a path string, got {c!r}")
    level = _get(data, "log", "level", str, "info").lower()
    ttl = _get(data, "store", "mailbox_cache_ttl", (int, float), 1.0)
    if not math.isfinite(ttl) or ttl < 0:
        raise ConfigError(f"store.mailbox_cache_ttl: must be >= 0, got {ttl!r}")
    smarthost = _get(data, "notifications", "smarthost", str, "")
    min_free = _get(data, "store", "min_free_bytes", int, 104_857_600)
    if min_free < 0:
        raise ConfigError(f"store.min_free_bytes: must be >= 0, got {min_free!r}")
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log.level: expected debug|info|warning|error, got {level!r}")
    pro_anchors, pro_crls = _pro(data, base, p("tls", "trust_anchors", "pki/ca.pem"), tuple(base / c for c in crls))
    config = Config(
        path=path,
        hostname=_domain_name("server.hostname", _get(data, "server", "hostname", str, "mx.patient.mssante.fr")),
        domain=_domain_name("server.domain", _get(data, "server", "domain", str, "patient.mssante.fr")).lower(),
        mx_listen=parse_listen("mx.listen", _get(data, "mx", "listen", str, "127.0.0.1:2525")),
        max_message_size=int(_positive("mx.max_message_size",
                                       _get(data, "mx", "max_message_size", int, 26_214_400))),
        max_recipients=int(_positive("mx.max_recipients", _get(data, "mx", "max_recipients", int, 100))),
        max_sessions_per_ip=int(_positive("mx.max_sessions_per_ip",
                                          _get(data, "mx", "max_sessions_per_ip", int, 50))),
        mx_timeout=float(_positive("mx.timeout", _get(data, "mx", "timeout", (int, float), 300))),
        shutdown_grace=float(_positive("mx.shutdown_grace",
                                       _get(data, "mx", "shutdown_grace", (int, float), 30))),
        imap_listen=parse_listen("imap.listen", _get(data, "imap", "listen", str, "127.0.0.1:2143")),
        imap_listen_tls=parse_listen("imap.listen_tls", _get(data, "imap", "listen_tls", str, "127.0.0.1:2993")),
        imap_reuse_port=_get(data, "imap", "reuse_port", bool, False),
        imap_processes=_bounded("imap.processes", _get(data, "imap", "processes", int, 1), 1, MAX_IMAP_PROCESSES),
        imap_max_line=int(_positive("imap.max_line", _get(data, "imap", "max_line", int, 65536))),
        imap_max_literal=int(_positive("imap.max_literal", _get(data, "imap", "max_literal", int, 26_214_400))),
        imap_idle_timeout=float(_positive("imap.idle_timeout",
                                          _get(data, "imap", "idle_timeout", (int, float), 1800))),
        imap_max_sessions_per_ip=int(_positive("imap.max_sessions_per_ip",
                                               _get(data, "imap", "max_sessions_per_ip", int, 50))),
        imap_max_sessions_per_account=int(_positive("imap.max_sessions_per_account",
                                                    _get(data, "imap", "max_sessions_per_account", int, 20))),
        imap_command_rate=float(_positive("imap.command_rate",
                                          _get(data, "imap", "command_rate", (int, float), 50))),
        imap_command_burst=int(_positive("imap.command_burst", _get(data, "imap", "command_burst", int, 500))),
        imap_command_timeout=float(_positive("imap.command_timeout",
                                             _get(data, "imap", "command_timeout", (int, float), 120))),
        imap_literal_timeout=float(_positive("imap.literal_timeout",
                                             _get(data, "imap", "literal_timeout", (int, float), 600))),
        imap_max_append_bytes_per_account=int(_positive(
            "imap.max_append_bytes_per_account",
            _get(data, "imap", "max_append_bytes_per_account", int, 104_857_600))),
        imap_max_append_bytes_in_flight=int(_positive(
            "imap.max_append_bytes_in_flight", _get(data, "imap", "max_append_bytes_in_flight", int, 536_870_912))),
        imap_qresync_expunged_keep=int(_positive(
            "imap.qresync_expunged_keep", _get(data, "imap", "qresync_expunged_keep", int, 1000))),
        admin_listen=parse_listen("admin.listen", _get(data, "admin", "listen", str, "127.0.0.1:9325")),
        trust_list_max_age_days=float(_positive("trust_list.max_age_days",
                                                _get(data, "trust_list", "max_age_days", (int, float), 7))),
        archive_dir=p("archive", "dir", "archives"),
        archive_recipient=_get(data, "archive", "gpg_recipient", str, ""),
        gnupg_home=p("archive", "gnupg_home", "keys/gnupg"),
        archive_retention_years=int(_positive("archive.retention_years",
                                              _get(data, "archive", "retention_years", int, 10))),
        tls_profile=profile,
        tls_cert=p("tls", "cert", "pki/server.pem"),
        tls_key=p("tls", "key", "pki/server.key"),
        trust_anchors=p("tls", "trust_anchors", "pki/ca.pem"),
        crls=tuple(Path(c) if Path(c).is_absolute() else base / c for c in crls),
        trust_list=p("trust_list", "path", "trustlist.xml"),
        trust_list_require_digest=_get(data, "trust_list", "require_digest", bool, False),
        store_url=resolve_store_url(_get(data, "store", "url", str, "sqlite+aiosqlite:///relay.db"), base),
        master_key=p("store", "master_key", "keys/master.key"),
        group_commit_max=int(_positive("store.group_commit_max",
                                       _get(data, "store", "group_commit_max", int, 64))),
        mailbox_cache_ttl=float(ttl),
        log_level=level,
        attachments=_attachment_limits(data),
        submission_listen=parse_listen("submission.listen",
                                       _get(data, "submission", "listen", str, "127.0.0.1:2587")),
        submission_listen_tls=parse_listen("submission.listen_tls",
                                           _get(data, "submission", "listen_tls", str, "127.0.0.1:2465")),
        delivery=_delivery(data, base),
        dkim_selector=_domain_label("dkim.selector", _get(data, "dkim", "selector", str, "mssante")),
        dkim_key=p("dkim", "key", "keys/dkim.key"),
        notify_smarthost=parse_listen("notifications.smarthost", smarthost) if smarthost else None,
        notify_from=_get(data, "notifications", "from", str, "ne-pas-repondre@patient.mssante.fr"),
        notify_window=float(_positive("notifications.window",
                                      _get(data, "notifications", "window", (int, float), 3600))),
        notify_webmail_url=_get(data, "notifications", "webmail_url", str, ""),
        auth=_auth(data),
        mx_data_timeout=float(_positive("mx.data_timeout", _get(data, "mx", "data_timeout", (int, float), 600))),
        header_limits=_header_limits(data),
        store_min_free_bytes=min_free,
        web=_web(data, _get(data, "server", "hostname", str, "mx.patient.mssante.fr")),
        trust_list_url=_https_url("trust_list.url", _get(data, "trust_list", "url", str, "")),
        trust_list_fetch_ca=p("trust_list", "fetch_ca", "") if _get(data, "trust_list", "fetch_ca", str, "") else None,
        raw=raw,
        spool_dir=p("store", "spool_dir", "spool"),
        store_password_file=_store_password_file(data, base),
        pro_trust_anchors=pro_anchors,
        pro_crls=pro_crls,
        cps=_cps(data),
        workers=_workers(data),
        store_key_cache=int(_positive("store.key_cache", _get(data, "store", "key_cache", int, 10_000))),
    )
    if (unknown := unknown_key_error(path.name, data)) is not None:
        raise ConfigError(unknown)
    if config.imap_reuse_port and not config.store_url.startswith("postgresql"):
        # a second daemon on the same ports must be a node of the same store: with SQLite
        # each daemon has its own, and a patient's sessions would land in either
        raise ConfigError("imap.reuse_port: only for several nodes over one PostgreSQL store "
                          "(store.url postgresql+asyncpg://...)")
    if config.imap_processes > 1 and not config.store_url.startswith("sqlite"):
        # over PostgreSQL, processes are nodes: each hears the others by NOTIFY (nodefeed.py)
        raise ConfigError("imap.processes: only with the SQLite store; over PostgreSQL run several "
                          "nodes (imap.reuse_port)")
    return config


def config_path(arg: str | None) -> Path:
    """--config, else $MSSANTE_RELAY_CONFIG; ConfigError when neither is given."""
    chosen = arg or os.environ.get(ENV_CONFIG)
    if not chosen:
        raise ConfigError(f"no configuration: pass --config FILE or set {ENV_CONFIG}")
    return Path(chosen)
