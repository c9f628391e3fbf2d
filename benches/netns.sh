#!/usr/bin/env bash
# Measures `closewatch --report --format json` with the same socket load
# (examples/loadgen.rs) in one network namespace (the host's) and spread over
# NAMESPACES namespaces made with `ip netns add` (20 by default), to show what
# entering and dumping each namespace costs. Prints the ratio N-ns / 1-ns.
# See benches/README.md for how to run it and what the numbers mean.
#
# Everything it starts is stopped by pid, and every namespace it made deleted
# by name, from an EXIT trap, on success, failure or Ctrl-C; every step is
# bounded by a timeout and the whole run by MAX_SECONDS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/benches/lib.sh"

PROCESSES=${PROCESSES:-100}       # loadgen workers in all, both layouts
SOCKETS=${SOCKETS:-1000}          # sockets per worker
NAMESPACES=${NAMESPACES:-20}      # namespaces of the second layout
RUNS=${RUNS:-5}                   # timed runs per layout
WARMUP=${WARMUP:-1}               # untimed runs first
CLOSE_WAIT_PCT=${CLOSE_WAIT_PCT:-10}
FIN_WAIT2_PCT=${FIN_WAIT2_PCT:-$CLOSE_WAIT_PCT}
FILES=${FILES:-100}               # regular files held open per loadgen worker
CMD_TIMEOUT=${CMD_TIMEOUT:-180}   # seconds, one closewatch run
SETUP_TIMEOUT=${SETUP_TIMEOUT:-300} # seconds, loadgens until ready
BUILD_TIMEOUT=${BUILD_TIMEOUT:-900} # seconds, cargo build
SETTLE_SECONDS=${SETTLE_SECONDS:-20} # at most, for the host to go quiet after a setup
MAX_SECONDS=${MAX_SECONDS:-1800}  # the whole script, checked between steps
NS_PREFIX=${NS_PREFIX:-cwbench-$$-} # names of the namespaces made here
# If set, net.ipv4.tcp_child_ehash_entries for the run (restored on exit): the
# namespaces made then get a TCP established table of their own instead of
# sharing the host's, which every sock_diag dump walks in full.
CHILD_EHASH=${CHILD_EHASH:-}

CW_ARGS=(--report --format json)

LG_PIDS=()   # loadgens running (each SIGKILLs its workers when stopped)
NETNS=()     # namespaces made here and not deleted yet
CHILD_EHASH_BEFORE="" # the sysctl's value to restore

# Stops every loadgen by pid (lib.sh's stop_pids): SIGTERM (each kills and
# reaps its workers), then SIGKILL after 30 s (workers die with it through
# PR_SET_PDEATHSIG).
stop_loadgens() {
    stop_pids loadgen "" "${LG_PIDS[@]}"
    LG_PIDS=()
}

# Deletes the namespaces made here, by name. Each goes away with its last
# process; the loadgens in them are stopped first.
delete_netns() {
    local ns
    for ns in "${NETNS[@]}"; do
        ip netns del "$ns" 2>/dev/null || warn "ip netns del $ns failed"
    done
    NETNS=()
}

# Run by the EXIT trap (lib.sh's cleanup), before $TMP is removed.
bench_cleanup() {
    stop_loadgens
    delete_netns
    if [[ -n $CHILD_EHASH_BEFORE ]]; then
        sysctl -qw net.ipv4.tcp_child_ehash_entries="$CHILD_EHASH_BEFORE" ||
            warn "could not restore net.ipv4.tcp_child_ehash_entries=$CHILD_EHASH_BEFORE"
    fi
}
bench_init closewatch-netns-bench
cd "$TMP" # stray output of a tool lands here, and is removed with it

((EUID == 0)) || die "run it as root: it makes network namespaces"
for tool in cargo ip jq python3 awk timeout; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
for v in PROCESSES SOCKETS NAMESPACES RUNS WARMUP; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number ≥ 1"
done
((PROCESSES % NAMESPACES == 0)) || die "PROCESSES ($PROCESSES) must be a multiple of NAMESPACES ($NAMESPACES)"
PER_NS=$((PROCESSES / NAMESPACES))
if [[ -n $CHILD_EHASH ]]; then
    [[ $CHILD_EHASH =~ ^[0-9]+$ ]] || die "CHILD_EHASH must be a number of hash buckets"
    CHILD_EHASH_BEFORE=$(sysctl -n net.ipv4.tcp_child_ehash_entries) ||
        die "this kernel has no net.ipv4.tcp_child_ehash_entries (Linux ≥ 6.1)"
    sysctl -qw net.ipv4.tcp_child_ehash_entries="$CHILD_EHASH" || die "cannot set tcp_child_ehash_entries"
