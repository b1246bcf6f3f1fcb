"""What the running daemon holds: configuration, store, trust list, TLS context, and
the reload that swaps them (SIGHUP) without dropping established sessions."""
from __future__ import annotations

import contextlib
import ssl
from dataclasses import dataclass, field
from collections.abc import Callable
from typing import Any

import structlog

from certs.dkim import DkimError, DkimKey
from certs.tls import server_context
from certs.trustlist import LoadedTrustList, load_trust_list
from mailbox_store.crypto import MasterKey
from mailbox_store.store import MailboxExists, Store
from policy.recipients import MailboxState
from relay.core.config import Config, load_config
from relay.core import logs, reloadable
from relay.core.limits import SlotCounter
from relay.core.pools import Pools
from relay.core.bytebudget import ByteBudget

log = structlog.get_logger("relay.runtime")
POSTMASTER = "postmaster"


def mx_tls_context(config: Config) -> ssl.SSLContext:
    return server_context(config.tls_cert, config.tls_key, config.trust_anchors, config.crls,
                          config.tls_profile, require_client_cert=True)


def client_tls_context(config: Config) -> ssl.SSLContext:
    """TLS for patients' clients (IMAP): our certificate, no client certificate."""
    return server_context(config.tls_cert, config.tls_key, config.trust_anchors, (),
                          "default", require_client_cert=False)


def load_trust(config: Config) -> LoadedTrustList:
    loaded = load_trust_list(config.trust_list, config.trust_list_require_digest)
    for w in loaded.warnings:
        log.warning("trustlist.accepted_with_defect", path=str(loaded.path), defect=w)
    log.info("trustlist.loaded", path=str(loaded.path), entries=loaded.trust.entries,
             domains=len(loaded.trust.domains), sha256=loaded.sha256, generated=loaded.trust.generated)
    return loaded


def load_dkim(config: Config) -> DkimKey | None:
    """The DKIM signing key; without one, outbound mail leaves unsigned (logged)."""
    try:
        return DkimKey.load(config.dkim_key, config.dkim_selector, config.domain)
    except DkimError as e:
        log.warning("dkim.no_key", error=str(e), effect="outbound mail is not signed")
        return None


async def open_store(config: Config, master: MasterKey, upgrade: bool | None = None) -> Store:
    """The store as the daemon opens it, with the configured batch, caches and password;
    an IMAP worker (relay/daemon/imapworker.py) opens the same with upgrade=False."""
    return await Store.open(config.store_url, master, max_batch=config.group_commit_max,
                            mailbox_cache_ttl=config.mailbox_cache_ttl, key_cache=config.store_key_cache,
                            password_file=config.store_password_file, upgrade=upgrade)


@dataclass
class Runtime:
    config: Config
    store: Store
    master: MasterKey
    trust: LoadedTrustList
    tls: ssl.SSLContext
    imap_tls: ssl.SSLContext
    dkim: DkimKey | None = None
    # DKIM key lookups (certs.dkim.Resolver); None: DNS. Tests put a table here.
    dkim_resolver: Callable[[bytes], bytes | None] | None = None
    sessions: set[Any] = field(default_factory=set)
    sessions_per_ip: SlotCounter = field(default_factory=SlotCounter)
    stopping: bool = False
    # issue 15 §2: bounded pools off the event loop, and the bytes all DATA may hold
    pools: Pools | None = None
    budget: ByteBudget | None = None

    @classmethod
    async def start(cls, config: Config) -> "Runtime":
        master = MasterKey.load(config.master_key)
        trust = load_trust(config)
        tls = mx_tls_context(config)
        imap_tls = client_tls_context(config)
        store = await open_store(config, master)
        if await store.get_mailbox(POSTMASTER) is None:
            # RFC 5321 §4.5.1: postmaster@ our domain must be accepted; operations read it
            # another node over the same PostgreSQL may create it first: that is the goal too
            with contextlib.suppress(MailboxExists):
                await store.create_mailbox(POSTMASTER, MailboxState.ACTIVE)
        w = config.workers
        pools = Pools.start(parse=w.parse, crypto=w.crypto, dkim=w.dkim, parse_mode=w.parse_mode)
        store.executor = pools.crypto
        return cls(config, store, master, trust, tls, imap_tls, load_dkim(config), pools=pools,
                   budget=ByteBudget(w.max_bytes_in_flight))

    def reload(self) -> bool:
        """Re-read trust list, certificates, CRLs and limits; on any error keep the old
        ones. What a reload applies is relay/core/reloadable.py's table; any other key that
        changed is named in `reload.needs_restart`."""
        try:
            config = load_config(self.config.path)
            trust = load_trust(config)
            tls = mx_tls_context(config)
        except Exception as e:
            log.error("reload.failed", error=str(e), kept="previous configuration")
            return False
        restart = reloadable.needs_restart(self.config.raw, config.raw)
        if restart:
            log.warning("reload.needs_restart", keys=restart, kept="running values")
        # only what a reload can change is taken (relay/core/reloadable.py); the rest applies
        # at the next start
        if config.log_level != self.config.log_level:
            logs.configure(config.log_level)
        self.config = reloadable.apply(self.config, config)
        self.trust, self.tls = trust, tls
        # listeners keep their context object: load the new certificate into it
        self.imap_tls.load_cert_chain(config.tls_cert, config.tls_key)
        log.info("reload.done")
        return True
