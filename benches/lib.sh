# shellcheck shell=bash
# The plumbing that compare.sh, agent.sh, netns.sh and soak.sh share. Each
# sources it right after `set -euo pipefail` and ROOT; it only defines
# functions (and names the script for the messages), so nothing runs until a
# script calls it.
#
# A script using it:
#   - defines bench_cleanup (stops by pid what it started, undoes what else it
#     did) before bench_init NAME, which makes $TMP and sets the traps;
#   - sets MAX_SECONDS (check_budget), BUILD_TIMEOUT (build_binaries),
#     SETUP_TIMEOUT, CLOSE_WAIT_PCT, FIN_WAIT2_PCT, FILES
#     (start_loadgen_and_wait) and SETTLE_SECONDS (settle_host), as far as it
#     calls those.

# The script's own name, e.g. "compare.sh", at the head of every message.
BENCH=${BASH_SOURCE[1]##*/}
HOLD_FD=""
TMP=""

die() {
    echo "$BENCH: $*" >&2
    exit 1
}

warn() {
    echo "$BENCH: warning: $*" >&2
}

note() {
    echo "$BENCH: $*" >&2
}

check_budget() {
    ((SECONDS < MAX_SECONDS)) || die "time budget MAX_SECONDS=$MAX_SECONDS exceeded"
}

# ------------------------------------------------- processes and cleanup ----
# stop_pids WHAT LOG PID...: stops processes by pid: SIGTERM to each, then
# SIGKILL to any still alive after 30 s; reaps them. Empty PIDs are skipped.
# With a LOG (its stderr), a process that had already exited is a warning
# quoting the end of LOG; with LOG "" it is not.
#
# loadgen SIGKILLs and reaps its workers on SIGTERM (and they have
# PR_SET_PDEATHSIG, so a SIGKILLed loadgen takes them along).
stop_pids() {
    local what=$1 log=$2 pid i alive
    shift 2
    for pid in "$@"; do
        [[ -n $pid ]] || continue
        if kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        elif [[ -n $log ]]; then
            warn "$what $pid had already exited: $(tail -n 3 "$log" 2>/dev/null)"
        fi
    done
    for ((i = 0; i < 300; i++)); do
        alive=0
        for pid in "$@"; do
            [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "$@"; do
        [[ -n $pid ]] || continue
        if kill -0 "$pid" 2>/dev/null; then
            warn "$what $pid ignored SIGTERM for 30 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        wait "$pid" 2>/dev/null || true
    done
}

# The EXIT trap: the script's bench_cleanup, then the FIFO closed and $TMP
# removed; exits with the script's status.
cleanup() {
    local rc=$?
    # A subshell ($(...)) may run this trap too: only the script cleans up.
    [[ $BASHPID == "$$" ]] || exit "$rc"
    trap - EXIT INT TERM
    bench_cleanup
    if [[ -n $HOLD_FD ]]; then
        exec {HOLD_FD}>&-
    fi
    rm -rf "$TMP"
    exit "$rc"
}

# bench_init NAME: makes the scratch directory $TMP (${TMPDIR:-/tmp}/NAME.XXXXXX)
# and sets the traps: everything the script starts is stopped from the EXIT
# trap, on success, failure or Ctrl-C.
bench_init() {
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
    trap cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# --------------------------------------------------------------- timing ----
# Writes $TMP/measure.py: `python3 "$TMP/measure.py" TIMEOUT OUT ERR CMD...`
# runs CMD once (stdin /dev/null, stdout OUT, stderr ERR), timed by its parent
# with wait4(2): wall clock and the child's own user and system CPU (µs
# resolution), with no wrapper process in the measurement. Killed after the
# timeout (exit status 137 then). Prints "rc wall user sys".
write_measure_py() {
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
}

# ---------------------------------------------------------------- build ----
# Builds closewatch and the loadgen example (release), copies both to
# $TMP/bin; sets CW, LOADGEN, TARGET_DIR and REVISION.
#
# With CW_BIN and LOADGEN_BIN set (both), nothing is built: those binaries
# are copied instead, so that several scripts measure one build while
# someone else edits src/ (a tree mid-edit may not compile, or may compile
# into something else between two scripts). Say which build it is with
# REVISION.
build_binaries() {
    if [[ -n ${CW_BIN:-} || -n ${LOADGEN_BIN:-} ]]; then
        [[ -x ${CW_BIN:-} && -x ${LOADGEN_BIN:-} ]] ||
            die "CW_BIN and LOADGEN_BIN must both name executables (CW_BIN='${CW_BIN:-}', LOADGEN_BIN='${LOADGEN_BIN:-}')"
        mkdir -p "$TMP/bin"
        cp "$CW_BIN" "$TMP/bin/closewatch"
        cp "$LOADGEN_BIN" "$TMP/bin/loadgen"
        CW=$TMP/bin/closewatch
        LOADGEN=$TMP/bin/loadgen
        REVISION=${REVISION:-"prebuilt $(sha256sum "$CW_BIN" | cut -c1-12)"}
        note "using prebuilt $CW_BIN ($REVISION) and $LOADGEN_BIN"
        return
    fi
    note "building (release)..."
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
    # shellcheck disable=SC2034 # read by the scripts
    CW=$TMP/bin/closewatch
    LOADGEN=$TMP/bin/loadgen
    REVISION=${REVISION:-$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)}
}

# ------------------------------------------------------------- the load ----
# Makes the FIFO $TMP/hold and holds it open as HOLD_FD until the script ends.
# It is loadgen's stdin: loadgen exits at EOF, i.e. when this script dies
# however it dies. Every other child is started with {HOLD_FD}>&-, so that
# none keeps the FIFO open after the script.
open_hold() {
    mkfifo "$TMP/hold"
    exec {HOLD_FD}<>"$TMP/hold"
}

now() { date +%s.%N; }

# sleep_until EPOCH: sleeps until that wall-clock time (returns at once if past).
sleep_until() {
    local d
    d=$(awk -v t="$1" -v n="$(now)" 'BEGIN {d = t - n; printf "%.3f", (d > 0) ? d : 0}')
    # Without the FIFO's write end: the load must see EOF as soon as the
    # script dies, not when a long sleep ends.
    sleep "$d" {HOLD_FD}>&-
}

# start_loadgen_and_wait PROCESSES SOCKETS [LABEL]: starts one loadgen (stdin
# the FIFO, ready line to $TMP/ready.json, stderr to $TMP/loadgen.err) and
# waits, at most SETUP_TIMEOUT s, for its JSON ready line. Sets LG_PID and
# LG_READY (the line). LABEL, if given, heads its messages ("LABEL: ...").
start_loadgen_and_wait() {
    local procs=$1 sockets=$2 label=${3:+$3: } waited=0
    note "${label}starting loadgen --processes $procs --sockets $sockets"
    : >"$TMP/ready.json"
    "$LOADGEN" --processes "$procs" --sockets "$sockets" --close-wait-pct "$CLOSE_WAIT_PCT" \
        --fin-wait2-pct "$FIN_WAIT2_PCT" --files "$FILES" --timeout "$SETUP_TIMEOUT" \
        <"$TMP/hold" >"$TMP/ready.json" 2>"$TMP/loadgen.err" {HOLD_FD}>&- &
    LG_PID=$!
    LG_READY=""
    # shellcheck disable=SC2034 # read by the scripts
    while ! IFS= read -r LG_READY <"$TMP/ready.json" 2>/dev/null; do
        if ! kill -0 "$LG_PID" 2>/dev/null; then
            cat "$TMP/loadgen.err" >&2
            die "${label}loadgen exited before it was ready"
        fi
        ((waited++ < SETUP_TIMEOUT * 10)) || die "${label}loadgen not ready after $SETUP_TIMEOUT s"
        sleep 0.1
    done
}

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

# The kernel keeps working for a few seconds after a big setup (kdamond,
# slab): waits, up to SETTLE_SECONDS, for a quiet second (≤ 5 % busy); prints
# the last second's cpu_busy_pct.
settle_host() {
    local busy settle
    for ((settle = 0; settle < SETTLE_SECONDS; settle++)); do
        busy=$(cpu_busy_pct)
        ((busy <= 5)) && break
    done
    echo "$busy"
}

# jq definitions for the scripts' checks of a closewatch JSON report: the
# processes of loadgen's workers ($pids: their pids, looked up as object
# keys: `index` over 10,000 pids per process took jq minutes), and the
# CLOSE_WAIT and FIN_WAIT_2 attributed to them (two columns).
# shellcheck disable=SC2016,SC2034
REPORT_JQ='
def workers($pids): ($pids | map(tostring) | INDEX(.)) as $set
    | [.processes[] | select($set[.pid | tostring] != null)];
def attributed($w): ([$w[].sockets.close_wait] | add // 0), ([$w[].sockets.fin_wait2] | add // 0);
'

# jq program: the counts of a closewatch JSON report that both attribution
# backends must agree on, as one flat object. With `--argjson pids
# '[PID, ...]'` the per-process sums count only those processes (the load's
# workers: what other programs do on the host meanwhile cannot differ them);
# with `--argjson pids null`, every listed process. Two backends' objects are
# compared with count_diff. Ages and durations are left out: they differ
# between any two runs.
# shellcheck disable=SC2016,SC2034
REPORT_COUNTS_JQ='
(if $pids == null then null else $pids | map(tostring) | INDEX(.) end) as $set
| def held: $set == null or $set[.pid | tostring] != null;
  def s(f): [.processes[] | select(held) | f] | add // 0;
{ status,
  attribution_complete,
  errors: (.errors | length),
  namespaces: (.namespaces | length),
  tcp_close_wait: .tcp_states.close_wait,
  tcp_fin_wait2: .tcp_states.fin_wait2,
  tcp_listen: .tcp_states.listen,
  processes: ([.processes[] | select(held)] | length),
  processes_omitted,
  findings: (.findings | length),
  process_findings: s(.findings | length),
  close_wait: s(.sockets.close_wait),
  close_wait_stale: s(.sockets.close_wait_stale),
  fin_wait2: s(.sockets.fin_wait2),
  dead: s(.sockets.dead),
  unix_close_wait: s(.sockets.unix_close_wait),
  listeners: s(.listeners | length),
  fds_open: s(.fds.open),
  fds_sockets: s(.fds.sockets),
  unattributed_close_wait_unknown_owner: .unattributed.close_wait_unknown_owner,
  unattributed_fin_wait2_unknown_owner: .unattributed.fin_wait2_unknown_owner,
  unattributed_close_wait_unaccepted: .unattributed.close_wait_unaccepted,
  skipped_vanished: .skipped_processes.vanished,
  skipped_permission_denied: .skipped_processes.permission_denied,
  skipped_failed: .skipped_processes.failed,
  netns_unknown_processes }
'

# The per-process keys of REPORT_COUNTS_JQ: appended to it (`"$REPORT_COUNTS_JQ
# $WORKER_COUNTS_JQ"`) with `--argjson pids '[...]'`, the counts of those
# processes alone, without the host's.
# shellcheck disable=SC2034
WORKER_COUNTS_JQ='| {processes, process_findings, close_wait, close_wait_stale, fin_wait2, dead,
  unix_close_wait, listeners, fds_open, fds_sockets}'

# count_diff A.json B.json: the keys whose values differ between two
# REPORT_COUNTS_JQ objects, as "key A→B, ..." ("same" if none).
count_diff() {
    jq -n -r --slurpfile a "$1" --slurpfile b "$2" '
        [$a[0] | keys[] as $k | select($a[0][$k] != $b[0][$k])
         | "\($k) \($a[0][$k])→\($b[0][$k])"] | if length == 0 then "same" else join(", ") end'
}

# bpf_load_seconds ERR: the load time closewatch logged on stderr (with
# RUST_LOG=...,closewatch::collect::attribution=debug) as "BPF iterators
# loaded in 101.2ms", in seconds; "nan" if it did not log one.
bpf_load_seconds() {
    awk '{
        i = index($0, "BPF iterators loaded in "); if (!i) next
        d = substr($0, i + 24)
        if (!match(d, /^[0-9.]+/)) next
        v = substr(d, 1, RLENGTH) + 0; u = substr(d, RLENGTH + 1)
        m = (u ~ /^ms/) ? 1e-3 : (u ~ /^(µs|us)/) ? 1e-6 : (u ~ /^ns/) ? 1e-9 : (u ~ /^s/) ? 1 : -1
        if (m > 0) { printf "%.9f\n", v * m; found = 1; exit }
    } END { if (!found) print "nan" }' "$1"
}
# What closewatch runs with: warnings, and the one debug line that times the
# BPF load (nothing else logs at that module's debug level).
CW_RUST_LOG=${CW_RUST_LOG:-warn,closewatch::collect::attribution=debug}

# ------------------------------------------------------------- the split ----
# split_record OUT CMD...: runs CMD once under `perf record` (cpu-clock at
# SPLIT_FREQ Hz, DWARF call graphs: release builds keep no frame pointers),
# its stdout to OUT.stdout, stderr to OUT.stderr, the samples to OUT.
SPLIT_FREQ=${SPLIT_FREQ:-2000}
split_record() {
    local out=$1
    shift
    timeout --foreground "${CMD_TIMEOUT:-180}" perf record -q -e cpu-clock -F "$SPLIT_FREQ" \
        --call-graph dwarf,16384 -o "$out" -- "$@" >"$out.stdout" 2>"$out.stderr" {HOLD_FD}>&-
}

# Writes $TMP/split.py: `perf script -F tid,period,ip,sym -i DATA |
# python3 "$TMP/split.py"` sorts the CPU samples of one closewatch run by the
# phase of the scan they fell in and prints, in seconds of CPU (all threads):
#   total load tasks fds walk sock_diag describe pids analyse render other
# A sample belongs to the first phase marker met walking its stack from the
# root (main, or a thread's start) towards the leaf (src/ as of the BPF
# backend: oneshot::run → Collector::scan_with → its steps):
#   load      Attributor::backend (reads the kernel's BTF, loads and
#             verifies the iterators; the first scan only)
#   tasks     bpf::Iterators::tasks (the task iterator, decoded)
#   fds       Collector::walk_bpf (the task_file iterator, decoded and
#             built into the walk)
#   walk      Collector::walk and the /proc walk's threads (procfs only)
#   sock_diag Collector::tables, collect::tables (the dump threads),
#             sockdiag, Collector::confirm_dead (the TCP and UNIX dumps of
#             every namespace, parsed)
#   describe  Collector::describe (exe, cmdline, unit of each listed process)
#   pids      ProcRoot::pids (the listing of /proc)
#   analyse   analyse::   render  report:: and Done::write (the JSON)
#   other     anything else: exec and the dynamic loader, start-up, exit,
#             and samples whose user stack could not be unwound.
# Sampling: a phase's figure is good to about ±1/SPLIT_FREQ s × √samples.
write_split_py() {
    cat >"$TMP/split.py" <<'PY'
import sys

MARKERS = [  # (substring of a frame's symbol, phase), tried in this order
    ("Collector::describe", "describe"), ("procfs::describe", "describe"),
    ("Attributor::backend", "load"), ("collect::attribution::load", "load"),
    ("Iterators::tasks", "tasks"),
    ("Collector::walk_bpf", "fds"),
    ("Collector::walk", "walk"), ("procfs::walk", "walk"), ("WalkContext", "walk"),
    ("Collector::tables", "sock_diag"), ("collect::tables", "sock_diag"),
    ("sockdiag", "sock_diag"), ("Collector::confirm_dead", "sock_diag"),
    ("ProcRoot::pids", "pids"),
    ("closewatch::analyse::", "analyse"),
    ("closewatch::report::", "render"), ("Done::write", "render"),
]
PHASES = ["load", "tasks", "fds", "walk", "sock_diag", "describe", "pids", "analyse", "render", "other"]
total = {p: 0 for p in PHASES}
text = sys.stdin.read()
for block in text.split("\n\n"):
    lines = [l.strip() for l in block.strip().splitlines() if l.strip()]
    if not lines:
        continue
    head = lines[0].split()
    try:
        period = int(head[-1])
    except (ValueError, IndexError):
        continue
    frames = []
    for l in lines[1:]:
        parts = l.split(None, 1)
        frames.append(parts[1] if len(parts) > 1 else parts[0])
    phase = "other"
    for f in reversed(frames):  # root first
        sym = f.split(" (")[0]
        hit = next((p for m, p in MARKERS if m in sym), None)
        if hit:
            phase = hit
            break
    total[phase] += period
s = sum(total.values())
print(" ".join(f"{v / 1e9:.6f}" for v in [s] + [total[p] for p in PHASES]))
PY
}

# ------------------------------------------------------------ statistics ----
# Median of the numbers on stdin, one a line ("nan" if none).
median() { sort -g | awk '{v[NR] = $1} END {
    if (NR == 0) { print "nan"; exit }
    print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Median / min / max of column C of a file of numbers: col_median FILE C.
col_median() { awk -v c="$2" '{print $c}' "$1" | median; }
col_min() { awk -v c="$2" 'NR == 1 || $c < m {m = $c} END {print m}' "$1"; }
col_max() { awk -v c="$2" 'NR == 1 || $c > m {m = $c} END {print m}' "$1"; }
# Seconds → ms, KiB → MiB, one decimal.
ms() { awk -v s="$1" 'BEGIN {printf "%.1f", s * 1000}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.1f", k / 1024}'; }
# ratio A B [DECIMALS]: A / B with DECIMALS decimals (1 unless given), "n/a"
# unless B > 0.
ratio() { awk -v a="$1" -v b="$2" -v d="${3:-1}" 'BEGIN {if (b > 0) printf "%." d "f", a / b; else print "n/a"}'; }
