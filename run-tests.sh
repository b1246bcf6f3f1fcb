#!/usr/bin/env bash
# Installs everything the tests need on a fresh Debian machine, then runs them.
#   ./run-tests.sh              the whole default suite
#   ./run-tests.sh -k swaks     any pytest arguments
set -euo pipefail
cd "$(dirname "$0")"

# Real peers the tests drive: swaks (SMTP client), curl and mbsync (IMAP clients), Postfix (the
# professional's operator, run privately by the end-to-end tests), Chromium (the webmail's browser,
# driven by Playwright: Debian's build, never a downloaded one). Root installs them; otherwise ask sudo.
need=()
command -v postfix >/dev/null 2>&1 || [ -x /usr/sbin/postfix ] || need+=(postfix)
command -v swaks >/dev/null 2>&1 || need+=(swaks)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v mbsync >/dev/null 2>&1 || need+=(isync)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
command -v gpg >/dev/null 2>&1 || need+=(gnupg)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /bin/kill ] || need+=(procps)  # systemd-analyze verify checks the unit's ExecReload=/bin/kill
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# The CPS card tests: pcscd with vsmartcard's virtual reader; pyscard builds against libpcsclite
command -v pcscd >/dev/null 2>&1 || [ -x /usr/sbin/pcscd ] || need+=(pcscd)
[ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] || need+=(vsmartcard-vpcd)
[ -e /usr/include/PCSC/winscard.h ] || need+=(libpcsclite-dev)
command -v swig >/dev/null 2>&1 || need+=(swig)
# Dovecot's imaptest (tests/integration/test_imaptest.py builds ../shared/tools/imaptest): its build
[ -f /usr/include/dovecot/imap-parser.h ] || need+=(dovecot-dev)
# libdovecot.so, which imaptest links against, is in dovecot-core: dovecot-dev does not depend on it
[ -e /usr/lib/dovecot/libdovecot.so ] || need+=(dovecot-core)
command -v autoreconf >/dev/null 2>&1 || need+=(autoconf automake)
command -v libtoolize >/dev/null 2>&1 || need+=(libtool)
command -v cc >/dev/null 2>&1 || need+=(build-essential)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
# PostgreSQL: the store tests start their own server (tests/pg.py: initdb + pg_ctl in a temporary
# folder); the package's own cluster is not used
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
if ((${#need[@]})); then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    # Postfix unconfigured: the tests write their own main.cf; the system instance stays off
    echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
fi

python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# the tested dependency set, exact versions and hashes (packaging/lock.sh writes it); then the
# project itself, its dependencies already there
.venv/bin/python -m pip install -q --require-hashes -r requirements/test.lock
.venv/bin/python -m pip install -q --no-deps -e '.[test]'
exec .venv/bin/python -m pytest -q "$@"
