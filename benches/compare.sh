#!/usr/bin/env bash
# Measures `closewatch --report --format json` against `ss -tanp state close-wait`
# on the same loopback socket load (examples/loadgen.rs), at three scales, with
# each attribution backend (`--attribution procfs` and `--attribution bpf`),
# and splits each backend's CPU into BPF load, iteration (or the /proc walk),
# sock_diag dumps and the rest (perf samples of a few more runs).
# See benches/README.md for how to run it and what the numbers mean.
#
# Everything it starts is stopped by pid from an EXIT trap, on success, failure
# or Ctrl-C; every step is bounded by a timeout and the whole run by MAX_SECONDS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/benches/lib.sh"

# Scales: small, medium, large, or NAME=PROCESSESxSOCKETS (benches/procs.sh).
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
ATTRIBUTIONS=${ATTRIBUTIONS:-"procfs bpf"} # closewatch --attribution values to measure
SPLIT_RUNS=${SPLIT_RUNS:-5}  # perf'd runs per backend for the CPU split (0: none)

CW_ARGS=(--report --format json)
SS_ARGS=(-tanp state close-wait)
# The commands of a round: one per backend, then ss.
COMMANDS=()

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
for a in $ATTRIBUTIONS; do
    [[ $a == procfs || $a == bpf || $a == auto ]] || die "unknown attribution '$a' (procfs, bpf, auto)"
    COMMANDS+=("$a")
done
COMMANDS+=(ss)
[[ $SPLIT_RUNS =~ ^[0-9]+$ ]] || die "SPLIT_RUNS must be a whole number"
if ((SPLIT_RUNS > 0)) && ! perf record -q -e cpu-clock -o /dev/null true 2>/dev/null; then
    warn "perf record does not work here: no CPU split (SPLIT_RUNS=0)"
    SPLIT_RUNS=0
fi
[[ $RUNS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[1-9][0-9]*$ ]] ||
    die "RUNS and WARMUP must be ≥ 1 (peak RSS is measured in the warmup runs)"
/usr/bin/time -f %M true 2>/dev/null >&2 || die "GNU time (/usr/bin/time) is required"

# One run of a command, timed by its parent with wait4(2), and the CPU split
# of a perf'd run: see lib.sh.
write_measure_py
write_split_py

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
# Runs closewatch once with --attribution BACKEND and checks the run: exit
# 0/1/2, the report's attribution is BACKEND's (auto: either), and the
# CLOSE_WAIT and owned FIN_WAIT_2 it attributes to the loadgen workers equal
# what loadgen built. Appends "wall cpu scan_duration rc bpf_load" to $1 for a
# timed run, the peak RSS to $1.rss for a warmup run; keeps the report's
# counts (REPORT_COUNTS_JQ) in $1.counts.
run_closewatch() {
    local results=$1 mode=$2 backend=$3 line rc wall user sys rss
    line=$(RUST_LOG=$CW_RUST_LOG measure "$mode" "$TMP/cw.json" "$TMP/cw.err" "$CW" "${CW_ARGS[@]}" \
        --attribution "$backend") || die "closewatch measurement failed"
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
            .status,
            .attribution ] | @tsv' "$TMP/cw.json") || die "closewatch printed invalid JSON"
    local total attributed fw2 listed errors complete scan status attribution
    read -r total attributed fw2 listed errors complete scan status attribution <<<"$check"
    if [[ $backend != auto && $attribution != "$backend" ]]; then
        sed 's/^/  closewatch stderr: /' "$TMP/cw.err" | head -5 >&2
        die "closewatch --attribution $backend reported attribution \"$attribution\""
    fi
    jq -c --argjson pids null "$REPORT_COUNTS_JQ" "$TMP/cw.json" >"$results.counts"
    jq -c --argjson pids "$WORKER_PIDS" "$REPORT_COUNTS_JQ $WORKER_COUNTS_JQ" "$TMP/cw.json" >"$results.wcounts"
    if ((attributed != EXPECT_CW || fw2 != EXPECT_FW2 || total < EXPECT_CW)); then
        local kept=${TMPDIR:-/tmp}/closewatch-bad-report.json
        cp "$TMP/cw.json" "$kept" 2>/dev/null || true
        die "closewatch --attribution $backend saw $total CLOSE_WAIT on the host, $attributed CLOSE_WAIT \
and $fw2 FIN_WAIT_2 in $listed loadgen workers; loadgen built $EXPECT_CW and $EXPECT_FW2 in $PROCS \
(report kept as $kept)"
    fi
    if ((total != EXPECT_CW + BASELINE_CW)); then
        warn "host CLOSE_WAIT total $total ≠ loadgen $EXPECT_CW + $BASELINE_CW seen before it \
started (other programs are opening or closing connections)"
    fi
    if ((errors > 0)) || [[ $complete != true ]]; then
        warn "closewatch --attribution $backend reported $errors scan errors, attribution_complete=$complete"
    fi
    if [[ $mode == warmup ]] && grep -qv 'BPF iterators loaded in' "$TMP/cw.err"; then
        grep -v 'BPF iterators loaded in' "$TMP/cw.err" | sed 's/^/  closewatch stderr: /' | head -5 >&2
    fi
    CW_STATUS[$backend.$status]=$((${CW_STATUS[$backend.$status]:-0} + 1))
    if [[ $mode == timed ]]; then
        awk -v w="$wall" -v u="$user" -v s="$sys" -v d="$scan" -v c="$rc" -v l="$(bpf_load_seconds "$TMP/cw.err")" \
            'BEGIN {printf "%s %.6f %s %s %s\n", w, u + s, d, c, l}' >>"$results"
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

