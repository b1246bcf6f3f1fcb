"""A real, private Postfix on loopback playing a health professional's MSSanté operator
(`test-operator.mssante.fr`) for end-to-end tests of our daemon.

One Postfix instance, two smtpd services:

* relay side, ``127.0.0.1:relay_port``: plain SMTP, no auth, ``mynetworks = 127.0.0.0/8``.
  The test submits with smtplib; mail for ``patient.mssante.fr`` is relayed to OUR MX
  (``transport_maps``) over mutual TLS: level ``secure``, server certificate verified against
  ``ca.pem`` and matched to ``mx.patient.mssante.fr``, client certificate ``operator.pem``.
* MX side, ``127.0.0.1:mx_port``: receives mail for ``test-operator.mssante.fr`` from our
  daemon. STARTTLS mandatory and a client certificate issued by ``ca.pem`` required; the
  listed users get Maildirs under ``workdir/maildir/<user>/``, any other local part is
  refused at RCPT with ``550 5.1.1``.

Nothing of the system Postfix is used or touched: own ``config_directory``,
``queue_directory``, ``data_directory``, ``syslog_name``, ``maillog_file`` (via postlogd),
services on the caller's ports only; ``/etc/postfix`` is only read, as ``meta_directory``.
Needs root (Postfix drops to ``postfix``/``mail`` itself) -- see :func:`postfix_available`.

Every wait is bounded; processes are stopped by the PIDs this instance started.
"""
from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import secrets
import shutil
import signal
import smtplib
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType

OPERATOR_DOMAIN = "test-operator.mssante.fr"
OUR_DOMAIN = "patient.mssante.fr"
OUR_MX_NAME = "mx.patient.mssante.fr"

POSTFIX = "/usr/sbin/postfix"
POSTQUEUE = "/usr/sbin/postqueue"
POSTSUPER = "/usr/sbin/postsuper"
DAEMON_DIRECTORY = "/usr/lib/postfix/sbin"
SHLIB_DIRECTORY = "/usr/lib/postfix"
META_DIRECTORY = "/etc/postfix"
MAIL_OWNER = "postfix"
SETGID_GROUP = "postdrop"
DELIVERY_USER = "mail"  # unprivileged owner of the Maildirs (uid 8 on Debian)

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CMD_TIMEOUT = 30.0


