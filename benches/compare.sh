#!/usr/bin/env bash
# Measures `closewatch --report --format json` against `ss -tanp state close-wait`
# on the same loopback socket load (examples/loadgen.rs), at three scales.
# See benches/README.md for how to run it and what the numbers mean.
#
# Everything it starts is stopped by pid from an EXIT trap, on success, failure
# or Ctrl-C; every step is bounded by a timeout and the whole run by MAX_SECONDS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

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
HOLD_FD=""
TMP=$(mktemp -d "${TMPDIR:-/tmp}/closewatch-bench.XXXXXX")

die() {
    echo "compare.sh: $*" >&2
    exit 1
}

warn() {
    echo "compare.sh: warning: $*" >&2
}

# Stops loadgen by pid: SIGTERM (it kills and reaps its workers), then SIGKILL
# (its workers die with it through PR_SET_PDEATHSIG).
stop_loadgen() {
    [[ -n $LG_PID ]] || return 0
    if kill -0 "$LG_PID" 2>/dev/null; then
        kill -TERM "$LG_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 300; i++)); do
            kill -0 "$LG_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$LG_PID" 2>/dev/null; then
            warn "loadgen $LG_PID ignored SIGTERM for 30 s; sending SIGKILL"
            kill -KILL "$LG_PID" 2>/dev/null || true
        fi
    else
        warn "loadgen $LG_PID had already exited: $(tail -n 3 "$TMP/loadgen.err" 2>/dev/null)"
    fi
    wait "$LG_PID" 2>/dev/null || true
    LG_PID=""
}

cleanup() {
    local rc=$?
    # A subshell ($(...)) may run this trap too: only the script cleans up.
    [[ $BASHPID == "$$" ]] || exit "$rc"
    trap - EXIT INT TERM
    stop_loadgen
    if [[ -n $HOLD_FD ]]; then
        exec {HOLD_FD}>&-
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

check_budget() {
    ((SECONDS < MAX_SECONDS)) || die "time budget MAX_SECONDS=$MAX_SECONDS exceeded"
}

for tool in cargo ss jq python3 awk; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ $RUNS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[1-9][0-9]*$ ]] ||
    die "RUNS and WARMUP must be ≥ 1 (peak RSS is measured in the warmup runs)"
/usr/bin/time -f %M true 2>/dev/null >&2 || die "GNU time (/usr/bin/time) is required"

# One run of a command, timed by its parent with wait4(2): wall clock and the
# child's own user and system CPU (µs resolution), with no wrapper process in
# the measurement. Killed after the timeout (exit status 137 then).
cat >"$TMP/measure.py" <<'PY'
import os, signal, sys, time

timeout, out, err, cmd = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
fds = [os.open(os.devnull, os.O_RDONLY),
       os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
       os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
pid = None

def stop(signum, _frame):
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    if signum != signal.SIGALRM:
        # Die of the signal itself: bash acts on a Ctrl-C only when its
        # foreground child was killed by it.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

for s in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM):
    signal.signal(s, stop)
actions = [(os.POSIX_SPAWN_DUP2, fd, i) for i, fd in enumerate(fds)]
start = time.perf_counter()
pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=actions)
signal.setitimer(signal.ITIMER_REAL, timeout)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - start
signal.setitimer(signal.ITIMER_REAL, 0)
rc = os.waitstatus_to_exitcode(status)
rc = 128 - rc if rc < 0 else rc
print(f"{rc} {wall:.6f} {ru.ru_utime:.6f} {ru.ru_stime:.6f}")
PY

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
echo "compare.sh: building (release)..." >&2
# --foreground keeps cargo in our process group, so that Ctrl-C reaches it.
if ! (cd "$ROOT" && timeout --foreground "$BUILD_TIMEOUT" cargo build --release --bin closewatch --examples); then
    # Another example in the tree may be mid-edit; the benchmark needs only loadgen.
    warn "building every example failed; building only loadgen"
    (cd "$ROOT" && timeout --foreground "$BUILD_TIMEOUT" cargo build --release --bin closewatch --example loadgen) ||
        die "build failed"
fi
# Copies, so that a rebuild in the tree during the run changes nothing here.
mkdir -p "$TMP/bin"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
cp "$TARGET_DIR/release/closewatch" "$TARGET_DIR/release/examples/loadgen" "$TMP/bin/"
CW=$TMP/bin/closewatch
LOADGEN=$TMP/bin/loadgen
REVISION=${REVISION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}

mkfifo "$TMP/hold"
# loadgen's stdin: it exits at EOF, i.e. when this script dies however it dies.
exec {HOLD_FD}<>"$TMP/hold"

