#!/usr/bin/env bash
# Two variants of our MX measured at the same time, each in its own network namespace,
# so both meet the same load from the rest of the machine (on a shared machine two runs
# one after the other can differ by 2x; side by side, the ratio is what is left):
#   bench/side_by_side.sh LABEL_A DIR_A "ARGS_A" LABEL_B DIR_B "ARGS_B"
#   BASE=/tmp/base: git archive <commit> | tar -x -C /tmp/base; cp bench/smtp_inbound.py bench/instance.py /tmp/base/bench/
#   REPS=3 bench/side_by_side.sh before /tmp/base "" after . ""
#   REPS=2 SIZE=512000 N=300 EXTRA=--attach bench/side_by_side.sh threads . "--parse-mode threads" processes . "--parse-mode processes"
# ARGS are extra bench/smtp_inbound.py options (--replace 'OLD' 'NEW' edits relay.toml).
# Prints per round: label, load average, msg/s, p50 ms, p99 ms, the daemon's CPU ms per
# message, all stored, accepted. Needs root for unshare; loopback only; each run bounded.
set -uo pipefail
PY=${PY:-$(cd "$(dirname "$0")/.." && pwd)/.venv/bin/python}
LOADGEN=${LOADGEN:-$(cd "$(dirname "$0")/../.." && pwd)/shared/anchor/smtp_load.py}
la=$1; da=$(cd "$2" && pwd); ea=$3; lb=$4; db=$(cd "$5" && pwd); eb=$6
OUT=$(mktemp -d /tmp/mssante-side.XXXXXX)
run() { # dir args out
  unshare -n bash -c "ip link set lo up; cd $1 && timeout 900 $PY bench/smtp_inbound.py -c 16 -n ${N:-2000} \
      -s ${SIZE:-10240} ${EXTRA:-} $2 --loadgen $LOADGEN 2>/dev/null > $3"
}
for rep in $(seq "${REPS:-3}"); do
  load=$(cut -d' ' -f1 /proc/loadavg)
  run "$da" "$ea" "$OUT/a.out" & run "$db" "$eb" "$OUT/b.out" & wait
  for x in a b; do
    l=$([ $x = a ] && echo "$la" || echo "$lb")
    echo "$rep $l load=$load $(grep '"bench"' "$OUT/$x.out" | "$PY" -c 'import json,sys; d=json.loads(sys.stdin.read())
print(d["msgs_per_s"], d["p50_ms"], d["p99_ms"], d["daemon_cpu_ms_per_msg"], d["all_stored"], d["accepted"])')"
  done
done
rm -rf "$OUT"
