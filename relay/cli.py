"""`mssante-relay`: the command line (names are a contract: see README.md).

Bad input gives one line `mssante-relay: error: ...` naming the problem, exit status 2.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sqlite3
import secrets
import sys
from collections.abc import Awaitable, Callable
from email.utils import parseaddr
from pathlib import Path
from typing import Any, NoReturn

from argon2 import PasswordHasher
from sqlalchemy.exc import SQLAlchemyError

from certs.pki import write_private
from mailbox_store.crypto import CryptoError, MasterKey
from mailbox_store.store import Store, StoreError
from policy.ins import InsError, parse_ins
from policy.recipients import MailboxState, parse_state
from relay.core import logs
from relay.core.config import ENV_CONFIG, Config, ConfigError, config_path, load_config
from relay.ops.instance import DEMO_INS, InstanceExists, init_instance
from relay.pro.client import add_dossier_arguments, run_pro_dossier, settings_for
from relay.ops.progress import progress

DEV_DIR = Path("mssante-dev")
DEMO_PASSWORD_FILE = "demo-password"
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud or typed
EXIT_USAGE = 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"mssante-relay: error: {message} (see --help)\n")
        sys.exit(EXIT_USAGE)


def _ins(text: str) -> str:
    try:
        return parse_ins(text.strip()).value
    except InsError as e:
        raise UsageError(str(e)) from None


def _state(text: str) -> MailboxState:
    try:
        return parse_state(text)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _email(text: str) -> str:
    name, addr = parseaddr(text)
    local, _, domain = addr.rpartition("@")
    if not local or "." not in domain or name or addr != text.strip():
        raise UsageError(f"--notify-email: {text!r} is not an e-mail address")
    return addr


def _load(args: argparse.Namespace, path: Path | None = None) -> Config:
    try:
        return load_config(path or config_path(args.config))
    except ConfigError as e:
        raise UsageError(str(e)) from None


async def _store_call(config: Config, fn: Callable[[Store], Awaitable[Any]]) -> Any:
    store = await Store.open(config.store_url, MasterKey.load(config.master_key),
                             max_batch=config.group_commit_max, password_file=config.store_password_file,
                             listen_nodes=False)
    try:
        return await fn(store)
    finally:
        await store.close()


def _with_store(config: Config, fn: Callable[[Store], Awaitable[Any]]) -> Any:
    """Run fn on the configured store; store-level failures become one-line errors."""
    try:
        return asyncio.run(_store_call(config, fn))
    except StoreError as e:  # MailboxExists, NoSuchMailbox, NoSuchDocument, guardian errors...
        raise UsageError(str(e)) from None
    except ValueError as e:  # unreadable master key
        raise UsageError(str(e)) from None
    except SQLAlchemyError as e:
        detail = (str(getattr(e, "orig", None) or e).splitlines() or [type(e).__name__])[0]
        raise UsageError(f"store {config.store_url}: {detail}") from None
    except OSError as e:
        raise UsageError(f"store: {e}") from None


def _init(target: Path, force: bool = False) -> Path:
    try:
        return init_instance(target, force=force)
    except InstanceExists as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write instance {target}: {e.strerror or e}") from None


# ---- commands -----------------------------------------------------------------------

def cmd_init(args: argparse.Namespace) -> int:
    cfg = _init(Path(args.dir), force=args.force)
    print(f"instance written: {cfg}")
    print(f"  operator certificate: {Path(args.dir) / 'pki/operator.pem'} (domain test-operator.mssante.fr)")
    print(f"  next: mssante-relay serve --config {cfg}")
    return 0


def _newcomer_banner(config: Config, port: int, imap_ports: tuple[int, int], submission: tuple[int, int],
                     web_port: int = 0, admin_port: int = 0) -> str:
    base = config.base_dir
    webmail = [f"  webmail for patients: https://localhost:{web_port}/ (log in with the demo patient below)"] \
        if web_port else []
    return "\n".join(["mssante-relay is running (development instance)"] + webmail + [
        f"  MX (SMTP, STARTTLS + client certificate): {config.mx_listen.host}:{port}",
        f"  IMAP for patients: {config.imap_listen.host}:{imap_ports[0]} (STARTTLS), "
        f"{config.imap_listen_tls.host}:{imap_ports[1]} (TLS)",
        f"  submission for patients (AUTH after TLS): {config.submission_listen.host}:{submission[0]} (STARTTLS), "
        f"{config.submission_listen_tls.host}:{submission[1]} (TLS)",
        f"  admin (Prometheus /metrics, /healthz): http://{config.admin_listen.host}:{admin_port}/",
        f"  configuration: {config.path}",
        f"  CA: {base / 'pki/ca.pem'}",
        f"  operator certificate: {base / 'pki/operator.pem'} + {base / 'pki/operator.key'}"
        " (sender domain test-operator.mssante.fr)",
        f"  demo patient: {DEMO_INS}@{config.domain}, IMAP password in {base / DEMO_PASSWORD_FILE}",
        "  try: swaks --to {ins}@{dom} --from doc@test-operator.mssante.fr --server {host}:{port} "
        "--tls --tls-ca-path {ca} --tls-cert {cert} --tls-key {key}".format(
            ins=DEMO_INS, dom=config.domain, host=config.mx_listen.host, port=port,
            ca=base / "pki/ca.pem", cert=base / "pki/operator.pem", key=base / "pki/operator.key"),
        "  stop: Ctrl-C (SIGINT) or SIGTERM",
    ])


def cmd_serve(args: argparse.Namespace) -> int:
    from relay.daemon.serve import Daemon, StartupError

    dev = False
    if args.config is None and not os.environ.get(ENV_CONFIG):
        dev = True
        cfg_file = DEV_DIR / "relay.toml"
        if not cfg_file.exists():
            _init(DEV_DIR)
            # a random password for the demo patient, kept beside the instance (0600)
            demo_password = secrets.token_urlsafe(12)
            write_private(DEV_DIR / DEMO_PASSWORD_FILE, (demo_password + "\n").encode())
            _with_store(_load(args, cfg_file), lambda s: s.create_mailbox(
                DEMO_INS, MailboxState.ACTIVE, PasswordHasher().hash(demo_password)))
        args.config = str(cfg_file)
    config = _load(args)
    logs.configure(config.log_level)

    def ready(d: Daemon) -> None:
        if dev:
            assert d.imap is not None
            print(_newcomer_banner(config, d.mx_port, d.imap.ports, d.submission_ports,
                                   d.web.port if d.web is not None else 0, d.admin_port), flush=True)

    try:
        asyncio.run(Daemon(config).serve_forever(ready))
    except StartupError as e:  # bad certificate, trust list, store, port in use
        raise UsageError(f"cannot start: {e}") from None
    return 0


def cmd_mailbox_add(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    state = _state(args.state)
    email = _email(args.notify_email) if args.notify_email else None
    pw_hash = _password_from_stdin("--password-stdin") if args.password_stdin else None
    config = _load(args)
    code = activation_hash = None
    if state is MailboxState.PENDING:
        # one-time code the patient gives back to activate (mailbox activate); only its
        # argon2id hash is stored, the code is shown here once
        code = "-".join("".join(secrets.choice(CODE_ALPHABET) for _ in range(5)) for _ in range(2))
        activation_hash = PasswordHasher().hash(code)
    info = _with_store(config, lambda s: s.create_mailbox(ins, state, pw_hash, email, activation_hash))
    print(f"mailbox {info.ins}@{config.domain} created ({info.state.value})")
    if code:
        print(f"activation code: {code} (shown once)")
    return 0


def _password_from_stdin(what: str) -> str:
    """One line of standard input, hashed with argon2id (RFC 9106 parameters)."""
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError(f"{what}: empty password on standard input")
    return PasswordHasher().hash(password)


def cmd_mailbox_passwd(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    pw_hash = _password_from_stdin("mailbox passwd")
    config = _load(args)
    _with_store(config, lambda s: s.set_password(ins, pw_hash))
    print(f"password of {ins}@{config.domain} changed")
    return 0


def cmd_mailbox_notify(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    if (args.email is None) == (not args.off):
        raise UsageError("mailbox notify: give ADDR, or --off")
    address = None if args.off else _email(args.email)
    config = _load(args)
    _with_store(config, lambda s: s.set_notify_email(ins, address))
    print(f"notifications of {ins}: {address or 'off'}")
    return 0


def _address(field: str, text: str) -> str:
    from policy.conversation import normalise_address
    norm = normalise_address(text.strip())
    if norm is None:
        raise UsageError(f"{field}: {text!r} is not an e-mail address")
    return norm


def cmd_pharmacy(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    config = _load(args)
    if args.action == "list":
        for a in _with_store(config, lambda s: _pharmacies(s, ins)):
            print(a)
        return 0
    address = _address("ADDRESS", args.address)
    domain = address.rpartition("@")[2]
    if args.action == "allow":
        from certs.trustlist import load_trust_list
        try:
            trust = load_trust_list(config.trust_list, config.trust_list_require_digest).trust
        except (ValueError, OSError) as e:
            raise UsageError(f"trust_list.path: {e}") from None
        if not trust.lists(domain):
            raise UsageError(f"ADDRESS: {domain} is not on the MSSante trust list (nothing leaves the trust space)")

    async def change(s: Store) -> None:
        mb = await s.require_mailbox(ins)
        if args.action == "allow":
            await s.allow_pharmacy(mb, address)
        else:
            await s.revoke_pharmacy(mb, address)

    _with_store(config, change)
    print(f"pharmacy {address} {'allowed' if args.action == 'allow' else 'revoked'} for {ins}")
    return 0


async def _pharmacies(s: Store, ins: str) -> list[str]:
    return await s.pharmacies(await s.require_mailbox(ins))


def _queue_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise UsageError(f"ID: {text!r} is not a queue entry id (32 hexadecimal digits, see `queue list`)")
    return text


def cmd_queue(args: argparse.Namespace) -> int:
    config = _load(args)

    async def run(s: Store) -> Any:
        if args.action == "list":
            return await s.queue_items()
        entry = _queue_id(args.id)
        if args.action == "show":
            return await s.queue_item(entry)
        if args.action == "retry":
            return await s.queue_retry(entry)
        return await s.queue_remove(entry)

    result = _with_store(config, run)
    if args.action == "list":
        if args.json:
            print(json.dumps([_queue_json(i) for i in result], indent=2))
        else:
            for i in result:
                when = i.next_attempt_at.strftime("%Y-%m-%d %H:%M:%S")
                print(f"{i.id}  {i.kind:<12} {i.rcpt:<40} attempts={i.attempts} next={when}Z {i.last_error[:60]}")
    elif args.action == "show":
        print(json.dumps(_queue_json(result), indent=2))
    else:
        print(f"queue entry {args.id} {'due now' if args.action == 'retry' else 'deleted'}")
    return 0


def _queue_json(i: Any) -> dict[str, Any]:
    return {"id": i.id, "envelope_id": i.envelope_id, "kind": i.kind, "route": i.route, "mail_from": i.mail_from,
            "rcpt": i.rcpt, "size": i.size, "attempts": i.attempts, "next_attempt_at": i.next_attempt_at.isoformat(),
            "created_at": i.created_at.isoformat(), "expires_at": i.expires_at.isoformat(),
            "last_error": i.last_error}


def cmd_dkim_dns(args: argparse.Namespace) -> int:
    from certs.dkim import DkimError, DkimKey, dns_record
    config = _load(args)
    try:
        print(dns_record(DkimKey.load(config.dkim_key, config.dkim_selector, config.domain)))
    except DkimError as e:
        raise UsageError(f"dkim.key: {e}") from None
    return 0


def cmd_mailbox_activate(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    config = _load(args)
    found = _with_store(config, lambda s: s.activation(ins))
    if found is None:
        raise UsageError(f"no mailbox for INS {ins}")
    info, hashed = found
    if info.state is not MailboxState.PENDING or not hashed:
        raise UsageError(f"mailbox {ins} is {info.state.value}, not waiting for activation")
    try:
        given = sys.stdin.readline() if args.code_stdin else args.code
        PasswordHasher().verify(hashed, given.strip().upper())
    except Exception:  # argon2's mismatch and malformed-input errors alike
        _with_store(config, lambda s: s.audit(info.id, "admin", "activation_code.refused", "", "cli"))
        raise UsageError("--code: activation code does not match") from None
    _with_store(config, lambda s: s.activate(ins, hashed))
    print(f"mailbox {ins} activated")
    return 0


def cmd_mailbox_state_shortcut(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    config = _load(args)
    info = _with_store(config, lambda s: s.set_state(ins, args.to_state))
    print(f"mailbox {info.ins}: {info.state.value}")
    return 0


def cmd_mailbox_export(args: argparse.Namespace) -> int:
    from relay.ops.export import ExportError, export
    ins = _ins(args.ins)
    config = _load(args)

    async def run_export(s: Store) -> Any:
        with progress(f"export {ins}") as step:
            done = await export(s, ins, Path(args.out), args.gpg_recipient, config.gnupg_home,
                                limits=config.attachments, step=step)
        await s.audit((await s.require_mailbox(ins)).id, "admin", "export", f"{done.messages} message(s), "
                      f"{'encrypted' if done.encrypted else 'not encrypted'}", "cli")
        return done

    try:
        done = _with_store(config, run_export)
    except ExportError as e:
        raise UsageError(f"--gpg-recipient: {e}") from None
    print(f"{done.messages} messages exported to {done.path}"
          + (" (GnuPG-encrypted)" if done.encrypted else " (NOT encrypted: give it to the patient securely)"))
    return 0


def cmd_mailbox_close(args: argparse.Namespace) -> int:
    from relay.ops.export import ExportError
    from relay.ops.lifecycle import close_mailbox
    ins = _ins(args.ins)
    config = _load(args)
    if not config.archive_recipient:
        raise UsageError("archive.gpg_recipient: not configured; closing a mailbox keeps an encrypted archive")
    try:
        done, target = _with_store(config, lambda s: close_mailbox(s, config, ins))
    except ExportError as e:
        raise UsageError(f"archive: {e}") from None
    print(f"mailbox {ins} closed; {done.messages} messages and {len(done.documents)} dossier documents archived "
          f"(encrypted) in {target}")
    return 0


def cmd_mailbox_purge_expired(args: argparse.Namespace) -> int:
    from relay.ops.export import expired_archives
    config = _load(args)
    if not config.archive_dir.exists():
        print("no archive")
        return 0
    expired = expired_archives(config.archive_dir, config.archive_retention_years)
    with progress("purge expired archives") as step:
        for i, f in enumerate(expired, 1):
            f.unlink()
            step(i, len(expired))
    for f in expired:
        print(f"deleted {f.name}")
    return 0


def cmd_mailbox_majority(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    removed = _with_store(_load(args), lambda s: s.remove_all_guardians(ins))
    print(f"{ins} is of age: guardians removed: {', '.join(removed) or 'none'}")
    return 0


def cmd_mailbox_stale(args: argparse.Namespace) -> int:
    import datetime as dt
    if args.days <= 0:
        raise UsageError("--days: must be > 0")
    since = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=args.days)
    rows = [(mb, last) for mb, last in _with_store(_load(args), lambda s: s.stale(since)) if mb.ins != "postmaster"]
    if args.json:
        print(json.dumps([{"ins": mb.ins, "state": mb.state.value,
                           "last_login": last.isoformat() if last else None} for mb, last in rows], indent=2))
    else:
        for mb, last in rows:
            print(f"{mb.ins}  {mb.state.value:<8} last login: {last:%Y-%m-%d}" if last
                  else f"{mb.ins}  {mb.state.value:<8} never logged in")
    return 0


def cmd_mailbox_show(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    config = _load(args)

    async def show(s: Store) -> tuple[Any, Any]:
        info = await s.require_mailbox(ins)
        return info, await s.list_folders(info.id)

    info, folders = _with_store(config, show)
    if args.json:
        print(json.dumps({
            "ins": info.ins, "address": f"{info.ins}@{config.domain}", "state": info.state.value,
            "notify_email": info.notify_email, "created_at": info.created_at.isoformat(),
            "folders": [{"name": f.name, "special_use": f.special_use, "messages": f.messages,
                         "unseen": f.unseen, "uidvalidity": f.uidvalidity, "uidnext": f.uidnext}
                        for f in folders]}, indent=2))
    else:
        print(f"{info.ins}@{config.domain}  state={info.state.value}  created={info.created_at:%Y-%m-%d %H:%M}Z")
        for f in folders:
            print(f"  {f.name:<10} {f.messages:>6} messages  {f.unseen:>6} unseen")
    return 0


def cmd_mailbox_set_state(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    state = _state(args.state)
    config = _load(args)
    info = _with_store(config, lambda s: s.set_state(ins, state))
    print(f"mailbox {info.ins}: {info.state.value}")
    return 0


def cmd_guardian(args: argparse.Namespace) -> int:
    child, parent = _ins(args.child), _ins(args.parent)
    config = _load(args)
    if args.action == "add":
        _with_store(config, lambda s: s.add_guardian(child, parent))
        print(f"{parent} may now read and answer {child}'s mailbox")
    else:
        _with_store(config, lambda s: s.remove_guardian(child, parent))
        print(f"{parent} no longer has access to {child}'s mailbox")
    return 0


def cmd_guardian_list(args: argparse.Namespace) -> int:
    child = _ins(args.child)
    config = _load(args)

    async def listing(s: Store) -> list[Any]:
        return await s.guardians_of((await s.require_mailbox(child)).id)

    for g in _with_store(config, listing):
        print(g.ins)
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    config = _load(args)

    async def events(s: Store) -> list[Any]:
        return await s.audit_events((await s.require_mailbox(ins)).id)

    records = _with_store(config, events)
    if args.json:
        print(json.dumps([{"at": r.at.isoformat(), "actor": r.actor, "action": r.action, "detail": r.detail,
                           "source": r.source} for r in records], indent=2))
    else:
        for r in records:
            print(f"{r.at:%Y-%m-%d %H:%M:%S}Z  {r.actor:<28} {r.action:<16} {r.source:<16} {r.detail}")
    return 0


def _doc_id(text: str) -> str:
    if not re.fullmatch(r"[0-9a-f]{32}", text):
        raise UsageError(f"DOC_ID: {text!r} is not a document id (32 hexadecimal digits, see `dossier list`)")
    return text


def cmd_dossier_list(args: argparse.Namespace) -> int:
    ins = _ins(args.ins)
    config = _load(args)

    async def listing(s: Store) -> list[Any]:
        return await s.documents(await s.require_mailbox(ins))

    docs = _with_store(config, listing)
    if args.json:
        print(json.dumps([{"id": d.id, "size": d.size, "filed_at": d.filed_at.isoformat(), "filed_by": d.filed_by,
                           **d.meta} for d in docs], indent=2, ensure_ascii=False))
    else:
        for d in docs:
            m = d.meta
            print(f"{d.id}  {d.filed_at:%Y-%m-%d %H:%M}Z  {m.get('mime_type') or '-':<16} {d.size:>9}  "
                  f"{m.get('category') or '-'} | {m.get('title') or '-'}")
    return 0


def cmd_dossier_get(args: argparse.Namespace) -> int:
    from dossier_bridge.dossier import read_document
    from relay.ops.export import durable_replace, private_file
    ins, doc_id, out = _ins(args.ins), _doc_id(args.doc_id), Path(args.out)
    if out.exists():
        raise UsageError(f"--out: {out} exists; choose a new file")
    config = _load(args)

    async def get(s: Store) -> Any:
        return await read_document(s, await s.require_mailbox(ins), doc_id, "admin", "cli", config.attachments)

    doc, content = _with_store(config, get)  # DocumentUnreadable is a ValueError: one line too
    partial = out.with_name(out.name + ".partial")
    try:
        private_file(partial)  # health data: never readable by others, not even while written
        partial.write_bytes(content)
        durable_replace(partial, out)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise UsageError(f"--out: cannot write {out}: {e.strerror or e}") from None
    print(f"document {doc.id} ({doc.meta.get('mime_type')}, {doc.size} bytes) written to {out}")
    return 0


def cmd_dossier_delete(args: argparse.Namespace) -> int:
    ins, doc_id = _ins(args.ins), _doc_id(args.doc_id)
    config = _load(args)

    async def delete(s: Store) -> None:
        await s.delete_document(await s.require_mailbox(ins), doc_id, actor="admin", source="cli")

    _with_store(config, delete)
    print(f"document {doc_id} deleted from the dossier of {ins}")
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from relay.ops.backup import BackupError, backup
    config = _load(args)
    try:
        with progress("backup (one consistent snapshot)"):  # one step: a spinner
            manifest = backup(config.store_url, MasterKey.load(config.master_key), Path(args.out))
    except (BackupError, ValueError, OSError, sqlite3.Error) as e:
        raise UsageError(f"backup: {e}") from None
    print(f"backup written to {args.out}: {manifest['mailboxes']} mailboxes, {manifest['messages']} messages "
          f"(master key {manifest['master_key_ids']} is not in it: keep it apart)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from relay.ops.backup import BackupError, restore
    config = _load(args)
    try:
        with progress("restore"):
            manifest = restore(Path(args.archive), config.store_url, MasterKey.load(config.master_key),
                               args.force)
    except (BackupError, ValueError, OSError, sqlite3.Error) as e:
        raise UsageError(f"restore: {e}") from None
    print(f"restored {manifest['mailboxes']} mailboxes, {manifest['messages']} messages "
          f"(backup of {manifest['created_at']})")
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from relay.ops import keys
    config = _load(args)
    try:
        if args.keys_command == "rotate":
            with progress("re-wrapping data keys"):
                r = asyncio.run(keys.rotate(config.store_url, config.master_key, config.store_password_file))
            print(f"master key rotated: {r.old_id} -> {r.new_id}; {r.rewrapped} data keys re-wrapped. "
                  f"The old key is in {config.master_key.parent / 'retired'}; "
                  "`mssante-relay keys purge-retired` deletes it once nothing uses it.")
        else:
            removed = asyncio.run(keys.purge_retired(config.store_url, config.master_key, config.store_password_file))
            print(f"retired keys deleted: {', '.join(removed) or 'none'}")
    except (ValueError, OSError, SQLAlchemyError, CryptoError, StoreError) as e:
        raise UsageError(f"keys {args.keys_command}: {(str(e).splitlines() or [''])[0]}") from None
    return 0


def cmd_mailbox_list(args: argparse.Namespace) -> int:
    config = _load(args)
    boxes = _with_store(config, lambda s: s.list_mailboxes())
    if args.json:
        print(json.dumps([{"ins": b.ins, "state": b.state.value, "created_at": b.created_at.isoformat()}
                          for b in boxes], indent=2))
    else:
        for b in boxes:
            print(f"{b.ins}  {b.state.value}")
    return 0


def cmd_pro_dossier(args: argparse.Namespace) -> int:
    config = _load(args) if (args.config or os.environ.get(ENV_CONFIG)) else None
    return run_pro_dossier(args, settings_for(args, config))


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="FILE",
                        help="relay.toml (default: $MSSANTE_RELAY_CONFIG)")
    p = _Parser(prog="mssante-relay", description="Mail operator for patient.mssante.fr")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("init", help="write a development instance into DIR")
    s.add_argument("dir", metavar="DIR")
    s.add_argument("--force", action="store_true", help="overwrite existing keys (old mail becomes unreadable)")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("serve", parents=[common], help="run the daemon")
    s.set_defaults(func=cmd_serve)

    mb = sub.add_parser("mailbox", help="manage patient mailboxes")
    msub = mb.add_subparsers(dest="mailbox_command", required=True, parser_class=_Parser)
    s = msub.add_parser("add", parents=[common], help="create a mailbox")
    s.add_argument("ins", metavar="INS")
    s.add_argument("--state", default="pending", help="pending|active|opposed|closed (default pending)")
    s.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    s.add_argument("--notify-email", metavar="ADDR", help="personal address for notifications")
    s.set_defaults(func=cmd_mailbox_add)
    s = msub.add_parser("show", parents=[common], help="state and folders of a mailbox")
    s.add_argument("ins", metavar="INS")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_mailbox_show)
    s = msub.add_parser("set-state", parents=[common], help="change a mailbox's state")
    s.add_argument("ins", metavar="INS")
    s.add_argument("state", metavar="STATE")
    s.set_defaults(func=cmd_mailbox_set_state)
    s = msub.add_parser("list", parents=[common], help="list mailboxes")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_mailbox_list)
    s = sub.add_parser("backup", parents=[common], help="consistent online copy of the store (no master key)")
    s.add_argument("--out", required=True, metavar="FILE")
    s.set_defaults(func=cmd_backup)
    s = sub.add_parser("restore", parents=[common], help="restore a backup into the configured store")
    s.add_argument("archive", metavar="FILE")
    s.add_argument("--force", action="store_true", help="overwrite an existing store")
    s.set_defaults(func=cmd_restore)
    k = sub.add_parser("keys", help="master key rotation")
    ksub = k.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    s = ksub.add_parser("rotate", parents=[common], help="new master key, every data key re-wrapped, no downtime")
    s.set_defaults(func=cmd_keys)
    s = ksub.add_parser("purge-retired", parents=[common], help="delete retired master keys no longer used")
    s.set_defaults(func=cmd_keys)
    s = sub.add_parser("audit", parents=[common], help="who accessed a patient's data, when, from where")
    s.add_argument("ins", metavar="INS")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_audit)
    s = msub.add_parser("activate", parents=[common], help="activate a pending mailbox with its one-time code")
    s.add_argument("ins", metavar="INS")
    code = s.add_mutually_exclusive_group(required=True)
    code.add_argument("--code", metavar="CODE")
    code.add_argument("--code-stdin", action="store_true", help="read the code from standard input "
                      "(keeps it out of the process list and shell history)")
    s.set_defaults(func=cmd_mailbox_activate)
    s = msub.add_parser("oppose", parents=[common], help="the patient opposes: mail is refused (550 5.2.1)")
    s.add_argument("ins", metavar="INS")
    s.set_defaults(func=cmd_mailbox_state_shortcut, to_state=MailboxState.OPPOSED)
    s = msub.add_parser("export", parents=[common], help="all of a patient's data (messages, audit log)")
    s.add_argument("ins", metavar="INS")
    s.add_argument("--out", required=True, metavar="FILE")
    s.add_argument("--gpg-recipient", metavar="KEY", help="encrypt to this GnuPG key (archive.gnupg_home)")
    s.set_defaults(func=cmd_mailbox_export)
    s = msub.add_parser("close", parents=[common], help="close: encrypted archive kept, mail refused, data purged")
    s.add_argument("ins", metavar="INS")
    s.set_defaults(func=cmd_mailbox_close)
    s = msub.add_parser("purge-expired", parents=[common], help="delete archives past archive.retention_years")
    s.set_defaults(func=cmd_mailbox_purge_expired)
    s = msub.add_parser("majority", parents=[common], help="a child came of age: guardians lose access")
    s.add_argument("ins", metavar="INS")
    s.set_defaults(func=cmd_mailbox_majority)
    s = msub.add_parser("stale", parents=[common], help="mailboxes with no login for a year")
    s.add_argument("--days", type=int, default=365)
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_mailbox_stale)
    g = msub.add_parser("guardian", help="legal representatives of a child")
    gsub = g.add_subparsers(dest="guardian_command", required=True, parser_class=_Parser)
    for action, helptext in (("add", "let PARENT_INS read and answer CHILD_INS's mailbox"),
                             ("remove", "withdraw that right")):
        s = gsub.add_parser(action, parents=[common], help=helptext)
        s.add_argument("child", metavar="CHILD_INS")
        s.add_argument("parent", metavar="PARENT_INS")
        s.set_defaults(func=cmd_guardian, action=action)
    s = gsub.add_parser("list", parents=[common], help="guardians of a child")
    s.add_argument("child", metavar="CHILD_INS")
    s.set_defaults(func=cmd_guardian_list)
    s = msub.add_parser("notify", parents=[common], help="personal address for notifications (no health content)")
    s.add_argument("ins", metavar="INS")
    s.add_argument("email", metavar="ADDR", nargs="?")
    s.add_argument("--off", action="store_true", help="no notifications")
    s.set_defaults(func=cmd_mailbox_notify)
    s = msub.add_parser("passwd", parents=[common], help="set a mailbox's password (read from standard input)")
    s.add_argument("ins", metavar="INS")
    s.set_defaults(func=cmd_mailbox_passwd)
    ph = sub.add_parser("pharmacy", help="pharmacies a patient may write to first")
    phsub = ph.add_subparsers(dest="action", required=True, parser_class=_Parser)
    for action, helptext in (("allow", "allow the patient to write first to this pharmacy"),
                             ("revoke", "withdraw that permission")):
        s = phsub.add_parser(action, parents=[common], help=helptext)
        s.add_argument("ins", metavar="INS")
        s.add_argument("address", metavar="ADDRESS")
        s.set_defaults(func=cmd_pharmacy)
    s = phsub.add_parser("list", parents=[common], help="pharmacies allowed for a patient")
    s.add_argument("ins", metavar="INS")
    s.set_defaults(func=cmd_pharmacy)
    q = sub.add_parser("queue", help="the outbound queue")
    qsub = q.add_subparsers(dest="action", required=True, parser_class=_Parser)
    s = qsub.add_parser("list", parents=[common], help="entries of the outbound queue")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_queue)
    for action, helptext in (("show", "one entry"), ("retry", "try this entry now"),
                             ("delete", "remove this entry (it will not be delivered)")):
        s = qsub.add_parser(action, parents=[common], help=helptext)
        s.add_argument("id", metavar="ID")
        s.set_defaults(func=cmd_queue)
    dk = sub.add_parser("dkim", help="DKIM signing key")
    dksub = dk.add_subparsers(dest="action", required=True, parser_class=_Parser)
    s = dksub.add_parser("dns", parents=[common], help="print the DNS TXT record of the signing key")
    s.set_defaults(func=cmd_dkim_dns)
    d = sub.add_parser("dossier", help="documents of a patient's medical dossier")
    dsub = d.add_subparsers(dest="dossier_command", required=True, parser_class=_Parser)
    s = dsub.add_parser("list", parents=[common], help="documents of a patient's dossier")
    s.add_argument("ins")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_dossier_list)
    s = dsub.add_parser("get", parents=[common], help="write one document's content to a file (audited)")
    s.add_argument("ins")
    s.add_argument("doc_id", metavar="DOC_ID")
    s.add_argument("--out", required=True, help="file to write (must not exist)")
    s.set_defaults(func=cmd_dossier_get)
    s = dsub.add_parser("delete", parents=[common], help="delete one document from the dossier (audited)")
    s.add_argument("ins")
    s.add_argument("doc_id", metavar="DOC_ID")
    s.set_defaults(func=cmd_dossier_delete)
    from relay.ops import opscli  # config check, trustlist update
    opscli.register(sub, common, _Parser, _load, UsageError)
    from relay.ops import dbcli  # db upgrade, db status
    dbcli.register(sub, common, _Parser, _load, UsageError)
    from relay.conformance.cli import add_commands as add_conformance
    add_conformance(sub, common)  # `conformance run|check` (issue 13)
    from relay.pro import cli as pro_cli  # issue 18: pro list/allow/block/unblock, dossier hide/unhide, mailbox emergency/attending
    prosub = pro_cli.add_parsers(sys.modules[__name__], sub, msub, dsub, common)
    s = prosub.add_parser("dossier", parents=[common], help="consult a patient's dossier with your CPS card")
    add_dossier_arguments(s)
    s.set_defaults(func=cmd_pro_dossier)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UsageError as e:
        sys.stderr.write(f"mssante-relay: error: {e}\n")
        return EXIT_USAGE
    except BrokenPipeError:  # `mssante-relay … | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        sys.stderr.write("mssante-relay: interrupted\n")
        return 130
    except Exception as e:  # last resort: one line naming the failure's kind, never a traceback
        sys.stderr.write(f"mssante-relay: error: internal error ({type(e).__name__})\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
