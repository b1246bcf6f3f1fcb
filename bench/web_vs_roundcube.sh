#!/bin/bash
# One sitting, same load: the Roundcube anchor (../shared/anchor/roundcube_stack.sh, 50 users x
# 10,000 messages) then our bench/web_load.py (one mailbox of 10,000 messages, web and its IMAP
# equivalent), each with C sessions and no think time (the issue's benchmark names none), one after
# the other so they never share the CPU. Run it inside a private network namespace:
#   unshare -n bash -c 'ip link set lo up; bench/web_vs_roundcube.sh [C] [SECONDS] [WORKDIR]'
# WORKDIR keeps our filled instance between runs (filled on the first). Prints `uptime` before each
# phase and each tool's JSON line.
set -euo pipefail
C=${1:-50}; T=${2:-60}; WORKDIR=${3:-}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ANCHOR=${ANCHOR:-$HERE/../../shared/anchor}
[ -d "$ANCHOR" ] || ANCHOR=/work/shared/anchor
PY=${PY:-$HERE/.venv/bin/python}
[ -x "$PY" ] || PY=/work/main/.venv/bin/python
# the anchor's files in a folder of this run, never the stack's default /tmp/mssante-roundcube
# (shared with any other run on the machine): RC_TMP if the caller sets it, else WORKDIR/roundcube
# (kept, filled once, like our instance), else a temporary folder removed at the end
if [ -z "${RC_TMP:-}" ] && [ -n "$WORKDIR" ]; then
  RC_TMP=$WORKDIR/roundcube; mkdir -p "$RC_TMP"
elif [ -z "${RC_TMP:-}" ]; then
  RC_TMP=$(mktemp -d /tmp/mssante-rc-bench.XXXXXX); OWN_RC_TMP=1
fi
chmod 755 "$RC_TMP"  # Dovecot's and PHP's users read below it (mktemp makes it 700)
export RC_TMP
echo "roundcube: $(uptime)"
"$ANCHOR/roundcube_stack.sh" start >&2
trap '"$ANCHOR/roundcube_stack.sh" stop >&2 || true; [ -z "${OWN_RC_TMP:-}" ] || rm -rf "$RC_TMP"' EXIT
python3 "$ANCHOR/web_load_roundcube.py" -c "$C" -t "$T" | tail -1
"$ANCHOR/roundcube_stack.sh" stop >&2
[ -z "${OWN_RC_TMP:-}" ] || rm -rf "$RC_TMP"
trap - EXIT
echo "ours: $(uptime)"
args=(-n 10000 -c "$C" -t "$T")
if [ -n "$WORKDIR" ]; then
  args+=(--workdir "$WORKDIR")
  [ -f "$WORKDIR/inst/relay.toml" ] && args+=(--reuse)
fi
cd "$HERE" && "$PY" bench/web_load.py "${args[@]}" | tail -1
