#!/usr/bin/env bash
# The anchor, then our MX before and after a change, one run each, in one session (so
# the ratios share the machine's load). BASE is a checkout of the "before" commit:
#   git archive <commit> | tar -x -C /tmp/base
#   unshare -n bash -c 'ip link set lo up; BASE=/tmp/base bench/compare_before_after.sh'
# Needs what bench/compare_anchor.sh needs. The anchor lives under BENCH_TMP (default a
# private folder of this run). Loopback only; every run bounded (-n and timeout).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
PY=${PY:-$ROOT/.venv/bin/python}
A=${ANCHOR:-$ROOT/../shared/anchor}
: "${BASE:?BASE= a checkout of the commit before the change}"
export BENCH_TMP=${BENCH_TMP:-$(mktemp -d /tmp/mssante-bench-ba.XXXXXX)}
export PKI=$BENCH_TMP/pki
R=$(mktemp /tmp/mssante-rcpts.XXXXXX)
"$PY" -c "import sys; sys.path.insert(0, '$ROOT'); from bench.smtp_inbound import make_rcpts; print('\n'.join(make_rcpts(100)))" > "$R"
KINDS=("small:3000:10240:" "big:300:512000:--attach")
uptime
"$A/anchor_stack.sh" start >/dev/null
trap '"$A/anchor_stack.sh" stop >/dev/null 2>&1 || true' EXIT
eval "$("$A/anchor_stack.sh" env)"
for kind in "${KINDS[@]}"; do
  IFS=: read -r name n size extra <<<"$kind"
  timeout 600 "$PY" "$A/smtp_load.py" -c 16 -n $((n / 6)) -s "$size" $extra --rcpt-file "$R" \
      --maildir-root "$MAILROOT" >/dev/null
  echo "anchor-$name $(timeout 600 "$PY" "$A/smtp_load.py" -c 16 -n "$n" -s "$size" $extra --rcpt-file "$R" \
      --maildir-root "$MAILROOT" | tail -1)"
done
"$A/anchor_stack.sh" stop >/dev/null
trap - EXIT
for kind in "${KINDS[@]}"; do
  IFS=: read -r name n size extra <<<"$kind"
  for side in before after; do
    root=$BASE; [ "$side" = after ] && root=$ROOT
    # the "measured" line carries the CPU per message; the last line, the stored check
    echo "$side-$name $(cd "$root" && timeout 900 "$PY" bench/smtp_inbound.py -c 16 -n "$n" -s "$size" $extra \
        --rcpt-file "$R" --python "$PY" 2>/dev/null | grep -E '"label": "measured"|^[{]"bench"' | tr '\n' ' ')"
  done
done
rm -f "$R"
uptime
