#!/usr/bin/env bash
# imap_cpu_per_op.sh -- the daemon's own CPU per imaptest operation (issue 12 §3), for one
# or more checkouts, alternated in the same sitting, with Dovecot's figures of each run.
#
#   unshare -n bash -c 'ip link set lo up; bench/imap_cpu_per_op.sh ROUNDS RELAY_A [RELAY_B ...]'
#
# Each RELAY is an executable that runs `python -m relay.cli "$@"` of one checkout (a
# two-line wrapper: cd CHECKOUT && exec .venv/bin/python -m relay.cli "$@"). Every round
# runs ../shared/anchor/imap_compare.sh stress (LOGOUT=0, REPS=1, SECS=${SECS:-20}) once
# per RELAY. While imaptest runs against our daemon, the daemon's user+system CPU is
# read from /proc: on a shared, noisy machine ops/s move with the load, the CPU an
# operation costs moves much less. Output: one JSON line per run (label, ops/s, ms per
# command, daemon CPU seconds, CPU ms per operation, Dovecot's ops/s of the same run,
# load average), so run old and new code in the same sitting and compare the ratios.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPARE=${COMPARE:-$here/../../shared/anchor/imap_compare.sh}
[ -x "$COMPARE" ] || COMPARE=/work/shared/anchor/imap_compare.sh
ROUNDS=${1:?rounds}; shift
SECS=${SECS:-20}

cpu_ticks() { # pid -> utime+stime in clock ticks
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}

one() { # relay label
  local relay=$1 label=$2 W=/tmp/imapcpu-bench-$2 log pid t0 t1 i
  log=$(mktemp)
  ( RELAY=$relay LOGOUT=0 REPS=1 IMAPCMP_TMP=$W "$COMPARE" stress "$SECS" >"$log" 2>&1 ) &
  local bg=$!
  pid=""
  for ((i = 0; i < 3000; i++)); do  # bounded: setup takes well under 10 minutes
    if pgrep -f "userfile=$W/ours-users" >/dev/null; then
      pid=$(pgrep -f "serve --config $W/ours/relay-stress.toml" | head -1); break
    fi
    kill -0 "$bg" 2>/dev/null || break
    sleep 0.2
  done
  t0=$( [ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
  for ((i = 0; i < 1000; i++)); do  # imaptest runs SECS seconds (+ its own timeout)
    pgrep -f "userfile=$W/ours-users" >/dev/null || break
    t1=$(cpu_ticks "$pid"); sleep 0.2
  done
  wait "$bg" || true
  python3 - "$label" "$log" "${t0:-0}" "${t1:-0}" "$(getconf CLK_TCK)" "$SECS" "$(cut -d' ' -f1 /proc/loadavg)" <<'PY'
import json, sys
label, log, t0, t1, hz, secs, load = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
rows = [json.loads(l) for l in open(log) if l.startswith("{")]
ours = next((r for r in rows if r["label"] == "ours"), {})
dove = next((r for r in rows if r["label"] == "dovecot"), {})
cpu = (t1 - t0) / hz
ops = (ours.get("ops_per_s") or 0) * secs
print(json.dumps({"label": label, "ops_per_s": ours.get("ops_per_s"), "ms_per_cmd": ours.get("ms_per_cmd"),
                  "daemon_cpu_s": round(cpu, 2), "cpu_ms_per_op": round(1000 * cpu / ops, 3) if ops else None,
                  "dovecot_ops_per_s": dove.get("ops_per_s"), "dovecot_ms_per_cmd": dove.get("ms_per_cmd"),
                  "errors": ours.get("error_lines"), "load1": load}), flush=True)
PY
  rm -f "$log"
}

for ((r = 1; r <= ROUNDS; r++)); do
  for relay in "$@"; do
    one "$relay" "$(basename "$relay")"
  done
done