# split_closewatch RESULTS BACKEND: one run under perf record (lib.sh's
# split_record); appends the CPU of each phase (lib.sh's split.py: "total
# load tasks fds walk sock_diag describe pids analyse render other", seconds)
# to RESULTS.split. The run is checked as the timed ones are, but not counted
# with them.
split_closewatch() {
    local results=$1 backend=$2 data=$TMP/perf.data
    RUST_LOG=$CW_RUST_LOG split_record "$data" "$CW" "${CW_ARGS[@]}" --attribution "$backend" || true
    local attribution
    attribution=$(jq -r .attribution "$data.stdout" 2>/dev/null) ||
        die "perf'd closewatch --attribution $backend printed no report: $(head -3 "$data.stderr")"
    [[ $attribution == "$backend" || $backend == auto ]] ||
        die "perf'd closewatch --attribution $backend reported attribution \"$attribution\""
    perf script -i "$data" -F tid,period,ip,sym 2>/dev/null | python3 "$TMP/split.py" >>"$results.split" ||
        die "could not read perf's samples"
    rm -f "$data"
}

# ------------------------------------------------------------ one scale ----
SUMMARY=()
SPLIT_SUMMARY=()
COUNT_SUMMARY=()
# Per scale run, in order: "name fds cpu_seconds..." (one per command of
# COMMANDS), for the linearity line.
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

# The label of a command in the tables.
label() {
    case $1 in
    ss) echo "ss ${SS_ARGS[*]}" ;;
    *) echo "closewatch --attribution $1" ;;
    esac
}

