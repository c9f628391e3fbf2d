#!/usr/bin/env bash
# Measures `closewatch --report --format json` against `ss -tanp state close-wait`
# on the same loopback socket load (examples/loadgen.rs), at three scales.
# See benches/README.md for how to run it and what the numbers mean.
#
# Everything it starts is stopped by pid from an EXIT trap, on success, failure
# or Ctrl-C; every step is bounded by a timeout and the whole run by MAX_SECONDS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/benches/lib.sh"

SCALES=${SCALES:-"small medium large"}
SMALL=${SMALL:-10x1000}      # processes x sockets per process
MEDIUM=${MEDIUM:-100x1000}
LARGE=${LARGE:-200x2000}
RUNS=${RUNS:-5}              # timed runs of each command per scale
WARMUP=${WARMUP:-1}          # untimed runs of each command first
CLOSE_WAIT_PCT=${CLOSE_WAIT_PCT:-10}
FIN_WAIT2_PCT=${FIN_WAIT2_PCT:-$CLOSE_WAIT_PCT}
FILES=${FILES:-100}          # regular files held open per loadgen worker
CMD_TIMEOUT=${CMD_TIMEOUT:-180}     # seconds, one closewatch or ss run
SETUP_TIMEOUT=${SETUP_TIMEOUT:-300} # seconds, loadgen until ready
BUILD_TIMEOUT=${BUILD_TIMEOUT:-900} # seconds, cargo build
MAX_SECONDS=${MAX_SECONDS:-3600}    # the whole script, checked between steps
SETTLE_SECONDS=${SETTLE_SECONDS:-20} # at most, for the host to go quiet after a setup

CW_ARGS=(--report --format json)
SS_ARGS=(-tanp state close-wait)

LG_PID=""

# Stops loadgen by pid: SIGTERM (it kills and reaps its workers), then SIGKILL
# (its workers die with it through PR_SET_PDEATHSIG). A loadgen that had
# already exited is a warning with the end of its stderr.
stop_loadgen() {
    stop_pids loadgen "$TMP/loadgen.err" "$LG_PID"
    LG_PID=""
}

# Run by the EXIT trap (lib.sh's cleanup), before $TMP is removed.
bench_cleanup() {
    stop_loadgen
}
bench_init closewatch-bench

for tool in cargo ss jq python3 awk; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ $RUNS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[1-9][0-9]*$ ]] ||
    die "RUNS and WARMUP must be ≥ 1 (peak RSS is measured in the warmup runs)"
/usr/bin/time -f %M true 2>/dev/null >&2 || die "GNU time (/usr/bin/time) is required"

# One run of a command, timed by its parent with wait4(2): see lib.sh.
write_measure_py

# measure MODE OUT ERR CMD... → "rc wall user sys peak_rss_kib"
#
# Peak RSS comes from warmup runs, under GNU time: ru_maxrss of a child that
# Python spawns (or forks) includes Python's own ~13 MiB from before the exec,
# and wrapping the timed runs in GNU time would add its CPU to theirs. Timed
# runs print "-" for the RSS.
measure() {
    local mode=$1 out=$2 err=$3 line rc wall user sys
    shift 3
    if [[ $mode == warmup ]]; then
        line=$(python3 "$TMP/measure.py" "$CMD_TIMEOUT" "$out" "$err" \
            /usr/bin/time -f %M -o "$TMP/rss" "$@" {HOLD_FD}>&-) || return 1
        read -r rc wall user sys <<<"$line"
        # GNU time writes "Command exited with non-zero status N" first then.
        echo "$rc $wall $user $sys $(tail -n 1 "$TMP/rss")"
    else
        line=$(python3 "$TMP/measure.py" "$CMD_TIMEOUT" "$out" "$err" "$@" {HOLD_FD}>&-) || return 1
        echo "$line -"
    fi
}

# ---------------------------------------------------------------- build ----
# The binaries (CW, LOADGEN, REVISION) and the FIFO that holds loadgen: lib.sh.
build_binaries
open_hold

