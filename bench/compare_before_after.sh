#!/usr/bin/env bash
# The anchor, then our MX before and after a change, in one session (so the ratios share
# the machine's load), ROUNDS rounds of (anchor, before, after) per kind, interleaved so
# that a change of load hits all three alike. BASE is a checkout of the "before" commit:
#   git archive <commit> | tar -x -C /tmp/base
#   unshare -n bash -c 'ip link set lo up; BASE=/tmp/base ROUNDS=2 bench/compare_before_after.sh'
# CPU per message: the anchor's Postfix and Dovecot process trees (bench/tree_cpu.py),
# our daemon's own process (bench/smtp_inbound.py), never the whole host's (other jobs).
# Needs what bench/compare_anchor.sh needs. The anchor lives under BENCH_TMP (default a
# private folder of this run). Loopback only; every run bounded (-n and timeout).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PY=${PY:-$ROOT/.venv/bin/python}
A=${ANCHOR:-$ROOT/../shared/anchor}
ROUNDS=${ROUNDS:-1}
: "${BASE:?BASE= a checkout of the commit before the change}"
export BENCH_TMP=${BENCH_TMP:-$(mktemp -d /tmp/mssante-bench-ba.XXXXXX)}
chmod 755 "$BENCH_TMP"  # Postfix's and Dovecot's own users work under it
export PKI=$BENCH_TMP/pki
OUT=$HERE/results/before-after-$(date -u +%Y%m%dT%H%M%SZ).jsonl
mkdir -p "$HERE/results"
R=$(mktemp /tmp/mssante-rcpts.XXXXXX)
"$PY" -c "import sys; sys.path.insert(0, '$ROOT'); from bench.smtp_inbound import make_rcpts; print('\n'.join(make_rcpts(100)))" > "$R"
KINDS=("small:3000:10240:" "big:300:512000:--attach")
# the same measuring script on both sides (it reports the daemon's own CPU): BASE is a
# scratch checkout, its bench/ is overwritten
cp "$HERE/smtp_inbound.py" "$HERE/instance.py" "$BASE/bench/"
LOADGEN=$A/smtp_load.py
uptime
"$A/anchor_stack.sh" start >/dev/null
trap '"$A/anchor_stack.sh" stop >/dev/null 2>&1 || true' EXIT
eval "$("$A/anchor_stack.sh" env)"
for kind in "${KINDS[@]}"; do  # warm-up: the recipients' Maildirs exist before the measured runs
  IFS=: read -r name n size extra <<<"$kind"
  timeout 600 "$PY" "$LOADGEN" -c 16 -n $((n / 6)) -s "$size" $extra --rcpt-file "$R" \
      --maildir-root "$MAILROOT" >/dev/null
done
for ((round = 1; round <= ROUNDS; round++)); do
  for kind in "${KINDS[@]}"; do
    IFS=: read -r name n size extra <<<"$kind"
    c0=$("$PY" "$HERE/tree_cpu.py" "$BENCH_TMP/stack.pids")
    line=$(timeout 600 "$PY" "$LOADGEN" -c 16 -n "$n" -s "$size" $extra --rcpt-file "$R" \
        --maildir-root "$MAILROOT" | tail -1)
    c1=$("$PY" "$HERE/tree_cpu.py" "$BENCH_TMP/stack.pids")
    "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(label=sys.argv[2], kind=sys.argv[3],
load=float(open("/proc/loadavg").read().split()[0]),
cpu_ms_per_msg=round(1000*(float(sys.argv[5])-float(sys.argv[4]))/max(d["accepted"],1),2),
rate=d.get("e2e_msgs_per_s")); print(json.dumps(d))' "$line" anchor "$name" "$c0" "$c1" | tee -a "$OUT"
    for side in before after; do
      root=$BASE; [ "$side" = after ] && root=$ROOT
      line=$(cd "$root" && timeout 900 "$PY" bench/smtp_inbound.py -c 16 -n "$n" -s "$size" $extra \
          --rcpt-file "$R" --python "$PY" --loadgen "$LOADGEN" 2>/dev/null | grep -E '^[{]"bench"')
      "$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); d.update(label=sys.argv[2], kind=sys.argv[3],
load=float(open("/proc/loadavg").read().split()[0]),
cpu_ms_per_msg=d.get("daemon_cpu_ms_per_msg"), rate=d.get("msgs_per_s")); print(json.dumps(d))' \
          "${line:-{\}}" "$side" "$name" | tee -a "$OUT"
    done
  done
done
"$A/anchor_stack.sh" stop >/dev/null
trap - EXIT
rm -f "$R"
uptime
"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(label, kind, key):
    v = [r[key] for r in rows if r["label"] == label and r["kind"] == kind and isinstance(r.get(key), (int, float))]
    return statistics.median(v) if v else float("nan")
print(f"\n{'kind':6} {'side':7} {'msg/s':>7} {'x anchor':>8} {'p50 ms':>7} {'p99 ms':>7} {'CPU ms/msg':>10}  stored  load")
for kind in ("small", "big"):
    a = med("anchor", kind, "rate")
    for side in ("anchor", "before", "after"):
        rate = med(side, kind, "rate")
        stored = "" if side == "anchor" else all(r.get("all_stored") for r in rows if r["label"] == side and r["kind"] == kind)
        print(f"{kind:6} {side:7} {rate:7.1f} {rate / a:8.2f} {med(side, kind, 'p50_ms'):7.1f} "
              f"{med(side, kind, 'p99_ms'):7.1f} {med(side, kind, 'cpu_ms_per_msg'):10.2f}  {str(stored):6}  "
              f"{med(side, kind, 'load'):.1f}")
print(f"results: {sys.argv[1]}")
PYEOF
