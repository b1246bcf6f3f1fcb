#!/usr/bin/env bash
# Our MX against the anchor (Postfix + Dovecot, ../shared/anchor) in one session, with the
# same load generator and the same 100 existing recipients, after a warm-up pass.
#   bench/compare_anchor.sh [REPS]        (default 3 runs of each kind)
#   PARSE_MODES="threads processes" bench/compare_anchor.sh 2   (ours once per [workers] parse_mode)
# Needs the anchor's packages (see ../shared/anchor/README.md: postfix, dovecot-imapd,
# dovecot-lmtpd, swaks) and aiosmtplib in $PY (default: .venv/bin/python).
# Loopback only; every run bounded (-n and timeout). Results: bench/results/<UTC>.jsonl
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
ANCHOR=${ANCHOR:-$ROOT/../shared/anchor}
PY=${PY:-$ROOT/.venv/bin/python}
REPS=${1:-3}
PARSE_MODES=${PARSE_MODES:-threads}
OUT=$HERE/results/$(date -u +%Y%m%dT%H%M%SZ).jsonl
mkdir -p "$HERE/results"
RCPTS=$(mktemp /tmp/mssante-rcpts.XXXXXX)
"$PY" -c "import sys; sys.path.insert(0, '$ROOT'); from bench.smtp_inbound import make_rcpts; print('\n'.join(make_rcpts(100)))" > "$RCPTS"
KINDS=("small:3000:10240:" "big:300:512000:--attach")

emit() { "$PY" -c 'import json,sys; d=json.loads(sys.argv[2]); d["label"]=sys.argv[1]; print(json.dumps(d))' "$1" "$2" | tee -a "$OUT"; }

# --- the anchor ---------------------------------------------------------------------
"$ANCHOR/anchor_stack.sh" start >/dev/null
trap '"$ANCHOR/anchor_stack.sh" stop >/dev/null 2>&1 || true' EXIT
eval "$("$ANCHOR/anchor_stack.sh" env)"
for kind in "${KINDS[@]}"; do
  IFS=: read -r name n size extra <<<"$kind"
  # warm-up: the recipients' Maildirs exist before the measured runs
  timeout 600 "$PY" "$ANCHOR/smtp_load.py" -c 16 -n $((n / 6)) -s "$size" $extra --rcpt-file "$RCPTS" \
      --maildir-root "$MAILROOT" >/dev/null
  for ((r = 1; r <= REPS; r++)); do
    line=$(timeout 600 "$PY" "$ANCHOR/smtp_load.py" -c 16 -n "$n" -s "$size" $extra --rcpt-file "$RCPTS" \
             --maildir-root "$MAILROOT" | tail -1)
    emit "anchor-$name" "$line"
  done
done
"$ANCHOR/anchor_stack.sh" stop >/dev/null
trap - EXIT

# --- our daemon (fresh instance per run, warm-up pass inside smtp_inbound.py) ---------
for mode in $PARSE_MODES; do
  suffix=$([ "$mode" = threads ] && echo "" || echo "-$mode")
  for kind in "${KINDS[@]}"; do
    IFS=: read -r name n size extra <<<"$kind"
    for ((r = 1; r <= REPS; r++)); do
      line=$(timeout 900 "$PY" "$HERE/smtp_inbound.py" -c 16 -n "$n" -s "$size" $extra --rcpt-file "$RCPTS" \
               --python "$PY" --parse-mode "$mode" 2>/dev/null | tail -1)
      emit "ours$suffix-$name" "$line"
    done
  done
done
rm -f "$RCPTS"

"$PY" - "$OUT" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(label, key):
    v = [r[key] for r in rows if r["label"] == label and isinstance(r.get(key), (int, float))]
    return statistics.median(v) if v else None
print(f"\n{'kind':6} {'anchor e2e msg/s':>17} {'ours msg/s':>11} {'ratio':>6} {'ours p50 ms':>12} {'ours p99 ms':>12}  all stored")
ours = sorted({r["label"].rsplit("-", 1)[0] for r in rows if r["label"].startswith("ours")})
for kind in ("small", "big"):
    for o_label in ours:
        label = f"{o_label}-{kind}"
        a, o = med(f"anchor-{kind}", "e2e_msgs_per_s"), med(label, "msgs_per_s")
        if a is None or o is None:
            continue
        stored = all(r.get("all_stored") for r in rows if r["label"] == label)
        print(f"{kind:6} {a:17.1f} {o:11.1f} {o / a:6.2f} {med(label, 'p50_ms'):12.1f} "
              f"{med(label, 'p99_ms'):12.1f}  {stored}  {o_label}")
print(f"results: {sys.argv[1]}")
PYEOF