# ----------------------------------------------------------- one command ----
# Runs closewatch once and checks the run: exit 0/1/2 and the CLOSE_WAIT and
# owned FIN_WAIT_2 it attributes to the loadgen workers equal what loadgen
# built. Appends "wall cpu scan_duration rc" to $1 for a timed run, the peak
# RSS to $1.rss for a warmup run.
run_closewatch() {
    local results=$1 mode=$2 line rc wall user sys rss
    line=$(measure "$mode" "$TMP/cw.json" "$TMP/cw.err" "$CW" "${CW_ARGS[@]}") ||
        die "closewatch measurement failed"
    read -r rc wall user sys rss <<<"$line"
    if [[ $rc != [012] ]]; then
        sed 's/^/  closewatch stderr: /' "$TMP/cw.err" | head -20 >&2
        die "closewatch exited $rc (expected 0, 1 or 2)"
    fi
    local check
    check=$(jq -r --argjson pids "$WORKER_PIDS" "$REPORT_JQ"'
        workers($pids) as $w
        | [ .tcp_states.close_wait,
            attributed($w),
            ($w | length),
            (.errors | length),
            .attribution_complete,
            .scan_duration_seconds,
            .status ] | @tsv' "$TMP/cw.json") || die "closewatch printed invalid JSON"
    local total attributed fw2 listed errors complete scan status
    read -r total attributed fw2 listed errors complete scan status <<<"$check"
    if ((attributed != EXPECT_CW || fw2 != EXPECT_FW2 || total < EXPECT_CW)); then
        local kept=${TMPDIR:-/tmp}/closewatch-bad-report.json
        cp "$TMP/cw.json" "$kept" 2>/dev/null || true
        die "closewatch saw $total CLOSE_WAIT on the host, $attributed CLOSE_WAIT and $fw2 \
FIN_WAIT_2 in $listed loadgen workers; loadgen built $EXPECT_CW and $EXPECT_FW2 in $PROCS \
(report kept as $kept)"
    fi
    if ((total != EXPECT_CW + BASELINE_CW)); then
        warn "host CLOSE_WAIT total $total ≠ loadgen $EXPECT_CW + $BASELINE_CW seen before it \
started (other programs are opening or closing connections)"
    fi
    if ((errors > 0)) || [[ $complete != true ]]; then
        warn "closewatch reported $errors scan errors, attribution_complete=$complete"
    fi
    if [[ -s $TMP/cw.err && $mode == warmup ]]; then
        sed 's/^/  closewatch stderr: /' "$TMP/cw.err" | head -5 >&2
    fi
    CW_STATUS[$status]=$((${CW_STATUS[$status]:-0} + 1))
    if [[ $mode == timed ]]; then
        awk -v w="$wall" -v u="$user" -v s="$sys" -v d="$scan" -v c="$rc" \
            'BEGIN {printf "%s %.6f %s %s\n", w, u + s, d, c}' >>"$results"
    else
        echo "$rss" >>"$results.rss"
    fi
}

# Runs ss once; checks it exited 0 and names the loadgen workers as owners of
# as many CLOSE_WAIT sockets as loadgen built (a warning otherwise).
run_ss() {
    local results=$1 mode=$2 line rc wall user sys rss owned
    line=$(measure "$mode" "$TMP/ss.out" "$TMP/ss.err" ss "${SS_ARGS[@]}") || die "ss measurement failed"
    read -r rc wall user sys rss <<<"$line"
    [[ $rc == 0 ]] || die "ss exited $rc: $(head -3 "$TMP/ss.err")"
    owned=$(grep -c 'users:(("loadgen"' "$TMP/ss.out" || true)
    if ((owned != EXPECT_CW)); then
        warn "ss names loadgen as owner of $owned CLOSE_WAIT sockets, loadgen built $EXPECT_CW"
    fi
    if [[ $mode == timed ]]; then
        awk -v w="$wall" -v u="$user" -v s="$sys" 'BEGIN {printf "%s %.6f\n", w, u + s}' >>"$results"
    else
        echo "$rss" >>"$results.rss"
    fi
}

# ------------------------------------------------------------ one scale ----
SUMMARY=()
# Per scale run, in order: "name fds cw_cpu_seconds ss_cpu_seconds", for the
# linearity line.
PER_FD=()

# CPU µs per fd: per_fd CPU_SECONDS FDS.
per_fd() { awk -v c="$1" -v f="$2" 'BEGIN {if (f > 0) printf "%.2f", 1e6 * c / f; else print "n/a"}'; }

# fds open on the whole host (st_size of /proc/PID/fd is the fd count), and
# processes: what both commands walk, loadgen's and everyone else's.
host_fds() {
    local sizes
    sizes=$(stat -c %s /proc/[0-9]*/fd 2>/dev/null || true)
    awk '{s += $1; n++} END {printf "%d fds in %d processes", s, n}' <<<"$sizes"
}

run_scale() {
    local name=$1 spec=$2
    PROCS=${spec%x*}
    local sockets=${spec#*x}
    [[ $PROCS =~ ^[0-9]+$ && $sockets =~ ^[0-9]+$ ]] || die "scale $name: '$spec' is not PROCESSESxSOCKETS"
    check_budget

    BASELINE_CW=$(ss -Htan state close-wait | wc -l)
    start_loadgen_and_wait "$PROCS" "$sockets" "$name" # sets LG_PID, LG_READY
    local ready=$LG_READY
    WORKER_PIDS=$(jq -c .worker_pids <<<"$ready")
    EXPECT_CW=$(jq .close_wait <<<"$ready")
    EXPECT_FW2=$(jq .fin_wait2_owned <<<"$ready")
    local total_sockets total_fds setup busy
    total_sockets=$(jq .sockets <<<"$ready")
    total_fds=$(jq .fds <<<"$ready")
    setup=$(jq .setup_seconds <<<"$ready")
    busy=$(settle_host) # at most SETTLE_SECONDS, for a quiet second
    local host
    host=$(host_fds)
    note "$name: ready in $setup s; host CPU ${busy}% busy before measuring; host: $host"
    if awk -v b="$busy" 'BEGIN {exit !(b > 10)}'; then
        warn "the host was ${busy}% busy with the load idle: something else is running; timings \
will be noisy"
    fi

    local cw_res=$TMP/$name.closewatch ss_res=$TMP/$name.ss
    : >"$cw_res"
    : >"$cw_res.rss"
    : >"$ss_res"
    : >"$ss_res.rss"
    declare -gA CW_STATUS=()
    local i total=$((WARMUP + RUNS))
    for ((i = 0; i < total; i++)); do
        check_budget
        kill -0 "$LG_PID" 2>/dev/null ||
            die "$name: loadgen died during the measurement: $(tail -n 3 "$TMP/loadgen.err")"
        local mode=timed
        ((i < WARMUP)) && mode=warmup
        # ABBA order, so that neither command always runs on the other's
        # warm caches.
        if ((i % 2 == 0)); then
            run_closewatch "$cw_res" "$mode"
            run_ss "$ss_res" "$mode"
        else
            run_ss "$ss_res" "$mode"
            run_closewatch "$cw_res" "$mode"
        fi
        note "$name: round $((i + 1))/$total ($mode) done"
    done
    kill -0 "$LG_PID" 2>/dev/null ||
        die "$name: loadgen died during the measurement: $(tail -n 3 "$TMP/loadgen.err")"
    stop_loadgen

    local cw_wall cw_wall_min cw_cpu cw_rss cw_scan ss_wall ss_wall_min ss_cpu ss_rss statuses
    cw_wall=$(col_median "$cw_res" 1)
    cw_wall_min=$(col_min "$cw_res" 1)
    cw_cpu=$(col_median "$cw_res" 2)
    cw_rss=$(col_max "$cw_res.rss" 1)
    cw_scan=$(col_median "$cw_res" 3)
    ss_wall=$(col_median "$ss_res" 1)
    ss_wall_min=$(col_min "$ss_res" 1)
    ss_cpu=$(col_median "$ss_res" 2)
    ss_rss=$(col_max "$ss_res.rss" 1)
    statuses=$(for s in "${!CW_STATUS[@]}"; do printf '%s×%s ' "$s" "${CW_STATUS[$s]}"; done)

    {
        echo
        echo "== $name: $PROCS processes × $sockets sockets — $total_sockets TCP sockets, $total_fds fds, \
$EXPECT_CW CLOSE_WAIT, $EXPECT_FW2 owned FIN_WAIT_2 (loadgen setup $setup s; host ${busy}% busy before)"
        printf '%-36s %5s %11s %11s %11s %10s\n' "command" "runs" "wall med" "wall min" "CPU med" "peak RSS"
        printf '%-36s %5s %8s ms %8s ms %8s ms %6s MiB\n' "closewatch ${CW_ARGS[*]}" "$RUNS" \
            "$(ms "$cw_wall")" "$(ms "$cw_wall_min")" "$(ms "$cw_cpu")" "$(mib "$cw_rss")"
        printf '%-36s %5s %8s ms %8s ms %8s ms %6s MiB\n' "ss ${SS_ARGS[*]}" "$RUNS" \
            "$(ms "$ss_wall")" "$(ms "$ss_wall_min")" "$(ms "$ss_cpu")" "$(mib "$ss_rss")"
        echo "ratio ss/closewatch: wall $(ratio "$ss_wall" "$cw_wall")×, CPU $(ratio "$ss_cpu" "$cw_cpu")×"
        echo "wall per run, ms: closewatch $(awk '{printf "%.1f ", $1 * 1000}' "$cw_res")|\
 ss$(awk '{printf " %.1f", $1 * 1000}' "$ss_res")"
        echo "closewatch: own scan_duration_seconds median $(ms "$cw_scan") ms; report status ${statuses% }"
        echo "CPU per fd of loadgen: closewatch $(per_fd "$cw_cpu" "$total_fds") µs, ss $(per_fd "$ss_cpu" "$total_fds") µs \
(host before the runs, loadgen included: $host)"
    }
    SUMMARY+=("| $name | $PROCS × $sockets | $total_sockets | $total_fds | $EXPECT_CW \
| $(ms "$cw_wall") | $(ms "$cw_cpu") | $(per_fd "$cw_cpu" "$total_fds") | $(mib "$cw_rss") \
| $(ms "$ss_wall") | $(ms "$ss_cpu") | $(per_fd "$ss_cpu" "$total_fds") | $(mib "$ss_rss") \
| $(ratio "$ss_wall" "$cw_wall")× | $(ratio "$ss_cpu" "$cw_cpu")× |")
    PER_FD+=("$name $total_fds $cw_cpu $ss_cpu")
}

# linearity COLUMN: CPU per fd at each scale run relative to the first one
# ("1.00 / 0.93 / 1.05"): 1.00 throughout is linear, below 1 better.
# COLUMN 3 is closewatch's, 4 ss's.
linearity() {
    printf '%s\n' "${PER_FD[@]}" | awk -v c="$1" '{
        v = ($2 > 0) ? $c / $2 : 0
        if (NR == 1) base = v
        out = out ((NR > 1) ? " / " : "") ((base > 0) ? sprintf("%.2f", v / base) : "n/a")
    } END {print out}'
}

echo "closewatch $REVISION on $(uname -r), $(nproc) CPUs; $RUNS timed runs + $WARMUP warmup per command, alternating"
for scale in $SCALES; do
    case $scale in
    small) run_scale small "$SMALL" ;;
    medium) run_scale medium "$MEDIUM" ;;
    large) run_scale large "$LARGE" ;;
    *) die "unknown scale '$scale' (small, medium, large)" ;;
    esac
done

echo
echo "### closewatch vs \`ss -tanp state close-wait\` ($REVISION, $(uname -r), $(nproc) CPUs, medians of $RUNS runs)"
echo
echo "| scale | processes × sockets | TCP sockets | fds | CLOSE_WAIT | closewatch wall ms | closewatch CPU ms \
| closewatch CPU µs/fd | closewatch peak RSS MiB | ss wall ms | ss CPU ms | ss CPU µs/fd | ss peak RSS MiB \
| wall ss/closewatch | CPU ss/closewatch |"
echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
printf '%s\n' "${SUMMARY[@]}"
if ((${#PER_FD[@]} > 0)); then
    scales=$(printf '%s\n' "${PER_FD[@]}" | awk '{printf "%s%s", (NR > 1) ? " / " : "", $1}')
    echo
    echo "Linearity, CPU per fd relative to ${PER_FD[0]%% *} ($scales): closewatch $(linearity 3); ss $(linearity 4)"
fi
