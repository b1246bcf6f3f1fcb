"""`mssante-relay init DIR`: a complete development instance in one folder."""
from __future__ import annotations

import datetime as dt
from importlib import resources
from pathlib import Path

from certs.dkim import generate_key
from certs.pki import OPERATOR_DOMAIN, write_dev_pki
from certs.trustlist import render_trust_list
from mailbox_store.crypto import MasterKey

DEMO_INS = "279035121518989"  # the example of the Mon espace santé documentation
KEY_FILES = ("pki/ca.key", "pki/server.key", "pki/operator.key", "pki/untrusted.key", "keys/master.key",
             "keys/dkim.key")


class InstanceExists(Exception):
    pass


def init_instance(target: Path, force: bool = False) -> Path:
    """Write relay.toml, the dev PKI, trustlist.xml and the master key; return the config path.

    Without force, existing keys are never overwritten: losing the master key would make
    every stored message unreadable.
    """
    target.mkdir(parents=True, exist_ok=True)
    existing = [k for k in KEY_FILES if (target / k).exists()]
    if existing and not force:
        raise InstanceExists(f"{target} already holds keys ({', '.join(existing)}); "
                             "use --force to overwrite them")
    if force and (target / "relay.db").exists():
        # new master key = old messages unreadable: start from an empty store
        for suffix in ("", "-wal", "-shm"):
            (target / f"relay.db{suffix}").unlink(missing_ok=True)
    pki = write_dev_pki(target / "pki")
    generated = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    (target / "trustlist.xml").write_text(render_trust_list(
        [(OPERATOR_DOMAIN, "Opérateur de test (développement)", pki.operator_subject)], generated),
        encoding="utf-8")
    (target / "keys").mkdir(mode=0o700, exist_ok=True)
    (target / "keys/master.key").unlink(missing_ok=True)
    MasterKey.generate(target / "keys/master.key")
    generate_key(target / "keys/dkim.key")  # `mssante-relay dkim dns` prints its TXT record
    config = target / "relay.toml"
    text = resources.files("relay").joinpath("templates/relay.toml").read_text(encoding="utf-8")
    fingerprint = _dev_archive_key(target / "keys/gnupg")
    if fingerprint:
        text = text.replace('gpg_recipient = ""', f'gpg_recipient = "{fingerprint}"')
    config.write_text(text, encoding="utf-8")
    return config


def _dev_archive_key(home: Path) -> str | None:
    """A development archive key (ed25519/cv25519) so that `mailbox close` works at
    once; None when GnuPG is not installed (the config then says to set one)."""
    import shutil

    import gnupg
    if shutil.which("gpg") is None:
        return None
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(mode=0o700, parents=True)
    gpg = gnupg.GPG(gnupghome=str(home))
    key = gpg.gen_key(gpg.gen_key_input(
        key_type="EDDSA", key_curve="ed25519", subkey_type="ECDH", subkey_curve="cv25519",
        name_real="mssante-relay archives (development)", name_email="archives@patient.mssante.fr",
        no_protection=True, expire_date=0))
    stop_gpg_agent(home)
    return key.fingerprint or None


def stop_gpg_agent(home: Path) -> None:
    """gpg starts an agent for its home directory on use: stop it (it would outlive the
    command, sockets and all)."""
    import subprocess
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"], capture_output=True, timeout=30)