# run_command NAME RESULTS MODE: one run of a command of COMMANDS.
run_command() {
    case $1 in
    ss) run_ss "$2" "$3" ;;
    *) run_closewatch "$2" "$3" "$1" ;;
    esac
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
    local host host_fd_count
    host=$(host_fds)
    host_fd_count=${host%% *}
    note "$name: ready in $setup s; host CPU ${busy}% busy before measuring; host: $host"
    if awk -v b="$busy" 'BEGIN {exit !(b > 10)}'; then
        warn "the host was ${busy}% busy with the load idle: something else is running; timings \
will be noisy"
    fi

    local c res
    for c in "${COMMANDS[@]}"; do
        res=$TMP/$name.$c
        : >"$res"
        : >"$res.rss"
        : >"$res.split"
    done
    declare -gA CW_STATUS=()
    local i j n=${#COMMANDS[@]} total=$((WARMUP + RUNS)) mode
    for ((i = 0; i < total; i++)); do
        check_budget
        kill -0 "$LG_PID" 2>/dev/null ||
            die "$name: loadgen died during the measurement: $(tail -n 3 "$TMP/loadgen.err")"
        mode=timed
        ((i < WARMUP)) && mode=warmup
        # The order rotates from round to round, so that no command always
        # runs on another's warm caches (or always first).
        for ((j = 0; j < n; j++)); do
            c=${COMMANDS[$(((i + j) % n))]}
            run_command "$c" "$TMP/$name.$c" "$mode"
        done
        note "$name: round $((i + 1))/$total ($mode) done"
    done
    # The CPU split: perf'd runs, not counted with the timed ones.
    for ((i = 0; i < SPLIT_RUNS; i++)); do
        check_budget
        for c in "${COMMANDS[@]}"; do
            [[ $c == ss ]] || split_closewatch "$TMP/$name.$c" "$c"
        done
    done
    ((SPLIT_RUNS == 0)) || note "$name: $SPLIT_RUNS perf'd runs per backend done"
    kill -0 "$LG_PID" 2>/dev/null ||
        die "$name: loadgen died during the measurement: $(tail -n 3 "$TMP/loadgen.err")"
    stop_loadgen

    local statuses ss_wall ss_cpu per_fd_line="$name $total_fds"
    statuses=$(for s in "${!CW_STATUS[@]}"; do printf '%s×%s ' "$s" "${CW_STATUS[$s]}"; done)
    ss_wall=$(col_median "$TMP/$name.ss" 1)
    ss_cpu=$(col_median "$TMP/$name.ss" 2)
    {
        echo
        echo "== $name: $PROCS processes × $sockets sockets — $total_sockets TCP sockets, $total_fds fds, \
$EXPECT_CW CLOSE_WAIT, $EXPECT_FW2 owned FIN_WAIT_2 (loadgen setup $setup s; host ${busy}% busy before)"
        printf '%-44s %5s %11s %11s %11s %10s %11s\n' "command" "runs" "wall med" "wall min" "CPU med" "peak RSS" "scan med"
    }
    local wall wall_min cpu rss scan
    for c in "${COMMANDS[@]}"; do
        res=$TMP/$name.$c
        wall=$(col_median "$res" 1)
        wall_min=$(col_min "$res" 1)
        cpu=$(col_median "$res" 2)
        rss=$(col_max "$res.rss" 1)
        scan=nan
        [[ $c == ss ]] || scan=$(col_median "$res" 3)
        printf '%-44s %5s %8s ms %8s ms %8s ms %6s MiB %8s ms\n' "$(label "$c")" "$RUNS" \
            "$(ms "$wall")" "$(ms "$wall_min")" "$(ms "$cpu")" "$(mib "$rss")" \
            "$([[ $scan == nan ]] && echo - || ms "$scan")"
        echo "  wall per run, ms: $(awk '{printf "%.1f ", $1 * 1000}' "$res")"
        local ss_ratio="" load=nan
        if [[ $c != ss ]]; then
            ss_ratio="$(ratio "$ss_wall" "$wall")× | $(ratio "$ss_cpu" "$cpu")×"
            load=$(awk '$5 != "nan" {print $5}' "$res" | median)
        else
            ss_ratio="1.0× | 1.0×"
        fi
        SUMMARY+=("| $name | $PROCS × $sockets | $total_sockets | $total_fds | $EXPECT_CW | $(label "$c") \
| $(ms "$wall") | $(ms "$wall_min") | $(ms "$cpu") | $(per_fd "$cpu" "$total_fds") | $(mib "$rss") \
| $([[ $scan == nan ]] && echo - || ms "$scan") | $([[ $load == nan ]] && echo - || ms "$load") | $ss_ratio |")
        per_fd_line+=" $cpu"
        # The split: medians of each phase's CPU over the perf'd runs.
        if [[ $c != ss ]] && [[ -s $res.split ]]; then
            local k v cells="" attr_cpu rest
            for k in 1 2 3; do cells+=" | $(ms "$(col_median "$res.split" $k)")"; done
            # fd pass (bpf) or /proc walk (procfs): the fds and walk columns.
            attr_cpu=$(awk '{print $4 + $5}' "$res.split" | median)
            cells+=" | $(ms "$attr_cpu")"
            cells+=" | $(ms "$(col_median "$res.split" 6)")"
            # The rest: describe, render, and pids + analyse + other.
            rest=$(awk '{print $7 + $8 + $9 + $10 + $11}' "$res.split" | median)
            cells+=" | $(ms "$rest") | $(ms "$(col_median "$res.split" 7)") | $(ms "$(col_median "$res.split" 10)")"
            cells+=" | $(ms "$(awk '{print $8 + $9 + $11}' "$res.split" | median)")"
            # Attribution per fd of the host: both iterators (bpf) or the walk.
            v=$(awk '{print $3 + $4 + $5}' "$res.split" | median)
            cells+=" | $(awk -v c="$v" -v f="$host_fd_count" 'BEGIN {if (f > 0) printf "%.3f", 1e6 * c / f; else print "n/a"}')"
            SPLIT_SUMMARY+=("| $name | $host_fd_count | $(label "$c") | $(wc -l <"$res.split")$cells |")
        fi
    done
    PER_FD+=("$per_fd_line")
    # Do the backends agree? Counts of each backend's last timed report.
    local first="" fc wc
    for c in "${COMMANDS[@]}"; do
        [[ $c == ss ]] && continue
        if [[ -z $first ]]; then
            first=$c
            continue
        fi
        fc=$(count_diff "$TMP/$name.$first.counts" "$TMP/$name.$c.counts")
        wc=$(count_diff "$TMP/$name.$first.wcounts" "$TMP/$name.$c.wcounts")
        COUNT_SUMMARY+=("| $name | $first → $c | $wc | $fc |")
        echo "  report counts, $first → $c: loadgen's workers: $wc; whole report: $fc"
    done
    for c in "${COMMANDS[@]}"; do
        [[ $c == ss ]] || echo "  report counts, $c: $(cat "$TMP/$name.$c.counts")"
    done
    echo "  closewatch report statuses: ${statuses% }"
    echo "  host before the runs, loadgen included: $host"
}

