#!/usr/bin/env bash
# Builds dist/mssante-relay_<version>_<arch>.deb with Debian's own tool, dpkg-deb (issue 16 item 1).
#   packaging/build-deb.sh            (env DIST=DIR: write the .deb there instead of dist/)
#
# Why a virtualenv under /opt/mssante-relay packed with dpkg-deb, not dh-virtualenv or Debian's
# python3-* packages: half of our dependencies (aiosmtpd, dkimpy, nh3, puremagic, a recent
# SQLAlchemy 2, structlog...) are not in Debian 12 at the versions we test, and dh-virtualenv
# needs a debian/ source tree and debhelper for the same result. The venv is filled from
# requirements/runtime.lock (exact versions, sha256 hashes: the tested set), then the project
# itself without dependencies; the only thing taken from the system is Debian's python3.X,
# which the package depends on exactly (the venv is bound to that minor version).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(dpkg --print-architecture)
py=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
dist=${DIST:-$repo/dist}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/root
venv=/opt/mssante-relay/venv  # where it will live; built under $root$venv, paths rewritten below

python3 -c 'import ensurepip, venv' 2>/dev/null || { echo "build-deb.sh: needs python3-venv" >&2; exit 2; }
# WHEELS=DIR: build offline from a wheelhouse made beforehand (with network) by
#   pip download --require-hashes -r requirements/runtime.lock -d DIR && pip download -d DIR 'setuptools>=77' wheel
pipopts=()
[ -n "${WHEELS:-}" ] && pipopts=(--no-index --find-links "$WHEELS")
python3 -m venv "$root$venv"
"$root$venv/bin/python" -m pip install -q "${pipopts[@]}" --no-compile --require-hashes -r requirements/runtime.lock
# the project itself, built from a copy (pip would leave build/ and *.egg-info in the checkout)
mkdir -p "$work/src"
cp -r "$repo/pyproject.toml" "$repo/README.md" "$repo/relay" "$repo/certs" "$repo/policy" \
    "$repo/mailbox_store" "$repo/dossier_bridge" "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
"$root$venv/bin/python" -m pip install -q "${pipopts[@]}" --no-compile --no-deps "$work/src"
# not needed at run time, and not in the lock: what ships is exactly the tested set
"$root$venv/bin/python" -m pip uninstall -q -y setuptools pip
# scripts and pyvenv.cfg name the build folder: point them at the installed path
grep -rlI --null "$root$venv" "$root$venv" | xargs -0 -r sed -i "s|$root$venv|$venv|g"
# byte-compile now, naming the installed paths in tracebacks (the files are then dpkg's, not stray)
"$root$venv/bin/python" -m compileall -q -s "$root" -p / "$root$venv/lib" >/dev/null || true
find "$root$venv" -name 'RECORD' -path '*dist-info*' -delete  # lists build paths; pip is gone anyway

install -D -m 0755 packaging/debian/mssante-relay.sh "$root/usr/bin/mssante-relay"
install -d -m 0755 "$root/etc/mssante-relay"
python3 packaging/debian/conffile.py relay/templates/relay.toml > "$root/etc/mssante-relay/relay.toml"
chmod 0640 "$root/etc/mssante-relay/relay.toml"
for unit in config/*.service config/*.timer; do
    [ -e "$unit" ] || continue
    install -D -m 0644 "$unit" "$root/lib/systemd/system/$(basename "$unit")"
done
install -D -m 0644 README.md "$root/opt/mssante-relay/README.md"  # the unit's Documentation=
install -D -m 0644 README.md "$root/usr/share/doc/mssante-relay/README.md"
[ -e docs/operations.md ] && install -D -m 0644 docs/operations.md "$root/usr/share/doc/mssante-relay/operations.md"
install -D -m 0644 config/relay.example.toml "$root/usr/share/doc/mssante-relay/examples/relay.example.toml"

install -d "$root/DEBIAN"
units=$(cd "$root/lib/systemd/system" && echo *)
for script in postinst prerm postrm; do
    sed -e "s|@UNITS@|$units|g" "packaging/debian/$script" > "$root/DEBIAN/$script"
    chmod 0755 "$root/DEBIAN/$script"
done
echo /etc/mssante-relay/relay.toml > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$version|; s|@ARCH@|$arch|; s|@PY@|$py|g; s|@SIZE@|$size|" packaging/debian/control \
    > "$root/DEBIAN/control"

mkdir -p "$dist"
out="$dist/mssante-relay_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$out" >/dev/null
echo "$out"
