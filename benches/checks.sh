#!/usr/bin/env bash
# What each lifecycle check adds to a scan, at a leaky host's socket load
# (examples/loadgen.rs, 100 processes × 1,000 sockets by default): starts the
# load, lets the host settle, and runs the criterion bench benches/checks.rs,
# which times each check's kernel reads beside the reads a scan made before
# them. When BEFORE=PATH names a closewatch built before the checks, also
# times, with the two binaries interleaved, the agent's cached scan and the
# cold `--report --format json`.
# See benches/README.md for how to run it and what the numbers mean.
#
# Everything it starts is stopped by pid from an EXIT trap, on success, failure
# or Ctrl-C; every step is bounded by a timeout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/benches/lib.sh"

LOAD=${LOAD:-100x1000}            # loadgen processes x sockets per process
CLOSE_WAIT_PCT=${CLOSE_WAIT_PCT:-10}
FIN_WAIT2_PCT=${FIN_WAIT2_PCT:-$CLOSE_WAIT_PCT}
FILES=${FILES:-100}               # regular files held open per loadgen worker
BEFORE=${BEFORE:-}                # a closewatch binary without the checks (optional)
PARTS=${PARTS:-"criterion agent cold"} # what to run (agent and cold need BEFORE)
ROUNDS=${ROUNDS:-4}               # interleaved agent windows per binary
COLD_RUNS=${COLD_RUNS:-5}         # interleaved one-shot reports per binary
WINDOW=${WINDOW:-20}              # seconds of cached scans per window
SCAN_INTERVAL=${SCAN_INTERVAL:-2} # seconds between the agent's scans
BENCH_TIMEOUT=${BENCH_TIMEOUT:-1200} # seconds, cargo bench
SETUP_TIMEOUT=${SETUP_TIMEOUT:-300}  # seconds, loadgen until ready
BUILD_TIMEOUT=${BUILD_TIMEOUT:-900}  # seconds, cargo build
SETTLE_SECONDS=${SETTLE_SECONDS:-20} # at most, for the host to go quiet

LG_PID=""
AGENT_PID=""

bench_cleanup() {
    stop_pids agent "" "$AGENT_PID"
    stop_pids loadgen "$TMP/loadgen.err" "$LG_PID"
}
bench_init closewatch-checks

[[ $LOAD =~ ^([0-9]+)x([0-9]+)$ ]] || die "LOAD must be PROCESSESxSOCKETS"
PROCS=${BASH_REMATCH[1]}
SOCKETS=${BASH_REMATCH[2]}
[[ -z $BEFORE || -x $BEFORE ]] || die "BEFORE=$BEFORE is not an executable"

build_binaries
(cd "$ROOT" && timeout --foreground "$BUILD_TIMEOUT" cargo bench --bench checks --no-run) ||
    die "building the bench failed"
open_hold
start_loadgen_and_wait "$PROCS" "$SOCKETS"
note "load ready: $LG_READY"
note "host busy after settling: $(settle_host)%"

wants() { [[ " $PARTS " == *" $1 "* ]]; }

if wants criterion; then
    note "criterion: benches/checks.rs"
    (cd "$ROOT" && timeout --foreground "$BENCH_TIMEOUT" cargo bench --bench checks {HOLD_FD}>&-) ||
        die "cargo bench failed"
fi

[[ -n $BEFORE ]] || exit 0

if wants cold; then
    write_measure_py
    note "cold --report --format json, $COLD_RUNS runs each, interleaved (after one untimed each)"
    for ((run = 0; run <= COLD_RUNS; run++)); do
        for which in before after; do
            bin=$CW
            [[ $which == before ]] && bin=$BEFORE
            sleep 2 {HOLD_FD}>&-
            line=$(python3 "$TMP/measure.py" 180 /dev/null "$TMP/cold.err" \
                "$bin" --report --format json {HOLD_FD}>&-) || die "report failed"
            read -r rc wall user sys <<<"$line"
            [[ $rc == [012] ]] || die "$which report exited $rc: $(tail -n 3 "$TMP/cold.err")"
            ((run > 0)) || continue
            awk -v w="$wall" -v u="$user" -v s="$sys" -v r="$run" -v b="$which" \
                'BEGIN {printf "cold %d %-6s wall %.1f ms, CPU %.1f ms\n", r, b, 1000 * w, 1000 * (u + s)}'
        done
    done
fi

wants agent || exit 0

# CPU ticks (user + system) of a process.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
: >"$TMP/empty.toml"
note "agent CPU per cached scan, $ROUNDS rounds of $WINDOW s at --interval ${SCAN_INTERVAL}s"
for ((round = 1; round <= ROUNDS; round++)); do
    for which in before after; do
        bin=$CW
        [[ $which == before ]] && bin=$BEFORE
        RUST_LOG=warn "$bin" -c "$TMP/empty.toml" --listen 127.0.0.1:0 \
            --interval "${SCAN_INTERVAL}s" 2>/dev/null {HOLD_FD}>&- &
        AGENT_PID=$!
        # Past the cold first scan, inside the first minute (no all-states
        # dump, no full walk): cached scans only.
        sleep 5 {HOLD_FD}>&-
        t0=$(ticks "$AGENT_PID")
        sleep "$WINDOW" {HOLD_FD}>&-
        t1=$(ticks "$AGENT_PID")
        stop_pids agent "" "$AGENT_PID"
        AGENT_PID=""
        awk -v d="$((t1 - t0))" -v hz="$hz" -v n="$((WINDOW / SCAN_INTERVAL))" \
            -v r="$round" -v w="$which" \
            'BEGIN {printf "round %d %-6s %.1f ms CPU per cached scan\n", r, w, 1000 * d / hz / n}'
        sleep 2 {HOLD_FD}>&-
    done
done