# linearity COLUMN: CPU per fd at each scale run relative to the first one
# ("1.00 / 0.93 / 1.05"): 1.00 throughout is linear, below 1 better.
# COLUMN 3 is the first command's, 4 the second's, and so on.
linearity() {
    printf '%s\n' "${PER_FD[@]}" | awk -v c="$1" '{
        v = ($2 > 0) ? $c / $2 : 0
        if (NR == 1) base = v
        out = out ((NR > 1) ? " / " : "") ((base > 0) ? sprintf("%.2f", v / base) : "n/a")
    } END {print out}'
}

DATE=$(date -u +%Y-%m-%d)
echo "closewatch $REVISION on $(uname -r), $(nproc) CPUs, $DATE; $RUNS timed runs + $WARMUP warmup per command, \
order rotating; commands: ${COMMANDS[*]}"
for scale in $SCALES; do
    case $scale in
    small) run_scale small "$SMALL" ;;
    medium) run_scale medium "$MEDIUM" ;;
    large) run_scale large "$LARGE" ;;
    *=*x*) run_scale "${scale%%=*}" "${scale#*=}" ;;
    *) die "unknown scale '$scale' (small, medium, large, or NAME=PROCESSESxSOCKETS)" ;;
    esac
done

echo
echo "### closewatch (both backends) vs \`ss -tanp state close-wait\` ($REVISION, $(uname -r), $(nproc) CPUs, \
$DATE, medians of $RUNS runs)"
echo
echo "| scale | processes × sockets | TCP sockets | loadgen fds | CLOSE_WAIT | command | wall ms | wall min ms | CPU ms \
| CPU µs/fd | peak RSS MiB | scan_duration ms | BPF load ms | wall ss/this | CPU ss/this |"
echo "|---|---|--:|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
printf '%s\n' "${SUMMARY[@]}"
if ((${#PER_FD[@]} > 1)); then
    scales=$(printf '%s\n' "${PER_FD[@]}" | awk '{printf "%s%s", (NR > 1) ? " / " : "", $1}')
    echo
    line="Linearity, CPU per fd relative to ${PER_FD[0]%% *} ($scales):"
    for ((k = 0; k < ${#COMMANDS[@]}; k++)); do
        line+=" ${COMMANDS[$k]} $(linearity $((k + 3)));"
    done
    echo "${line%;}"
fi
if ((${#SPLIT_SUMMARY[@]} > 0)); then
    echo
    echo "### Where a run's CPU goes (perf record, cpu-clock at $SPLIT_FREQ Hz; medians of $SPLIT_RUNS runs; $DATE)"
    echo
    echo "Sorted by the scan step each sample's stack is in (lib.sh, split.py): BPF load (BTF parse, \
load, verify); task pass (task iterator); fd pass (task_file iterator and the walk built from it) or, \
procfs, the /proc walk; sock_diag (TCP and UNIX dumps of every namespace, parsed); the rest: \
describing each listed process (exe, cmdline, unit: /proc reads in both backends), the JSON, and \
other (listing /proc, analysis, exec, start-up, exit). Attribution per fd: task + fd pass (or walk) \
over every fd of the host."
    echo
    echo "| scale | host fds | command | runs | CPU ms | BPF load ms | task pass ms | fd pass / walk ms \
| sock_diag ms | rest ms | of it: describe ms | JSON ms | other ms | attribution CPU µs per host fd |"
    echo "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    printf '%s\n' "${SPLIT_SUMMARY[@]}"
fi
if ((${#COUNT_SUMMARY[@]} > 0)); then
    echo
    echo "### Do the backends' reports agree? (counts of the last timed report of each)"
    echo
    echo "Loadgen's workers: the counts of its processes only. Whole report: every count, other programs' \
included (a count that sock_diag gives, like tcp_close_wait, differing says the host changed between the two runs)."
    echo
    echo "| scale | backends | counts that differ: loadgen's workers | whole report |"
    echo "|---|---|---|---|"
    printf '%s\n' "${COUNT_SUMMARY[@]}"
fi