fi
EHASH_NOTE="tcp_child_ehash_entries=$(sysctl -n net.ipv4.tcp_child_ehash_entries 2>/dev/null || echo n/a)"
if leftovers=$(ip netns list | awk '$1 ~ /^cwbench-/ {print $1}') && [[ -n $leftovers ]]; then
    warn "namespaces left by an earlier run that was killed: $(echo "$leftovers" | tr '\n' ' ')\
(they would be scanned too; remove them with ip netns del NAME)"
fi

# One run of a command, timed by its parent with wait4(2): see lib.sh.
write_measure_py

# ---------------------------------------------------------------- build ----
# The binaries (CW, LOADGEN, REVISION) and the FIFO that holds the loadgens:
# lib.sh. The loadgens exit at EOF on it, i.e. when this script dies however it
# dies (the namespaces then stay: see the warning above).
build_binaries
open_hold

# ------------------------------------------------------------- the load ----
# start_loadgen TAG NETNS|- PROCESSES: starts one loadgen, in namespace NETNS
# (`ip netns exec` execs it: the pid is loadgen's own) or in the host's.
start_loadgen() {
    local tag=$1 ns=$2 procs=$3 cmd=()
    [[ $ns == - ]] || cmd=(ip netns exec "$ns")
    cmd+=("$LOADGEN" --processes "$procs" --sockets "$SOCKETS" --close-wait-pct "$CLOSE_WAIT_PCT"
        --fin-wait2-pct "$FIN_WAIT2_PCT" --files "$FILES" --timeout "$SETUP_TIMEOUT")
    : >"$TMP/ready.$tag"
    "${cmd[@]}" <"$TMP/hold" >"$TMP/ready.$tag" 2>"$TMP/loadgen.$tag.err" {HOLD_FD}>&- &
    LG_PIDS+=($!)
}

