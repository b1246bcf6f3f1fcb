#!/bin/sh
# relay_imap_processes.sh -- this checkout's mssante-relay, with `imap.processes =
# ${IMAP_PROCESSES:-2}` written into the configuration it is told to serve: a RELAY for
# ../shared/anchor/imap_compare.sh and bench/imap_cpu_per_op.sh, whose instances come
# from `init` with the default of 1.
#
#   unshare -n bash -c 'ip link set lo up; bench/imap_cpu_per_op.sh 3 .venv/bin/mssante-relay bench/relay_imap_processes.sh'
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$1" = serve ] && [ "$2" = --config ] && [ -f "$3" ]; then
  sed -i "s/^processes = [0-9]*\$/processes = ${IMAP_PROCESSES:-2}/" "$3"
fi
cd "$here" && exec "$here/.venv/bin/python" -m relay.cli "$@"