# ------------------------------------------------------------ statistics ----
# Median / min / max of column C of a file of numbers.
col_median() { awk -v c="$2" '{print $c}' "$1" | sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) { print "nan"; exit }
    print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col_min() { awk -v c="$2" 'NR == 1 || $c < m {m = $c} END {print m}' "$1"; }
col_max() { awk -v c="$2" 'NR == 1 || $c > m {m = $c} END {print m}' "$1"; }
ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.1f", a / b; else print "n/a"}'; }

# Share of all CPUs' time spent busy (not idle or iowait) during one second:
# with the load built and idle, anything above a few % is someone else's work.
cpu_busy_pct() {
    local before after
    before=$(awk '/^cpu / {print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    sleep 1
    after=$(awk '/^cpu / {print $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    awk -v b="$before" -v a="$after" 'BEGIN {
        split(b, x, " "); split(a, y, " ")
        total = y[1] - x[1]; idle = y[2] - x[2]
        printf "%.0f", (total > 0) ? 100 * (total - idle) / total : 0 }'
}

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
    check=$(jq -r --argjson pids "$WORKER_PIDS" '
        [.processes[] | select(.pid as $p | $pids | index($p))] as $w
        | [ .tcp_states.close_wait,
            ([$w[].sockets.close_wait] | add // 0),
            ([$w[].sockets.fin_wait2] | add // 0),
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

run_scale() {
    local name=$1 spec=$2
    PROCS=${spec%x*}
    local sockets=${spec#*x}
    [[ $PROCS =~ ^[0-9]+$ && $sockets =~ ^[0-9]+$ ]] || die "scale $name: '$spec' is not PROCESSESxSOCKETS"
    check_budget

    BASELINE_CW=$(ss -Htan state close-wait | wc -l)
    : >"$TMP/ready.json"
    echo "compare.sh: $name: starting loadgen --processes $PROCS --sockets $sockets" >&2
    "$LOADGEN" --processes "$PROCS" --sockets "$sockets" --close-wait-pct "$CLOSE_WAIT_PCT" \
        --fin-wait2-pct "$FIN_WAIT2_PCT" --files "$FILES" --timeout "$SETUP_TIMEOUT" \
        <"$TMP/hold" >"$TMP/ready.json" 2>"$TMP/loadgen.err" {HOLD_FD}>&- &
    LG_PID=$!
    local ready="" waited=0
    while ! IFS= read -r ready <"$TMP/ready.json" 2>/dev/null; do
        if ! kill -0 "$LG_PID" 2>/dev/null; then
            cat "$TMP/loadgen.err" >&2
            die "$name: loadgen exited before it was ready"
        fi
        ((waited++ < SETUP_TIMEOUT * 10)) || die "$name: loadgen not ready after $SETUP_TIMEOUT s"
        sleep 0.1
    done
    WORKER_PIDS=$(jq -c .worker_pids <<<"$ready")
    EXPECT_CW=$(jq .close_wait <<<"$ready")
    EXPECT_FW2=$(jq .fin_wait2_owned <<<"$ready")
    local total_sockets total_fds setup busy
    total_sockets=$(jq .sockets <<<"$ready")
    total_fds=$(jq .fds <<<"$ready")
    setup=$(jq .setup_seconds <<<"$ready")
    # The kernel keeps working for a few seconds after a big setup (kdamond,
    # slab): wait, up to SETTLE_SECONDS, for a quiet second.
    local settle
    for ((settle = 0; settle < SETTLE_SECONDS; settle++)); do
        busy=$(cpu_busy_pct)
        ((busy <= 5)) && break
    done
    echo "compare.sh: $name: ready in $setup s; host CPU ${busy}% busy before measuring" >&2
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
        echo "compare.sh: $name: round $((i + 1))/$total ($mode) done" >&2
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
    }
    SUMMARY+=("| $name | $PROCS × $sockets | $total_sockets | $total_fds | $EXPECT_CW \
| $(ms "$cw_wall") | $(ms "$cw_cpu") | $(mib "$cw_rss") \
| $(ms "$ss_wall") | $(ms "$ss_cpu") | $(mib "$ss_rss") \
| $(ratio "$ss_wall" "$cw_wall")× | $(ratio "$ss_cpu" "$cw_cpu")× |")
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
| closewatch peak RSS MiB | ss wall ms | ss CPU ms | ss peak RSS MiB | wall ss/closewatch | CPU ss/closewatch |"
echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
printf '%s\n' "${SUMMARY[@]}"
