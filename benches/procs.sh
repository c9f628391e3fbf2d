#!/usr/bin/env bash
# Many small processes: `closewatch --report` with each attribution backend
# against `ss -tanp state close-wait` on a host of 2,000 and of 10,000
# processes holding a few sockets each. It is compare.sh with another load:
# each loadgen worker holds a listener and one connection, both ends, whose
# accepted end is in CLOSE_WAIT and whose client end is an owned FIN_WAIT_2
# (3 TCP sockets, plus stdio: 6 fds a process), so that the cost per process
# (the /proc entries, the fd directory, the task iterator's records) shows
# rather than the cost per fd. See benches/README.md.
#
# Every variable of compare.sh applies; these have other defaults here:
#   SCALES          "procs2000=2000x2 procs10000=10000x2"  NAME=PROCESSESxSOCKETS
#   FILES           0     regular files per worker
#   CLOSE_WAIT_PCT  100   every worker's connection ends in CLOSE_WAIT / FIN_WAIT_2
#   SETUP_TIMEOUT   600   seconds for loadgen to fork and ready its workers
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The processes a load needs must fit the host: pid_max and threads-max.
SCALES=${SCALES:-"procs2000=2000x2 procs10000=10000x2"}
most=0
for s in $SCALES; do
    spec=${s#*=}
    p=${spec%x*}
    [[ $p =~ ^[0-9]+$ ]] && ((p > most)) && most=$p
done
pid_max=$(</proc/sys/kernel/pid_max)
threads_max=$(</proc/sys/kernel/threads-max)
running=$(find /proc -maxdepth 1 -name '[0-9]*' | wc -l)
# Each worker is one task; the host's own processes, a margin for the runs.
if ((most + running + 1000 > pid_max || most + running + 1000 > threads_max)); then
    echo "procs.sh: $most workers + $running running processes + 1000 spare exceed \
kernel.pid_max ($pid_max) or kernel.threads-max ($threads_max)" >&2
    exit 1
fi

export SCALES
export FILES=${FILES:-0}
export CLOSE_WAIT_PCT=${CLOSE_WAIT_PCT:-100}
export SETUP_TIMEOUT=${SETUP_TIMEOUT:-600}
exec "$ROOT/benches/compare.sh"
