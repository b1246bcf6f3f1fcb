"""`mssante-relay trustlist update`: fetch the published liste blanche, check it, put it
in place atomically, and have the running daemon reload it (issue 16 §3).

Order, so that a failure at any step leaves the running list and its file untouched:
1. read the new list (HTTPS URL, or a file), bounded in size and time;
2. its digest: `URL.sha256` (or `FILE.sha256`) when published must match; when
   trust_list.require_digest is set, one must be published;
3. validate with the daemon's own loader (certs.trustlist.parse_trust_list): a list
   the daemon would refuse is never installed;
4. write `<path>.new` and `<path>.sha256.new`, fsync, rename over the old ones, fsync
   the folder (a crash leaves the old list or the new one, never half a file), then
   load the installed file back as the daemon will; if that fails, put the old bytes back;
5. SIGHUP to the daemon holding the store's lock (its PID is in `<db>.lock`).
"""
from __future__ import annotations

import hashlib
import os
import signal
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from certs.trustlist import TrustListError, load_trust_list, parse_trust_list
from mailbox_store.crypto import fsync_dir
from relay.daemon import storelock
from relay.core.config import Config

MAX_BYTES = 64 * 1024 * 1024  # the published list is a few MB; a runaway server stops here
TIMEOUT = 60.0  # seconds per request (connect and each read)


class UpdateError(Exception):
    """The update did not happen; the message says why, the old list stays."""


@dataclass(frozen=True)
class Updated:
    path: Path
    sha256: str
    domains: int
    entries: int
    changed: bool  # False: the published list is the one already installed
    digest_checked: bool
    reloaded_pid: int | None  # the daemon signalled, if one runs


def _https_get(url: str, cafile: Path | None, missing_ok: bool = False) -> bytes | None:
    if not url.startswith("https://"):
        raise UpdateError(f"{url}: only https:// URLs are fetched (the list decides who may send)")
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT, context=context) as response:  # noqa: S310 (https only)
            data = response.read(MAX_BYTES + 1)
    except urllib.error.HTTPError as e:
        if missing_ok and e.code == 404:
            return None
        raise UpdateError(f"{url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        reason = e.reason
        text = getattr(reason, "verify_message", None) or getattr(reason, "strerror", None) or str(reason)
        raise UpdateError(f"{url}: {text}") from None
    except (OSError, ValueError) as e:  # timeouts, resets, a malformed URL
        raise UpdateError(f"{url}: {type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from None
    if len(data) > MAX_BYTES:
        raise UpdateError(f"{url}: larger than {MAX_BYTES} bytes: refused")
    return data


def _read_file(path: Path, missing_ok: bool = False) -> bytes | None:
    try:
        if path.stat().st_size > MAX_BYTES:
            raise UpdateError(f"{path}: larger than {MAX_BYTES} bytes: refused")
        return path.read_bytes()
    except FileNotFoundError:
        if missing_ok:
            return None
        raise UpdateError(f"{path}: no such file") from None
    except OSError as e:
        raise UpdateError(f"{path}: {e.strerror}") from None


def _expected_digest(published: bytes, where: str) -> str:
    words = published.decode("ascii", "replace").split()
    if not words or len(words[0]) != 64 or any(c not in "0123456789abcdef" for c in words[0].lower()):
        raise UpdateError(f"{where}: not a SHA-256 digest")
    return words[0].lower()


def _write_durably(path: Path, data: bytes) -> Path:
    new = path.with_name(path.name + ".new")
    with open(new, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(new, 0o644)  # a public document: the daemon's user must read it
    return new


def fetch(config: Config, url: str | None = None, file: Path | None = None) -> tuple[bytes, bool]:
    """The new list's bytes (checked against its published digest) and whether a digest
    was checked."""
    if file is not None:
        data = _read_file(file)
        digest = _read_file(file.with_name(file.name + ".sha256"), missing_ok=True)
        where = f"{file}.sha256"
    else:
        url = url or config.trust_list_url
        if not url:
            raise UpdateError("no source: set trust_list.url in relay.toml, or give --url or --file")
        data = _https_get(url, config.trust_list_fetch_ca)
        digest = _https_get(url + ".sha256", config.trust_list_fetch_ca, missing_ok=True)
        where = f"{url}.sha256"
    assert data is not None
    if digest is None:
        if config.trust_list_require_digest:
            raise UpdateError(f"{where}: not published, and trust_list.require_digest is set")
        return data, False
    expected, actual = _expected_digest(digest, where), hashlib.sha256(data).hexdigest()
    if expected != actual:
        raise UpdateError(f"the list does not match {where} (sha256 {actual}, published {expected})")
    return data, True


def install(config: Config, data: bytes) -> tuple[str, bool]:
    """Validate and put the list in place (sha256, changed)."""
    try:
        parse_trust_list(data)
    except TrustListError as e:
        raise UpdateError(f"the new list is refused: {e}") from None
    target = config.trust_list
    sidecar = target.with_name(target.name + ".sha256")
    digest = hashlib.sha256(data).hexdigest()
    old = _read_file(target, missing_ok=True)
    old_sidecar = _read_file(sidecar, missing_ok=True)
    if old == data and (old_sidecar is None or old_sidecar.split()[:1] == [digest.encode()]):
        return digest, False
    try:
        new_list = _write_durably(target, data)
        # the digest beside the list: load_trust_list checks it when present, so it
        # must name the new list (written whether or not one was there)
        new_sidecar = _write_durably(sidecar, f"{digest}  {target.name}\n".encode())
        os.replace(new_list, target)
        os.replace(new_sidecar, sidecar)
        fsync_dir(target.parent)
    except OSError as e:
        for leftover in (target.with_name(target.name + ".new"), sidecar.with_name(sidecar.name + ".new")):
            leftover.unlink(missing_ok=True)
        raise UpdateError(f"cannot write {target}: {e.strerror}") from None
    try:
        load_trust_list(target, config.trust_list_require_digest)
    except (TrustListError, OSError) as e:  # never expected: the list checked above was written
        if old is not None:
            _write_durably(target, old).replace(target)
        if old_sidecar is not None:
            _write_durably(sidecar, old_sidecar).replace(sidecar)
        else:
            sidecar.unlink(missing_ok=True)
        fsync_dir(target.parent)
        raise UpdateError(f"the installed list did not load back ({e}): the previous one is restored") from None
    return digest, True


def signal_daemon(config: Config) -> int | None:
    """SIGHUP to the running daemon (PID of the store's lock holder); None if none runs."""
    pid = storelock.holder(config.store_url)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        return None
    except PermissionError:
        raise UpdateError(f"the list is installed, but the daemon (PID {pid}) cannot be signalled: "
                          "run this as the daemon's user, or `systemctl reload mssante-relay`") from None
    return pid


def update(config: Config, url: str | None = None, file: Path | None = None, reload: bool = True) -> Updated:
    data, checked = fetch(config, url, file)
    digest, changed = install(config, data)
    trust, _ = parse_trust_list(data)
    pid = signal_daemon(config) if changed and reload else None
    return Updated(config.trust_list, digest, len(trust.domains), trust.entries, changed, checked, pid)