# Waits for every loadgen's ready line; sets the expected figures:
# WORKER_PIDS (JSON array), EXPECT_CW, EXPECT_FW2, TOTAL_SOCKETS, TOTAL_FDS, SETUP.
await_loadgens() {
    local waited=0 tag pid ready n=${#LG_PIDS[@]} i
    for ((i = 0; i < n; i++)); do
        pid=${LG_PIDS[$i]} tag=${LG_TAGS[$i]}
        while [[ ! -s $TMP/ready.$tag ]]; do
            kill -0 "$pid" 2>/dev/null || {
                cat "$TMP/loadgen.$tag.err" >&2
                die "loadgen $tag exited before it was ready"
            }
            ((waited++ < SETUP_TIMEOUT * 10)) || die "loadgen $tag not ready after $SETUP_TIMEOUT s"
            sleep 0.1
        done
    done
    for ((i = 0; i < n; i++)); do
        IFS= read -r ready <"$TMP/ready.${LG_TAGS[$i]}"
        echo "$ready"
    done >"$TMP/ready.all"
    WORKER_PIDS=$(jq -s -c '[.[].worker_pids[]]' "$TMP/ready.all")
    EXPECT_CW=$(jq -s '[.[].close_wait] | add' "$TMP/ready.all")
    EXPECT_FW2=$(jq -s '[.[].fin_wait2_owned] | add' "$TMP/ready.all")
    TOTAL_SOCKETS=$(jq -s '[.[].sockets] | add' "$TMP/ready.all")
    TOTAL_FDS=$(jq -s '[.[].fds] | add' "$TMP/ready.all")
    SETUP=$(jq -s '[.[].setup_seconds] | max' "$TMP/ready.all")
}

loadgens_alive() {
    local i
    for ((i = 0; i < ${#LG_PIDS[@]}; i++)); do
        kill -0 "${LG_PIDS[$i]}" 2>/dev/null ||
            die "loadgen ${LG_TAGS[$i]} died: $(tail -n 3 "$TMP/loadgen.${LG_TAGS[$i]}.err")"
    done
}

# ----------------------------------------------------------- one run ----
# Runs closewatch once and checks the run: exit 0/1/2; every namespace in
# namespaces[] scanned, each of this layout's namespaces among them with the
# CLOSE_WAIT its loadgen built; the CLOSE_WAIT and owned FIN_WAIT_2 attributed
# to the loadgen workers equal what they built. Appends
# "wall cpu scan_duration namespaces" to $1 for a timed run.
run_closewatch() {
    local results=$1 mode=$2 line rc wall user sys
    line=$(python3 "$TMP/measure.py" "$CMD_TIMEOUT" "$TMP/cw.json" "$TMP/cw.err" "$CW" "${CW_ARGS[@]}" \
        {HOLD_FD}>&-) || die "closewatch measurement failed"
    read -r rc wall user sys <<<"$line"
    if [[ $rc != [012] ]]; then
        sed 's/^/  closewatch stderr: /' "$TMP/cw.err" | head -20 >&2
        die "closewatch exited $rc (expected 0, 1 or 2)"
    fi
    local check
    check=$(jq -r --argjson pids "$WORKER_PIDS" --argjson want "$WANT_NS" "$REPORT_JQ"'
        workers($pids) as $w
        | .namespaces as $ns
        | [ (.namespaces | length),
            ([.namespaces[] | select(.scanned != true)] | length),
            # Namespaces of this layout missing, or holding another CLOSE_WAIT
            # count than their loadgen built.
            ([$want[] | . as $n | select(([$ns[] | select(.netns == $n.netns and .scanned == true
                and .tcp_states.close_wait >= $n.close_wait)] | length) == 0)] | length),
            attributed($w),
            ($w | length),
            (.errors | length),
            .attribution_complete,
            .scan_duration_seconds,
            .status ] | @tsv' "$TMP/cw.json") ||
        die "closewatch printed invalid JSON"
    local namespaces unscanned missing attributed fw2 listed errors complete scan status
    read -r namespaces unscanned missing attributed fw2 listed errors complete scan status <<<"$check"
    if ((unscanned > 0 || missing > 0 || attributed != EXPECT_CW || fw2 != EXPECT_FW2)); then
        local kept=${TMPDIR:-/tmp}/closewatch-netns-bad-report.json
        cp "$TMP/cw.json" "$kept" 2>/dev/null || true
        die "closewatch listed $namespaces namespaces, $unscanned not scanned, $missing of this layout's \
missing or short of CLOSE_WAIT; it attributed $attributed CLOSE_WAIT and $fw2 FIN_WAIT_2 to $listed \
loadgen workers; the loadgens built $EXPECT_CW and $EXPECT_FW2 in $PROCESSES (report kept as $kept)"
    fi
    if ((errors > 0)) || [[ $complete != true ]]; then
        warn "closewatch reported $errors scan errors, attribution_complete=$complete"
    fi
    if [[ -s $TMP/cw.err && $mode == warmup ]]; then
        sed 's/^/  closewatch stderr: /' "$TMP/cw.err" | head -5 >&2
    fi
    STATUSES[$status]=$((${STATUSES[$status]:-0} + 1))
    LAST_NAMESPACES=$namespaces
    if [[ $mode == timed ]]; then
        awk -v w="$wall" -v u="$user" -v s="$sys" -v d="$scan" -v n="$namespaces" \
            'BEGIN {printf "%s %.6f %s %s\n", w, u + s, d, n}' >>"$results"
    fi
}

# ----------------------------------------------------------- one layout ----
SUMMARY=()
declare -A WALL CPU SCAN

run_layout() {
    local n=$1 i name
    check_budget
    LG_PIDS=()
    LG_TAGS=()
    # [{netns: inode, close_wait}] of the namespaces this layout loads.
    local want_file=$TMP/want.$n
    : >"$want_file"
    if ((n == 1)); then
        note "layout 1: loadgen --processes $PROCESSES --sockets $SOCKETS in the host's namespace"
        LG_TAGS+=(host)
        start_loadgen host - "$PROCESSES"
    else
        note "layout $n: $n namespaces, loadgen --processes $PER_NS --sockets $SOCKETS in each"
        for ((i = 1; i <= n; i++)); do
            name=$(printf '%s%02d' "$NS_PREFIX" "$i")
            ip netns add "$name" || die "ip netns add $name failed"
            NETNS+=("$name")
            ip -n "$name" link set lo up || die "cannot bring lo up in $name"
            LG_TAGS+=("$name")
            start_loadgen "$name" "$name" "$PER_NS"
        done
    fi
    await_loadgens
    if ((n == 1)); then
        jq -c --argjson ino "$(stat -L -c %i /proc/self/ns/net)" '{netns: $ino, close_wait}' \
            "$TMP/ready.host" >>"$want_file"
    else
        for name in "${LG_TAGS[@]}"; do
            jq -c --argjson ino "$(stat -L -c %i "/run/netns/$name")" '{netns: $ino, close_wait}' \
                "$TMP/ready.$name" >>"$want_file"
        done
    fi
    WANT_NS=$(jq -s -c . "$want_file")
    local busy
    busy=$(settle_host) # at most SETTLE_SECONDS, for a quiet second
    note "layout $n: ready in $SETUP s: $TOTAL_SOCKETS sockets, $TOTAL_FDS fds, $EXPECT_CW CLOSE_WAIT; host ${busy}% busy"
    ((busy <= 10)) || warn "the host was ${busy}% busy with the load idle: timings will be noisy"

    local res=$TMP/layout.$n total=$((WARMUP + RUNS)) mode
    : >"$res"
    declare -gA STATUSES=()
    for ((i = 0; i < total; i++)); do
        check_budget
        loadgens_alive
        mode=timed
        ((i < WARMUP)) && mode=warmup
        run_closewatch "$res" "$mode"
        note "layout $n: run $((i + 1))/$total ($mode) done"
    done
    loadgens_alive
    stop_loadgens
    delete_netns

    WALL[$n]=$(col_median "$res" 1)
    CPU[$n]=$(col_median "$res" 2)
    SCAN[$n]=$(col_median "$res" 3)
    local statuses
    statuses=$(for s in "${!STATUSES[@]}"; do printf '%s×%s ' "$s" "${STATUSES[$s]}"; done)
    {
        echo
        echo "== $n namespace(s) loaded: $PROCESSES processes × $SOCKETS sockets in all — $TOTAL_SOCKETS TCP \
sockets, $TOTAL_FDS fds, $EXPECT_CW CLOSE_WAIT (setup $SETUP s; host ${busy}% busy before); \
closewatch scanned $LAST_NAMESPACES namespaces"
        printf '%-32s %5s %11s %11s %11s %11s\n' "command" "runs" "wall med" "wall min" "CPU med" "scan med"
        printf '%-32s %5s %8s ms %8s ms %8s ms %8s ms\n' "closewatch ${CW_ARGS[*]}" "$RUNS" \
            "$(ms "${WALL[$n]}")" "$(ms "$(col_min "$res" 1)")" "$(ms "${CPU[$n]}")" "$(ms "${SCAN[$n]}")"
        echo "wall per run, ms: $(awk '{printf "%.1f ", $1 * 1000}' "$res")"
        echo "report status ${statuses% }"
    }
    SUMMARY+=("| $n | $LAST_NAMESPACES | $PROCESSES × $SOCKETS | $TOTAL_SOCKETS | $EXPECT_CW \
| $(ms "${WALL[$n]}") | $(ms "${CPU[$n]}") | $(ms "${SCAN[$n]}") |")
}

echo "closewatch $REVISION on $(uname -r), $(nproc) CPUs; $RUNS timed runs + $WARMUP warmup per layout; $EHASH_NOTE"
run_layout 1
run_layout "$NAMESPACES"

echo
# Ratios with two decimals here (compare.sh's have one).
echo "ratio $NAMESPACES-ns / 1-ns: wall $(ratio "${WALL[$NAMESPACES]}" "${WALL[1]}" 2)×, \
CPU $(ratio "${CPU[$NAMESPACES]}" "${CPU[1]}" 2)×, scan_duration $(ratio "${SCAN[$NAMESPACES]}" "${SCAN[1]}" 2)×"
echo
echo "### closewatch --report, 1 vs $NAMESPACES network namespaces ($REVISION, $(uname -r), $(nproc) CPUs, $EHASH_NOTE, medians of $RUNS runs)"
echo
echo "| namespaces loaded | namespaces scanned | processes × sockets | TCP sockets | CLOSE_WAIT | wall ms | CPU ms | scan_duration ms |"
echo "|--:|--:|---|--:|--:|--:|--:|--:|"
printf '%s\n' "${SUMMARY[@]}"
echo "| ratio | | | | | $(ratio "${WALL[$NAMESPACES]}" "${WALL[1]}" 2)× | $(ratio "${CPU[$NAMESPACES]}" "${CPU[1]}" 2)× \
| $(ratio "${SCAN[$NAMESPACES]}" "${SCAN[1]}" 2)× |"
