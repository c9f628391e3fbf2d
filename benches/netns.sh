#!/usr/bin/env bash
# Measures `closewatch --report --format json` with the same socket load
# (examples/loadgen.rs) in one network namespace (the host's) and spread over
# NAMESPACES namespaces made with `ip netns add` (20 by default; a list, e.g.
# "50 300", measures each), to show what entering and dumping each namespace
# costs, with each attribution backend (ATTRIBUTIONS). Prints the ratio
# N-ns / 1-ns. With PER_NAMESPACE=PxS every namespace holds the same load
# instead (P workers × S sockets; the 1-ns layout one such load in the
# host's): `PER_NAMESPACE=1x20 CLOSE_WAIT_PCT=100 FILES=0 NAMESPACES="50 300"`
# is 10 CLOSE_WAIT in each of 50, then 300 namespaces.
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
NAMESPACES=${NAMESPACES:-20}      # namespaces of the other layouts (a list)
PER_NAMESPACE=${PER_NAMESPACE:-}  # PxS: the load of each namespace (else PROCESSES split over them)
ATTRIBUTIONS=${ATTRIBUTIONS:-"procfs bpf"} # closewatch --attribution values, interleaved
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
BACKENDS=()

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
/usr/bin/time -f %M true 2>/dev/null >&2 || die "GNU time (/usr/bin/time) is required"
if [[ -n $PER_NAMESPACE ]]; then
    [[ $PER_NAMESPACE =~ ^([1-9][0-9]*)x([1-9][0-9]*)$ ]] || die "PER_NAMESPACE must be PROCESSESxSOCKETS"
    PROCESSES=${BASH_REMATCH[1]}
    SOCKETS=${BASH_REMATCH[2]}
fi
for v in PROCESSES SOCKETS RUNS WARMUP; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number ≥ 1"
done
for n in $NAMESPACES; do
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "NAMESPACES must be whole numbers ≥ 1"
    [[ -n $PER_NAMESPACE ]] || ((PROCESSES % n == 0)) ||
        die "PROCESSES ($PROCESSES) must be a multiple of each of NAMESPACES ($NAMESPACES)"
done
for a in $ATTRIBUTIONS; do
    [[ $a == procfs || $a == bpf || $a == auto ]] || die "unknown attribution '$a' (procfs, bpf, auto)"
    BACKENDS+=("$a")
done
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
# Runs closewatch once with --attribution BACKEND and checks the run: exit
# 0/1/2; the report's attribution BACKEND's; every namespace in namespaces[]
# scanned, each of this layout's namespaces among them with the CLOSE_WAIT its
# loadgen built; the CLOSE_WAIT and owned FIN_WAIT_2 attributed to the loadgen
# workers equal what they built. Appends "wall cpu scan_duration namespaces
# bpf_load" to $1 for a timed run; a warmup run runs under GNU time and
# appends its peak RSS (KiB) to $1.rss (in a timed run GNU time's CPU would
# count). Keeps the report's counts (REPORT_COUNTS_JQ) in $1.counts.
run_closewatch() {
    local results=$1 mode=$2 backend=$3 line rc wall user sys wrap=()
    [[ $mode == warmup ]] && wrap=(/usr/bin/time -f %M -o "$TMP/rss")
    line=$(RUST_LOG=$CW_RUST_LOG python3 "$TMP/measure.py" "$CMD_TIMEOUT" "$TMP/cw.json" "$TMP/cw.err" \
        "${wrap[@]}" "$CW" "${CW_ARGS[@]}" --attribution "$backend" {HOLD_FD}>&-) ||
        die "closewatch measurement failed"
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
            .status,
            .attribution ] | @tsv' "$TMP/cw.json") ||
        die "closewatch printed invalid JSON"
    local namespaces unscanned missing attributed fw2 listed errors complete scan status attribution
    read -r namespaces unscanned missing attributed fw2 listed errors complete scan status attribution <<<"$check"
    [[ $backend == auto || $attribution == "$backend" ]] ||
        die "closewatch --attribution $backend reported attribution \"$attribution\""
    jq -c --argjson pids null "$REPORT_COUNTS_JQ" "$TMP/cw.json" >"$results.counts"
    jq -c --argjson pids "$WORKER_PIDS" "$REPORT_COUNTS_JQ $WORKER_COUNTS_JQ" "$TMP/cw.json" >"$results.wcounts"
    if ((unscanned > 0 || missing > 0 || attributed != EXPECT_CW || fw2 != EXPECT_FW2)); then
        local kept=${TMPDIR:-/tmp}/closewatch-netns-bad-report.json
        cp "$TMP/cw.json" "$kept" 2>/dev/null || true
        die "closewatch --attribution $backend listed $namespaces namespaces, $unscanned not scanned, \
$missing of this layout's missing or short of CLOSE_WAIT; it attributed $attributed CLOSE_WAIT and $fw2 \
FIN_WAIT_2 to $listed loadgen workers; the loadgens built $EXPECT_CW and $EXPECT_FW2 (report kept as $kept)"
    fi
    if ((errors > 0)) || [[ $complete != true ]]; then
        warn "closewatch reported $errors scan errors, attribution_complete=$complete"
    fi
    if [[ $mode == warmup ]] && grep -qv 'BPF iterators loaded in' "$TMP/cw.err"; then
        grep -v 'BPF iterators loaded in' "$TMP/cw.err" | sed 's/^/  closewatch stderr: /' | head -5 >&2
    fi
    STATUSES[$backend.$status]=$((${STATUSES[$backend.$status]:-0} + 1))
    LAST_NAMESPACES=$namespaces
    if [[ $mode == timed ]]; then
        awk -v w="$wall" -v u="$user" -v s="$sys" -v d="$scan" -v n="$namespaces" \
            -v l="$(bpf_load_seconds "$TMP/cw.err")" 'BEGIN {printf "%s %.6f %s %s %s\n", w, u + s, d, n, l}' >>"$results"
    else
        tail -n 1 "$TMP/rss" >>"$results.rss"
    fi
}

