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
# command as imaptest saw it and as the daemon's own histogram saw it (the difference is
# the time a command waited behind the same session's earlier ones: imaptest pipelines),
# the store writer's figures over that window (writes per transaction; its thread's ms
# per transaction: wall, CPU, COMMIT; a write's wait for its transaction; and the
# kernel's: the fraction of the window its thread was on a core and waiting for one, its
# voluntary and involuntary context switches per transaction),
# daemon CPU seconds (its IMAP worker processes included) and the cores it and its event
# loop used (about 1 in all with one process: one GIL; the writer figures are the daemon's
# own process's),
# CPU ms per operation, Dovecot's ops/s of the same run, load
# average), so run old and new code in the same sitting and compare the ratios.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
COMPARE=${COMPARE:-$here/../../shared/anchor/imap_compare.sh}
[ -x "$COMPARE" ] || COMPARE=/work/shared/anchor/imap_compare.sh
ROUNDS=${1:?rounds}; shift
SECS=${SECS:-20}

cpu_ticks() { # pid -> utime+stime in clock ticks, its child processes' included (imap.processes)
  local p t=0 n
  for p in "$1" $(pgrep -P "${1%%/*}" 2>/dev/null); do
    [ "$p" = "$1" ] || [ "${1#*/}" = "$1" ] || continue  # a thread (pid/task/tid): itself only
    n=$(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + ${n:-0}))
  done
  echo "$t"
}

one() { # relay label
  local relay=$1 label=$2 W=/tmp/imapcpu-bench-$2 log pid t0 t1 l0 l1 i
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
  l0=$( [ -n "$pid" ] && cpu_ticks "$pid/task/$pid" || echo 0)  # the main thread: the event loop
  # the daemon's own command histogram (mssante_imap_command_seconds) from its admin port,
  # at the start and every 2 s while imaptest runs (the daemon stops right after it)
  admin=$(sed -n '/^\[admin\]/,/^\[/s/^listen = "\(.*\)"/\1/p' "$W/ours/relay-stress.toml" 2>/dev/null | head -1)
  m0=$(mktemp); m1=$(mktemp)
  metrics() { [ -n "$admin" ] && curl -s --max-time 2 "http://$admin/metrics" | grep '^mssante_imap_command_seconds_\(sum\|count\)\|^mssante_store_writer_' > "$1.new" && echo "# t $(date +%s.%N)" >> "$1.new" && mv "$1.new" "$1"; true; }
  metrics "$m0"
  for ((i = 0; i < 1000; i++)); do  # imaptest runs SECS seconds (+ its own timeout)
    pgrep -f "userfile=$W/ours-users" >/dev/null || break
    t1=$(cpu_ticks "$pid"); l1=$(cpu_ticks "$pid/task/$pid"); sleep 0.2
    (( i % 10 == 9 )) && metrics "$m1"
  done
  wait "$bg" || true
  python3 - "$label" "$log" "${t0:-0}" "${t1:-0}" "$(getconf CLK_TCK)" "$SECS" "$(cut -d' ' -f1 /proc/loadavg)" "$m0" "$m1" "${l0:-0}" "${l1:-0}" <<'PY'
import json, re, sys
label, log, t0, t1, hz, secs, load = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]


def histogram(path):  # command -> {"sum": seconds, "count": n}
    out = {}
    for line in open(path):
        m = re.match(r'mssante_imap_command_seconds_(sum|count)\{command="(\w+)"\} (\S+)', line)
        if m:
            out.setdefault(m.group(2), {})[m.group(1)] = float(m.group(3))
    return out


def writer(path):  # the store writer's counters (relay/daemon/admin.py)
    out = {}
    for line in open(path):
        m = re.match(r'mssante_store_writer_(\w+)_total(?:\{kind="(\w+)"\})? (\S+)|# t (\S+)', line)
        if m:
            key = "t" if m.group(4) else m.group(1) + (f"_{m.group(2)}" if m.group(2) else "")
            out[key] = float(m.group(3) or m.group(4))
    return out


h0, h1 = histogram(sys.argv[8]), histogram(sys.argv[9])
w0, w1 = writer(sys.argv[8]), writer(sys.argv[9])
dw = {k: w1[k] - w0.get(k, 0) for k in w1}
writer_figures = {}
if dw.get("batches"):
    b = dw["batches"]
    writer_figures = {  # over the same window as server_ms_per_cmd
        "busy_fraction": round(dw.get("busy_seconds", 0) / dw["t"], 2) if dw.get("t") else None,
        "jobs_per_batch": round(dw.get("jobs", 0) / b, 2),
        "ms_per_batch": {k: round(1000 * dw.get(f"{k}_seconds", 0) / b, 2) for k in ("busy", "cpu", "commit")},
        "queue_ms_per_job": round(1000 * dw.get("queue_seconds", 0) / max(dw.get("jobs", 0), 1), 2)}
    if "runqueue_seconds" in dw and dw.get("t"):  # the kernel's figures of its thread (Linux)
        writer_figures["thread"] = {  # fractions of the window's wall time; switches per transaction
            "cpu": round(dw.get("thread_cpu_seconds", 0) / dw["t"], 2),
            "runqueue": round(dw["runqueue_seconds"] / dw["t"], 2),
            "switches_per_batch": {k: round(dw.get(f"context_switches_{k}", 0) / b, 1)
                                   for k in ("voluntary", "involuntary")}}
server = {}  # average ms per command inside the daemon over the run (imaptest's figure adds the queue)
for cmd, v in sorted(h1.items()):
    n = v.get("count", 0) - h0.get(cmd, {}).get("count", 0)
    if n > 0:
        server[cmd] = round(1000 * (v.get("sum", 0) - h0.get(cmd, {}).get("sum", 0)) / n, 1)
rows = [json.loads(l) for l in open(log) if l.startswith("{")]
ours = next((r for r in rows if r["label"] == "ours"), {})
dove = next((r for r in rows if r["label"] == "dovecot"), {})
cpu = (t1 - t0) / hz
loop_cpu = (int(sys.argv[11]) - int(sys.argv[10])) / hz
ops = (ours.get("ops_per_s") or 0) * secs
print(json.dumps({"label": label, "ops_per_s": ours.get("ops_per_s"), "ms_per_cmd": ours.get("ms_per_cmd"),
                  "server_ms_per_cmd": server, "writer": writer_figures, "daemon_cpu_s": round(cpu, 2),
                  # cores the daemon and its event loop thread used over imaptest's run: the
                  # daemon's Python threads share one GIL, so about 1 means it is GIL-bound
                  "daemon_cores": round(cpu / secs, 2), "loop_cores": round(loop_cpu / secs, 2), "cpu_ms_per_op": round(1000 * cpu / ops, 3) if ops else None,
                  "dovecot_ops_per_s": dove.get("ops_per_s"), "dovecot_ms_per_cmd": dove.get("ms_per_cmd"),
                  "errors": ours.get("error_lines"), "load1": load}), flush=True)
PY
  rm -f "$log" "$m0" "$m1"
}

for ((r = 1; r <= ROUNDS; r++)); do
  for relay in "$@"; do
    one "$relay" "$(basename "$relay")"
  done
done