def postfix_unavailable_reason() -> str | None:
    """Why a PostfixPeer cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "a private Postfix instance needs root (postfix start; daemons drop to postfix/mail themselves)"
    for path in (POSTFIX, POSTQUEUE, POSTSUPER, f"{DAEMON_DIRECTORY}/master", f"{DAEMON_DIRECTORY}/virtual",
                 f"{META_DIRECTORY}/postfix-files"):
        if not os.path.exists(path):
            return f"Postfix is not installed ({path} missing; apt-get install postfix)"
    for kind, name in (("user", MAIL_OWNER), ("user", DELIVERY_USER), ("group", SETGID_GROUP)):
        try:
            (pwd.getpwnam if kind == "user" else grp.getgrnam)(name)
        except KeyError:
            return f"system {kind} {name!r} missing"
    return None


def postfix_available() -> bool:
    """True when the postfix binaries exist and we are root."""
    return postfix_unavailable_reason() is None


def _traversable_by(path: Path, user: str) -> bool:
    """Can `user` reach (search) every directory from / down to `path`?"""
    pw = pwd.getpwnam(user)
    gids = {pw.pw_gid} | {g.gr_gid for g in grp.getgrall() if user in g.gr_mem}
    for p in [path, *path.parents]:
        st = p.stat()
        if st.st_uid == pw.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def _pids_with_cwd_under(root: Path) -> list[int]:
    """Processes whose working directory is inside `root` (Postfix daemons chdir to the queue)."""
    found = []
    root_s = str(root)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if cwd == root_s or cwd.startswith(root_s + "/"):
            found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        if fields and fields[0] == "Z":
            return False
    return True


class PostfixError(RuntimeError):
    pass


class PostfixPeer:
    """A private Postfix playing the operator test-operator.mssante.fr. Use as a context manager::

        with PostfixPeer(tmp_path / "peer", pki, our_mx=("127.0.0.1", mx), relay_port=free_port(),
                         mx_port=free_port(), users=["dr.martin"]) as peer:
            peer.send(msg)                                  # -> relayed to our MX
            peer.wait_for_mail("dr.martin", 1, timeout=20)  # <- what our daemon sent back
    """

    def __init__(self, workdir: Path, pki: Path, our_mx: tuple[str, int], relay_port: int, mx_port: int,
                 users: Iterable[str], *, our_mx_name: str = OUR_MX_NAME, our_domain: str = OUR_DOMAIN,
                 domain: str = OPERATOR_DOMAIN, retry_seconds: int = 5, queue_lifetime: str = "1h"):
        self.workdir = Path(workdir).absolute()
        self.pki = Path(pki).absolute()
        self.our_mx = (str(our_mx[0]), int(our_mx[1]))
        self._relay_port = int(relay_port)
        self._mx_port = int(mx_port)
        self.users = list(users)
        self.our_mx_name = our_mx_name
        self.our_domain = our_domain
        self.domain = domain
        self.retry_seconds = int(retry_seconds)
        self.queue_lifetime = queue_lifetime
        self.syslog_name = f"postfix-peer-{secrets.token_hex(4)}"
        for u in self.users:
            if not re.fullmatch(r"[A-Za-z0-9._+-]+", u) or u.startswith("."):
                raise ValueError(f"unsupported local part {u!r}")
        self.root: Path | None = None  # the instance: etc/ spool/ data/ maildir/ maillog
        self._own_root = False  # root is a directory we created outside workdir (see _prepare_root)
        self.master_pid: int | None = None

    # ---- properties -------------------------------------------------------------------------------------
    @property
    def relay_port(self) -> int:
        return self._relay_port

    @property
    def mx_port(self) -> int:
        return self._mx_port

    @property
    def relay_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self._relay_port)

    @property
    def mx_address(self) -> tuple[str, int]:
        return ("127.0.0.1", self._mx_port)

    @property
    def config_directory(self) -> Path:
        return self._root() / "etc"

    @property
    def queue_directory(self) -> Path:
        return self._root() / "spool"

    @property
    def maildir_base(self) -> Path:
        return self._root() / "maildir"

    @property
    def maillog_path(self) -> Path:
        return self._root() / "maillog"

    @property
    def running(self) -> bool:
        return self.master_pid is not None and _alive(self.master_pid)

    def address(self, user: str) -> str:
        return f"{user}@{self.domain}"

    def _root(self) -> Path:
        if self.root is None:
            raise PostfixError("PostfixPeer not started yet")
        return self.root

    # ---- lifecycle ----------------------------------------------------------------------------------------
    def __enter__(self) -> PostfixPeer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _prepare_root(self) -> Path:
        """The instance directory. Postfix daemons run as `postfix` and deliver as `mail`, and open some
        paths (maildir base, data_directory, maillog) by absolute name: every ancestor must be searchable
        by both. pytest's tmp_path lives under /tmp/pytest-of-root (mode 0700), which is not, and we don't
        loosen directories we don't own: in that case the instance lives in a fresh 0755 directory of the
        system temp dir, reachable through symlinks workdir/postfix and workdir/maildir, removed by close()."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.root is not None:
            return self.root
        if all(_traversable_by(self.workdir, u) for u in (MAIL_OWNER, DELIVERY_USER)):
            root = self.workdir / "postfix"
            root.mkdir(exist_ok=True)
            os.chmod(root, 0o755)
            (self.workdir / "maildir").mkdir(exist_ok=True)
        else:
            root = Path(tempfile.mkdtemp(prefix="postfix-peer-"))
            os.chmod(root, 0o755)
            if not all(_traversable_by(root, u) for u in (MAIL_OWNER, DELIVERY_USER)):
                shutil.rmtree(root, ignore_errors=True)
                raise PostfixError(f"neither {self.workdir} nor {root} is reachable by users "
                                   f"{MAIL_OWNER}/{DELIVERY_USER}")
            self._own_root = True
            (root / "maildir").mkdir()
            for name, target in (("postfix", root), ("maildir", root / "maildir")):
                link = self.workdir / name
                if link.is_symlink():
                    link.unlink()
                link.symlink_to(target, target_is_directory=True)
        self.root = root
        return root

    def start(self) -> None:
        reason = postfix_unavailable_reason()
        if reason:
            raise PostfixError(reason)
        if self.running:
            raise PostfixError(f"already running (master pid {self.master_pid})")
        for port in (self._relay_port, self._mx_port):
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    raise PostfixError(f"127.0.0.1:{port} is already in use")
        root = self._prepare_root()
        self._write_config(root)
        self._postfix("check")
        try:
            self._postfix("start")
            self.master_pid = self._read_master_pid(deadline=time.monotonic() + START_TIMEOUT)
            deadline = time.monotonic() + START_TIMEOUT
            for port in (self._relay_port, self._mx_port):
                self._wait_banner(port, deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop this instance (``postfix stop``, then SIGKILL of its own leftovers by PID). Idempotent."""
        if self.root is None:
            return
        spool = self.queue_directory
        pid = self.master_pid or self._pid_from_file()
        if pid is not None and pid != self.master_pid and pid not in _pids_with_cwd_under(spool):
            pid = None  # stale pid file: that number is not (any more) our master
        if pid is not None and _alive(pid):
            with contextlib.suppress(PostfixError, subprocess.TimeoutExpired):
                self._postfix("stop", check=False, timeout=STOP_TIMEOUT)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(PostfixError, subprocess.TimeoutExpired):
                    self._postfix("abort", check=False, timeout=5)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        # the master SIGTERMs its children when it exits; give them a moment, then kill stragglers (by PID:
        # only processes whose cwd is our own queue directory, i.e. processes of this instance)
        deadline = time.monotonic() + 5
        while (left := [p for p in _pids_with_cwd_under(spool) if _alive(p)]) and time.monotonic() < deadline:
            time.sleep(0.05)
        for p in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        self.master_pid = None

    def close(self) -> None:
        """stop(), then remove the instance directory if it was created outside workdir."""
        self.stop()
        if self._own_root and self.root is not None:
            with contextlib.suppress(OSError):
                if self.maillog_path.exists():  # keep the log with the test's files
                    shutil.copyfile(self.maillog_path, self.workdir / "postfix-maillog")
            shutil.rmtree(self.root, ignore_errors=True)
            for name in ("postfix", "maildir"):
                link = self.workdir / name
                if link.is_symlink():
                    link.unlink()
            self.root = None
            self._own_root = False

    # ---- inspection / control ------------------------------------------------------------------------------
    def maildir(self, user: str) -> list[bytes]:
        """Messages delivered to `user` (new/ and cur/), oldest first."""
        base = self._root() / "maildir" / user
        files = []
        for sub in ("new", "cur"):
            d = base / sub
            if d.is_dir():
                files.extend(p for p in d.iterdir() if p.is_file())
        files.sort(key=lambda p: (p.stat().st_mtime_ns, p.name))
        return [p.read_bytes() for p in files]

    def wait_for_mail(self, user: str, count: int = 1, timeout: float = 20.0) -> list[bytes]:
        """Poll until `user` has at least `count` messages; TimeoutError (with queue and log) otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            msgs = self.maildir(user)
            if len(msgs) >= count:
                return msgs
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{user}: {len(msgs)}/{count} message(s) after {timeout}s\n"
                                   f"--- queue ---\n{self.queue()}\n--- log (tail) ---\n{self._log_tail()}")
            time.sleep(0.1)

    def wait_for_log(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Poll the maillog until the regular expression `pattern` matches a line."""
        rx = re.compile(pattern, re.M)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.log())
            if m:
                return m
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no log line matching {pattern!r} after {timeout}s\n"
                                   f"--- queue ---\n{self.queue()}\n--- log (tail) ---\n{self._log_tail()}")
            time.sleep(0.1)

    def wait_queue_empty(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.queue_ids():
            if time.monotonic() >= deadline:
                raise TimeoutError(f"queue not empty after {timeout}s\n{self.queue()}\n{self._log_tail()}")
            time.sleep(0.1)

    def flush(self) -> None:
        """Retry deferred mail now (``postqueue -f``)."""
        self._run([POSTQUEUE, "-c", str(self.config_directory), "-f"])

    def queue(self) -> str:
        """``postqueue -p`` output ("Mail queue is empty" when empty)."""
        return self._run([POSTQUEUE, "-c", str(self.config_directory), "-p"], check=False).stdout

    def queue_ids(self) -> list[str]:
        return re.findall(r"^([0-9A-F]{6,})[*!]?\s", self.queue(), re.M)

    def purge_queue(self) -> None:
        """Delete every queued message (``postsuper -d ALL``)."""
        self._run([POSTSUPER, "-c", str(self.config_directory), "-d", "ALL"])

    def log(self) -> str:
        """The maillog written by postlogd (empty before the first line)."""
        try:
            return self.maillog_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def send(self, msg: EmailMessage | bytes | str, mail_from: str | None = None,
             rcpt_tos: Iterable[str] | None = None, timeout: float = 10.0) -> dict[str, tuple[int, bytes]]:
        """Submit a message on the relay side (plain SMTP, no auth); returns smtplib's refused dict."""
        with smtplib.SMTP("127.0.0.1", self._relay_port, timeout=timeout) as s:
            s.ehlo("client.test-operator.mssante.fr")
            if isinstance(msg, EmailMessage):
                return s.send_message(msg, from_addr=mail_from,
                                      to_addrs=list(rcpt_tos) if rcpt_tos is not None else None)
            if mail_from is None or rcpt_tos is None:
                raise ValueError("mail_from and rcpt_tos are required for a raw message")
            return s.sendmail(mail_from, list(rcpt_tos), msg)

    # ---- internals ---------------------------------------------------------------------------------------
    def _run(self, argv: list[str], check: bool = True, timeout: float = CMD_TIMEOUT
             ) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           close_fds=True)
        if check and r.returncode != 0:
            raise PostfixError(f"{' '.join(argv)} exited {r.returncode}\n{r.stdout}{r.stderr}\n"
                               f"--- log (tail) ---\n{self._log_tail() if self.root else ''}")
        return r

    def _postfix(self, command: str, check: bool = True, timeout: float = CMD_TIMEOUT
                 ) -> subprocess.CompletedProcess[str]:
        return self._run([POSTFIX, "-c", str(self.config_directory), command], check=check, timeout=timeout)

    def _pid_from_file(self) -> int | None:
        try:
            return int((self.queue_directory / "pid" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def _read_master_pid(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            pid = self._pid_from_file()
            if pid is not None and _alive(pid):
                return pid
            time.sleep(0.05)
        raise PostfixError(f"postfix master did not start\n{self._log_tail()}")

    def _wait_banner(self, port: int, deadline: float) -> None:
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                    s.settimeout(max(0.5, min(5.0, deadline - time.monotonic())))
                    banner = s.recv(512)
                    with contextlib.suppress(OSError):
                        s.sendall(b"QUIT\r\n")
                        s.recv(512)
                if banner.startswith(b"220"):
                    return
                last = PostfixError(f"unexpected banner {banner!r}")
            except OSError as e:
                last = e
            time.sleep(0.1)
        raise PostfixError(f"127.0.0.1:{port} not serving SMTP: {last}\n{self._log_tail()}")

    def _write_config(self, root: Path) -> None:
        for p in (root, root / "etc", root / "etc" / "tls"):
            p.mkdir(exist_ok=True)
            os.chmod(p, 0o755)
        # `postfix check` (post-install create-missing) creates the queue subdirectories with the right
        # owners, but does not fix existing ones: data_directory must be the mail_owner's (master.lock)
        (root / "spool").mkdir(exist_ok=True)
        os.chmod(root / "spool", 0o755)
        owner = pwd.getpwnam(MAIL_OWNER)
        (root / "data").mkdir(exist_ok=True)
        os.chown(root / "data", owner.pw_uid, owner.pw_gid)
        os.chmod(root / "data", 0o700)
        conf = root / "etc"
        tls = conf / "tls"
        mail = pwd.getpwnam(DELIVERY_USER)
        base = root / "maildir"
        base.mkdir(exist_ok=True)
        os.chown(base, mail.pw_uid, mail.pw_gid)
        os.chmod(base, 0o755)
        if any(c.isspace() or c in ",=$" for c in str(root)):
            raise PostfixError(f"Postfix config cannot hold path {str(root)!r} (blank, ',', '=' or '$')")
        # TLS material is copied into the instance: read by the daemons as root before they drop privileges
        for name in ("ca.pem", "operator.pem", "operator.key"):
            src = self.pki / name
            if not src.is_file():
                raise PostfixError(f"{src} missing")
            dst = tls / name
            dst.unlink(missing_ok=True)
            shutil.copyfile(src, dst)
            os.chmod(dst, 0o600 if name.endswith(".key") else 0o644)
        host, port = self.our_mx
        nexthop = f"[{host}]:{port}"
        (conf / "transport").write_text(f"{self.our_domain} smtp:{nexthop}\n")
        (conf / "tls_policy").write_text(f"{nexthop} secure match={self.our_mx_name}\n")
        (conf / "vmailbox").write_text("".join(f"{u}@{self.domain} {u}/\n" for u in self.users))
        r = self.retry_seconds
        main_cf = f"""\
# generated by tests/integration/postfix_peer.py -- private test instance, not the system Postfix
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
meta_directory = {META_DIRECTORY}
shlib_directory = {SHLIB_DIRECTORY}
daemon_directory = {DAEMON_DIRECTORY}
command_directory = /usr/sbin
mail_owner = {MAIL_OWNER}
setgid_group = {SETGID_GROUP}
syslog_name = {self.syslog_name}
maillog_file = {root}/maillog
maillog_file_prefixes = {root}/
readme_directory = no

myhostname = mail.{self.domain}
mydomain = {self.domain}
myorigin = $mydomain
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
biff = no
append_dot_mydomain = no
alias_maps =
alias_database =
local_recipient_maps =
smtputf8_enable = yes
smtpd_banner = $myhostname ESMTP
smtpd_peername_lookup = no
smtp_dns_support_level = disabled
delay_warning_time = 0
message_size_limit = 52428800
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_reject_unlisted_recipient = yes
unknown_virtual_mailbox_reject_code = 550

# fast retries for tests
queue_run_delay = {r}s
minimal_backoff_time = {r}s
maximal_backoff_time = {2 * r}s
maximal_queue_lifetime = {self.queue_lifetime}
bounce_queue_lifetime = {self.queue_lifetime}
smtp_connect_timeout = 5s
smtp_helo_timeout = 30s
smtp_tls_connection_reuse = no
in_flow_delay = 0

# nothing leaves loopback: only {self.our_domain} (our MX) and {self.domain} (virtual) are deliverable
local_transport = error:5.1.1 local delivery disabled (test peer)
default_transport = error:5.4.4 outbound delivery disabled (test peer)
relay_transport = error:5.4.4 relay disabled (test peer)
transport_maps = texthash:{conf}/transport

# final delivery for {self.domain}: Maildirs owned by {DELIVERY_USER}
virtual_mailbox_domains = {self.domain}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_mailbox_base = {base}
virtual_uid_maps = static:{mail.pw_uid}
virtual_gid_maps = static:{mail.pw_gid}
virtual_minimum_uid = {mail.pw_uid}
virtual_mailbox_limit = 0
virtual_alias_maps =

# outbound to our MX: mutual TLS, server verified against ca.pem and matched to {self.our_mx_name}
smtp_tls_security_level = secure
smtp_tls_policy_maps = texthash:{conf}/tls_policy
smtp_tls_secure_cert_match = {self.our_mx_name}
smtp_tls_CAfile = {tls}/ca.pem
smtp_tls_chain_files = {tls}/operator.key, {tls}/operator.pem
smtp_tls_protocols = >=TLSv1.2
smtp_tls_mandatory_protocols = >=TLSv1.2
smtp_tls_ciphers = high
smtp_tls_mandatory_ciphers = high
smtp_tls_loglevel = 1
smtp_tls_session_cache_database =

# inbound TLS material (enforced on the MX service only, see master.cf)
smtpd_tls_security_level = none
smtpd_tls_chain_files = {tls}/operator.key, {tls}/operator.pem
smtpd_tls_CAfile = {tls}/ca.pem
smtpd_tls_ccert_verifydepth = 5
smtpd_tls_protocols = >=TLSv1.2
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_mandatory_ciphers = high
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_tls_session_cache_database =
"""
        (conf / "main.cf").write_text(main_cf)
        svc = "inet  n       -       n       -       -       smtpd"
        master_cf = f"""\
# service type  private unpriv  chroot  wakeup  maxproc command + args   (chroot off: paths are outside)
127.0.0.1:{self._relay_port} {svc}
  -o syslog_name={self.syslog_name}/relay
  -o smtpd_tls_security_level=none
  -o smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination
127.0.0.1:{self._mx_port} {svc}
  -o syslog_name={self.syslog_name}/mx
  -o smtpd_tls_security_level=encrypt
  -o smtpd_tls_auth_only=yes
  -o smtpd_tls_ask_ccert=yes
  -o smtpd_tls_req_ccert=yes
  -o smtpd_relay_restrictions=reject_unauth_destination
pickup     unix  n       -       n       60      1       pickup
cleanup    unix  n       -       n       -       0       cleanup
qmgr       unix  n       -       n       300     1       qmgr
tlsmgr     unix  -       -       n       1000?   1       tlsmgr
rewrite    unix  -       -       n       -       -       trivial-rewrite
bounce     unix  -       -       n       -       0       bounce
defer      unix  -       -       n       -       0       bounce
trace      unix  -       -       n       -       0       bounce
verify     unix  -       -       n       -       1       verify
flush      unix  n       -       n       1000?   0       flush
proxymap   unix  -       -       n       -       -       proxymap
proxywrite unix  -       -       n       -       1       proxymap
smtp       unix  -       -       n       -       -       smtp
relay      unix  -       -       n       -       -       smtp
showq      unix  n       -       n       -       -       showq
error      unix  -       -       n       -       -       error
retry      unix  -       -       n       -       -       error
discard    unix  -       -       n       -       -       discard
virtual    unix  -       n       n       -       -       virtual
anvil      unix  -       -       n       -       1       anvil
scache     unix  -       -       n       -       1       scache
postlog    unix-dgram n  -       n       -       1       postlogd
"""
        (conf / "master.cf").write_text(master_cf)