# ----------------------------------------------------------- one layout ----
SUMMARY=()
COUNT_SUMMARY=()
declare -A WALL CPU SCAN

run_layout() {
    local n=$1 i name per_ns
    check_budget
    LG_PIDS=()
    LG_TAGS=()
    # [{netns: inode, close_wait}] of the namespaces this layout loads.
    local want_file=$TMP/want.$n
    : >"$want_file"
    if [[ -n $PER_NAMESPACE ]]; then per_ns=$PROCESSES; else per_ns=$((PROCESSES / n)); fi
    if ((n == 1)); then
        note "layout 1: loadgen --processes $per_ns --sockets $SOCKETS in the host's namespace"
        LG_TAGS+=(host)
        start_loadgen host - "$per_ns"
    else
        note "layout $n: $n namespaces, loadgen --processes $per_ns --sockets $SOCKETS in each"
        for ((i = 1; i <= n; i++)); do
            name=$(printf '%s%03d' "$NS_PREFIX" "$i")
            ip netns add "$name" || die "ip netns add $name failed"
            NETNS+=("$name")
            ip -n "$name" link set lo up || die "cannot bring lo up in $name"
            LG_TAGS+=("$name")
            start_loadgen "$name" "$name" "$per_ns"
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

    local b res total=$((WARMUP + RUNS)) mode j nb=${#BACKENDS[@]}
    for b in "${BACKENDS[@]}"; do
        : >"$TMP/layout.$n.$b"
        : >"$TMP/layout.$n.$b.rss"
    done
    declare -gA STATUSES=()
    for ((i = 0; i < total; i++)); do
        check_budget
        loadgens_alive
        mode=timed
        ((i < WARMUP)) && mode=warmup
        # The backends take turns to go first.
        for ((j = 0; j < nb; j++)); do
            b=${BACKENDS[$(((i + j) % nb))]}
            run_closewatch "$TMP/layout.$n.$b" "$mode" "$b"
        done
        note "layout $n: round $((i + 1))/$total ($mode) done"
    done
    loadgens_alive
    stop_loadgens
    delete_netns

    local statuses load rss
    statuses=$(for s in "${!STATUSES[@]}"; do printf '%s×%s ' "$s" "${STATUSES[$s]}"; done)
    {
        echo
        echo "== $n namespace(s) loaded: $per_ns processes × $SOCKETS sockets in each — $TOTAL_SOCKETS TCP \
sockets, $TOTAL_FDS fds, $EXPECT_CW CLOSE_WAIT (setup $SETUP s; host ${busy}% busy before); \
closewatch scanned $LAST_NAMESPACES namespaces"
        printf '%-34s %5s %11s %11s %11s %11s %10s\n' "command" "runs" "wall med" "wall min" "CPU med" "scan med" "peak RSS"
    }
    for b in "${BACKENDS[@]}"; do
        res=$TMP/layout.$n.$b
        WALL[$n.$b]=$(col_median "$res" 1)
        CPU[$n.$b]=$(col_median "$res" 2)
        SCAN[$n.$b]=$(col_median "$res" 3)
        load=$(awk '$5 != "nan" {print $5}' "$res" | median)
        rss=$(col_max "$res.rss" 1)
        printf '%-34s %5s %8s ms %8s ms %8s ms %8s ms %6s MiB\n' "closewatch --attribution $b" "$RUNS" \
            "$(ms "${WALL[$n.$b]}")" "$(ms "$(col_min "$res" 1)")" "$(ms "${CPU[$n.$b]}")" "$(ms "${SCAN[$n.$b]}")" \
            "$(mib "$rss")"
        echo "  wall per run, ms: $(awk '{printf "%.1f ", $1 * 1000}' "$res")"
        local vs1="" 
        if ((n != 1)) && [[ -n ${WALL[1.$b]:-} ]]; then
            vs1="$(ratio "${WALL[$n.$b]}" "${WALL[1.$b]}" 2)× | $(ratio "${CPU[$n.$b]}" "${CPU[1.$b]}" 2)×"
        else
            vs1=" | "
        fi
        SUMMARY+=("| $n | $LAST_NAMESPACES | $per_ns × $SOCKETS | $TOTAL_SOCKETS | $EXPECT_CW | $b \
| $(ms "${WALL[$n.$b]}") | $(ms "${CPU[$n.$b]}") | $(ms "${SCAN[$n.$b]}") | $(mib "$rss") \
| $([[ $load == nan ]] && echo - || ms "$load") | $vs1 |")
    done
    local fc wc
    for ((j = 1; j < nb; j++)); do
        fc=$(count_diff "$TMP/layout.$n.${BACKENDS[0]}.counts" "$TMP/layout.$n.${BACKENDS[$j]}.counts")
        wc=$(count_diff "$TMP/layout.$n.${BACKENDS[0]}.wcounts" "$TMP/layout.$n.${BACKENDS[$j]}.wcounts")
        COUNT_SUMMARY+=("| $n | ${BACKENDS[0]} → ${BACKENDS[$j]} | $wc | $fc |")
        echo "  report counts, ${BACKENDS[0]} → ${BACKENDS[$j]}: loadgen's workers: $wc; whole report: $fc"
    done
    echo "  report statuses: ${statuses% }"
}

DATE=$(date -u +%Y-%m-%d)
LAYOUTS="1 $NAMESPACES"
echo "closewatch $REVISION on $(uname -r), $(nproc) CPUs, $DATE; $RUNS timed runs + $WARMUP warmup per backend \
and layout, backends interleaved; $EHASH_NOTE"
for n in $LAYOUTS; do
    run_layout "$n"
done

echo
echo "### closewatch --report, 1 vs $NAMESPACES network namespaces, both backends ($REVISION, $(uname -r), \
$(nproc) CPUs, $DATE, $EHASH_NOTE, medians of $RUNS runs)"
echo
echo "| namespaces loaded | namespaces scanned | load per namespace | TCP sockets | CLOSE_WAIT | attribution \
| wall ms | CPU ms | scan_duration ms | peak RSS MiB | BPF load ms | wall / 1-ns | CPU / 1-ns |"
echo "|--:|--:|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|"
printf '%s\n' "${SUMMARY[@]}"
if ((${#COUNT_SUMMARY[@]} > 0)); then
    echo
    echo "### Do the backends' reports agree? (counts of the last timed report of each)"
    echo
    echo "| namespaces loaded | backends | counts that differ: loadgen's workers | whole report |"
    echo "|--:|---|---|---|"
    printf '%s\n' "${COUNT_SUMMARY[@]}"
fi
