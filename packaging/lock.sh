#!/usr/bin/env bash
# Writes requirements/{test,runtime}.lock: the dependency set the suite passed with, exact
# versions and sha256 hashes (issue 16 item 7). run-tests.sh installs test.lock, the Debian
# package runtime.lock, both with pip --require-hashes.
#   packaging/lock.sh [VENV]   VENV: the virtualenv the suite just passed in (default .venv)
# The versions are those installed in VENV (pip freeze as constraints), so the lock is what
# was tested, not whatever the index offers today; uv (PyPI package "uv") resolves and hashes.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv}
uv=$(command -v uv || echo "$venv/bin/uv")
[ -x "$uv" ] || { echo "lock.sh: uv not found: $venv/bin/pip install uv" >&2; exit 2; }
tested=$(mktemp)
trap 'rm -f "$tested"' EXIT
"$venv/bin/python" -m pip freeze --exclude-editable | grep -v -i -E '^(uv|mssante-relay)==' > "$tested"
mkdir -p requirements
header="# The tested dependency set (issue 16 item 7), written by packaging/lock.sh: do not edit."
for what in test runtime; do
    extra=(); [ "$what" = test ] && extra=(--extra test)
    "$uv" pip compile pyproject.toml "${extra[@]}" --python-version 3.11 --generate-hashes \
        --no-header --no-annotate -c "$tested" 2>/dev/null | { echo "$header"; cat; } > "requirements/$what.lock"
done
echo "requirements/test.lock: $(grep -c '==' requirements/test.lock) packages;" \
     "requirements/runtime.lock: $(grep -c '==' requirements/runtime.lock) packages"
