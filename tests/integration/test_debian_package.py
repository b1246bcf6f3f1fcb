"""The Debian package (issue 16 item 1): packaging/build-deb.sh builds it, `dpkg -i` installs
it on this machine, `mssante-relay serve` runs as the service user with the installed paths
and answers SMTP and /healthz, `dpkg -r` keeps the data, `dpkg -P` deletes it.

It installs into the real system (/opt, /etc, /var/lib, a system user), so it runs only as
root, only where the package is not installed already (an operator's instance is never
touched), and purges what it installed whatever happens. Building the virtualenv takes about
two minutes (pip installs requirements/runtime.lock): the test is marked `slow`.
"""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATE = Path("/var/lib/mssante-relay")
ETC = Path("/etc/mssante-relay/relay.toml")
WANTS = Path("/etc/systemd/system/multi-user.target.wants/mssante-relay.service")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="installs a Debian package: root only"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed"),
]


def _installed() -> bool:
    p = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "mssante-relay"], capture_output=True, text=True)
    return p.returncode == 0 and "installed" in p.stdout and "not-installed" not in p.stdout


def _dpkg(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["dpkg", *args], capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if _installed() or STATE.exists() or ETC.exists():
        pytest.skip("mssante-relay is installed (or its data is present) on this machine: not touching it")
    out = tmp_path_factory.mktemp("dist")
    env = dict(os.environ, DIST=str(out))
    if os.environ.get("MSSANTE_RELAY_WHEELS"):  # a wheelhouse: builds without network (unshare -n)
        env["WHEELS"] = os.environ["MSSANTE_RELAY_WHEELS"]
    p = subprocess.run(["bash", str(ROOT / "packaging/build-deb.sh")], capture_output=True, text=True,
                       timeout=1200, env=env)
    if p.returncode != 0 and "WHEELS" not in env and "Temporary failure in name resolution" in p.stderr:
        pytest.skip("the package index is unreachable (no network here): set MSSANTE_RELAY_WHEELS to a "
                    "wheelhouse, see packaging/build-deb.sh")
    assert p.returncode == 0, p.stderr[-3000:]
    built = Path(p.stdout.strip().splitlines()[-1])
    version = subprocess.run(["python3", "-c", "import tomllib; print(tomllib.load(open('pyproject.toml', 'rb'))"
                              "['project']['version'])"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True).stdout.strip()
    assert built == out / f"mssante-relay_{version}_{arch}.deb" and built.exists()
    try:
        yield built
    finally:
        _dpkg("--purge", "mssante-relay")


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def test_install_serve_remove_purge(deb: Path) -> None:
    for port in (2525, 2143, 2993, 2587, 2465, 9325, 8443):  # the conffile keeps the loopback defaults
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"port {port} is in use in this network namespace")
    info = subprocess.run(["dpkg-deb", "--field", str(deb), "Depends"], capture_output=True, text=True).stdout
    assert "python3." in info

    p = _dpkg("-i", str(deb))
    assert p.returncode == 0, p.stdout + p.stderr
    user = pwd.getpwnam("mssante-relay")
    # conffile, state owned by the service user, units installed and enabled (not started)
    conffiles = subprocess.run(["dpkg-query", "-W", "-f=${Conffiles}", "mssante-relay"],
                               capture_output=True, text=True).stdout
    assert str(ETC) in conffiles
    assert ETC.stat().st_gid == user.pw_gid and ETC.stat().st_mode & 0o777 == 0o640
    assert STATE.stat().st_uid == user.pw_uid and STATE.stat().st_mode & 0o777 == 0o700
    master = STATE / "keys/master.key"
    assert master.stat().st_uid == user.pw_uid and master.stat().st_mode & 0o777 == 0o600
    assert Path("/lib/systemd/system/mssante-relay.service").exists()
    assert WANTS.is_symlink()
    unit = Path("/lib/systemd/system/mssante-relay.service").read_text()
    assert "serve --config /etc/mssante-relay/relay.toml" in unit
    assert shutil.which("mssante-relay") == "/usr/bin/mssante-relay"

    # the CLI on the PATH reads /etc/mssante-relay/relay.toml and, run by root, writes as the service user
    env = {k: v for k, v in os.environ.items() if k not in ("MSSANTE_RELAY_CONFIG", "PYTHONPATH")}
    ins = "185022A12345682"
    p = subprocess.run(["mssante-relay", "mailbox", "add", ins, "--state", "active", "--password-stdin"],
                       input="s3cret-passphrase\n", capture_output=True, text=True, env=env, timeout=120, cwd="/")
    assert p.returncode == 0, p.stderr
    assert (STATE / "relay.db").stat().st_uid == user.pw_uid

    # serve as the service user, with the installed paths only
    proc = subprocess.Popen(["setpriv", "--reuid=mssante-relay", "--regid=mssante-relay", "--init-groups",
                             "/opt/mssante-relay/venv/bin/mssante-relay", "serve", "--config", str(ETC)],
                            cwd=str(STATE), env=dict(env, HOME=str(STATE)),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_port(2525)
        ctx = ssl.create_default_context(cafile=str(STATE / "pki/ca.pem"))
        ctx.load_cert_chain(str(STATE / "pki/operator.pem"), str(STATE / "pki/operator.key"))
        ctx.check_hostname = False
        with smtplib.SMTP("127.0.0.1", 2525, timeout=30) as s:
            s.ehlo("mail.test-operator.mssante.fr")
            s.starttls(context=ctx)
            s.ehlo("mail.test-operator.mssante.fr")
            assert s.mail("dr.martin@test-operator.mssante.fr")[0] == 250
            assert s.rcpt(f"{ins}@patient.mssante.fr")[0] == 250
            code, reply = s.data(b"From: dr.martin@test-operator.mssante.fr\r\nTo: x\r\nSubject: paquet\r\n\r\nok\r\n")
            assert code == 250, reply
        _wait_port(9325)
        with urllib.request.urlopen("http://127.0.0.1:9325/healthz", timeout=30) as r:
            assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    assert all(json.loads(line) for line in err.splitlines() if line.strip())  # JSON events only
    shown = subprocess.run(["mssante-relay", "mailbox", "show", ins, "--json"], capture_output=True, text=True,
                           env=env, timeout=120, cwd="/")
    assert json.loads(shown.stdout)["folders"][0]["messages"] == 1, shown.stderr

    # remove: program gone, configuration and every byte of data kept
    key = master.read_bytes()
    p = _dpkg("--remove", "mssante-relay")
    assert p.returncode == 0, p.stdout + p.stderr
    assert not Path("/usr/bin/mssante-relay").exists() and not Path("/opt/mssante-relay").exists()
    assert ETC.exists() and master.read_bytes() == key and (STATE / "relay.db").exists()

    # purge: configuration, data and enablement deleted
    p = _dpkg("--purge", "mssante-relay")
    assert p.returncode == 0, p.stdout + p.stderr
    assert not STATE.exists() and not ETC.parent.exists()
    assert not WANTS.is_symlink() and not _installed()
