#!/usr/bin/env bash
# The agent with each attribution backend on a host of many small processes
# (examples/loadgen.rs, 10,000 workers × 2 sockets by default: each a
# listener and one connection, both ends, its accepted end in CLOSE_WAIT):
# CPU per scan, and memory (VmRSS, VmHWM) sampled over DURATION. One load;
# the backends run one after the other on it, each in an agent of its own.
# Make DURATION 1800 for a 30-minute soak of each backend.
# See benches/README.md for how to run it and what the numbers mean.
#
# Everything it starts is stopped by pid from an EXIT trap, on success, failure
# or Ctrl-C; every step is bounded by a timeout and the whole run by MAX_SECONDS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/benches/lib.sh"

LOAD=${LOAD:-10000x2}             # loadgen processes x sockets per process
CLOSE_WAIT_PCT=${CLOSE_WAIT_PCT:-100}
FIN_WAIT2_PCT=${FIN_WAIT2_PCT:-$CLOSE_WAIT_PCT}
FILES=${FILES:-0}                 # regular files held open per loadgen worker
ATTRIBUTIONS=${ATTRIBUTIONS:-"procfs bpf"} # one agent each, in this order
DURATION=${DURATION:-300}         # seconds each agent runs (1800: a 30-minute soak)
INTERVAL=${INTERVAL:-15}          # the agent's --interval, seconds
SAMPLE_EVERY=${SAMPLE_EVERY:-10}  # seconds between samples of the agent's memory and CPU
TABLE_EVERY=${TABLE_EVERY:-60}    # seconds between the rows of the memory table
START_TIMEOUT=${START_TIMEOUT:-300} # seconds, agent until its first scan is published
SETUP_TIMEOUT=${SETUP_TIMEOUT:-600} # seconds, loadgen until ready
BUILD_TIMEOUT=${BUILD_TIMEOUT:-900} # seconds, cargo build
SETTLE_SECONDS=${SETTLE_SECONDS:-20} # at most, for the host to go quiet after the setup
MAX_SECONDS=${MAX_SECONDS:-$((900 + 2 * (DURATION + 120)))} # the whole script

LG_PID=""
AGENT_PID=""

stop_agent() {
    stop_pids closewatch "" "$AGENT_PID"
    AGENT_PID=""
}

bench_cleanup() {
    stop_agent
    stop_pids loadgen "" "$LG_PID"
    LG_PID=""
}
bench_init closewatch-agent-backends
cd "$TMP" # stray output of a tool lands here, and is removed with it

for tool in cargo curl jq awk python3 setpriv getconf; do
    command -v "$tool" >/dev/null || die "$tool is required"
done
[[ $LOAD =~ ^([1-9][0-9]*)x([1-9][0-9]*)$ ]] || die "LOAD='$LOAD' is not PROCESSESxSOCKETS"
PROCS=${BASH_REMATCH[1]}
SOCKETS=${BASH_REMATCH[2]}
for v in DURATION INTERVAL SAMPLE_EVERY TABLE_EVERY; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a whole number of seconds ≥ 1"
done
for a in $ATTRIBUTIONS; do
    [[ $a == procfs || $a == bpf || $a == auto ]] || die "unknown attribution '$a' (procfs, bpf, auto)"
done
CLK_TCK=$(getconf CLK_TCK)

build_binaries
: >"$TMP/empty.toml"
open_hold

# ------------------------------------------------------------- helpers ----
# user + system CPU of the agent, all its threads, seconds (10 ms ticks).
agent_cpu() {
    local stat rest
    stat=$(<"/proc/$AGENT_PID/stat") || die "closewatch $AGENT_PID is gone"
    rest=${stat##*) }
    awk -v r="$rest" -v hz="$CLK_TCK" 'BEGIN {split(r, f, " "); printf "%.2f", (f[12] + f[13]) / hz}'
}

status_kib() { awk -v f="$1:" '$1 == f {print $2}' "/proc/$AGENT_PID/status"; }

alive() {
    kill -0 "$LG_PID" 2>/dev/null || die "loadgen died: $(tail -n 3 "$TMP/loadgen.err")"
    kill -0 "$AGENT_PID" 2>/dev/null || {
        tail -n 5 "$TMP/agent.$BACKEND.err" >&2
        die "closewatch agent $AGENT_PID ($BACKEND) died"
    }
}

# Scans logged so far: "N SECONDS FULL" a line, from the agent's debug log
# ("[… DEBUG] scan 12 took 102.46ms: …[ (full walk)]").
scan_log() {
    awk '{
        i = index($0, "] scan "); if (!i) next
        s = substr($0, i + 7)
        n = split(s, w, " ")
        if (n < 3 || w[2] != "took" || w[1] !~ /^[0-9]+$/) next
        d = w[3]; sub(/:$/, "", d)
        if (!match(d, /^[0-9.]+/)) next
        v = substr(d, 1, RLENGTH) + 0; u = substr(d, RLENGTH + 1)
        m = (u == "s") ? 1 : (u == "ms") ? 1e-3 : (u == "µs" || u == "us") ? 1e-6 : (u == "ns") ? 1e-9 : -1
        printf "%d %.9f %d\n", w[1], v * m, (index(s, "(full walk)") > 0)
    }' "$1"
}

scans_logged() { scan_log "$1" | wc -l; }

# run_agent BACKEND: one agent for DURATION seconds; its samples to
# $TMP/samples.BACKEND ("elapsed rss_kib hwm_kib cpu_s scans"), its summary
# to the arrays below.
declare -A FIRST_CPU FIRST_SCAN CPU_PER_SCAN SCAN_MED SCAN_MAX SCANS FULLS HWM RSS RSS_MIN CPU_PCT LOAD_MS ATTR_OK
run_agent() {
    BACKEND=$1
    local err=$TMP/agent.$BACKEND.err samples=$TMP/samples.$BACKEND url="" code i
    : >"$err"
    : >"$samples"
    check_budget
    local started
    started=$(now)
    RUST_LOG=info,closewatch::agent=debug,closewatch::collect::attribution=debug \
        setpriv --pdeathsig TERM "$CW" -c "$TMP/empty.toml" --listen 127.0.0.1:0 \
        --interval "${INTERVAL}s" --attribution "$BACKEND" </dev/null >/dev/null 2>"$err" {HOLD_FD}>&- &
    AGENT_PID=$!
    # Wait for the first scan to be logged (published just before).
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        alive
        (($(scans_logged "$err") >= 1)) && break
        sleep 0.1
    done
    (($(scans_logged "$err") >= 1)) || die "$BACKEND: no scan logged within $START_TIMEOUT s"
    url=$(sed -n 's|.*listening on \(http://[^ ]*/metrics\).*|\1|p' "$err" | head -n 1)
    FIRST_CPU[$BACKEND]=$(agent_cpu)
    FIRST_SCAN[$BACKEND]=$(scan_log "$err" | awk 'NR == 1 {print $2}')
    note "$BACKEND: agent $AGENT_PID, first scan $(ms "${FIRST_SCAN[$BACKEND]}") ms, \
${FIRST_CPU[$BACKEND]} s CPU at its end; sampling every ${SAMPLE_EVERY}s for ${DURATION}s..."
    local cpu0=${FIRST_CPU[$BACKEND]} next elapsed
    for ((next = SAMPLE_EVERY; next <= DURATION; next += SAMPLE_EVERY)); do
        sleep_until "$(awk -v s="$started" -v n="$next" 'BEGIN {printf "%.3f", s + n}')"
        alive
        elapsed=$(awk -v s="$started" -v t="$(now)" 'BEGIN {printf "%.1f", t - s}')
        echo "$elapsed $(status_kib VmRSS) $(status_kib VmHWM) $(agent_cpu) $(scans_logged "$err")" >>"$samples"
        check_budget
    done
    # Everything after the first scan: CPU per scan over whole scans only
    # (the last sample's scans; a scan in progress adds a little CPU).
    local last cpu1 scans
    last=$(tail -n 1 "$samples")
    read -r _ RSS[$BACKEND] HWM[$BACKEND] cpu1 scans <<<"$last"
    SCANS[$BACKEND]=$scans
    CPU_PER_SCAN[$BACKEND]=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$scans" \
        'BEGIN {if (n > 1) printf "%.1f", 1000 * (b - a) / (n - 1); else print "n/a"}')
    CPU_PCT[$BACKEND]=$(awk -v a="$cpu0" -v b="$cpu1" -v d="$(awk 'END {print $1}' "$samples")" \
        -v f="$(scan_log "$err" | awk 'NR == 1 {print $2}')" 'BEGIN {printf "%.2f", 100 * (b - a) / (d - f)}')
    scan_log "$err" | awk 'NR > 1 {print $2}' >"$TMP/durations.$BACKEND"
    SCAN_MED[$BACKEND]=$(median <"$TMP/durations.$BACKEND")
    SCAN_MAX[$BACKEND]=$(sort -g "$TMP/durations.$BACKEND" | tail -n 1)
    FULLS[$BACKEND]=$(scan_log "$err" | awk '{s += $3} END {print s + 0}')
    RSS_MIN[$BACKEND]=$(col_min "$samples" 2)
    LOAD_MS[$BACKEND]=$(bpf_load_seconds "$err")
    # Did every scan use the backend asked for?
    ATTR_OK[$BACKEND]="?"
    if [[ -n $url ]] && code=$(curl -s --max-time 10 -o "$TMP/metrics.$BACKEND" -w '%{http_code}' "$url") &&
        [[ $code == 200 ]]; then
        ATTR_OK[$BACKEND]=$(awk '/^closewatch_scans_by_attribution_total\{/ {
            match($0, /attribution="[a-z]+"/); printf "%s%s %s", sep, substr($0, RSTART + 13, RLENGTH - 14), $NF; sep = ", " }' \
            "$TMP/metrics.$BACKEND")
    fi
    if grep -q 'WARN' "$err"; then
        grep 'WARN' "$err" | head -3 | sed "s/^/  $BACKEND agent: /" >&2
    fi
    stop_agent
}

# -------------------------------------------------------------- the load ----
check_budget
start_loadgen_and_wait "$PROCS" "$SOCKETS" # sets LG_PID, LG_READY
TOTAL_FDS=$(jq .fds <<<"$LG_READY")
EXPECT_CW=$(jq .close_wait <<<"$LG_READY")
SETUP=$(jq .setup_seconds <<<"$LG_READY")
busy=$(settle_host)
note "loadgen ready in $SETUP s: $PROCS processes, $TOTAL_FDS fds, $EXPECT_CW CLOSE_WAIT; host ${busy}% busy"
((busy <= 10)) || warn "the host was ${busy}% busy with the load idle: timings will be noisy"

for b in $ATTRIBUTIONS; do
    run_agent "$b"
done
stop_pids loadgen "" "$LG_PID"
LG_PID=""

# ---------------------------------------------------------------- tables ----
DATE=$(date -u +%Y-%m-%d)
echo "closewatch $REVISION on $(uname -r), $(nproc) CPUs, $DATE; loadgen $PROCS × $SOCKETS ($TOTAL_FDS fds, \
$EXPECT_CW CLOSE_WAIT, FILES=$FILES); agent --interval ${INTERVAL}s for ${DURATION}s per backend; host ${busy}% busy before"
echo
echo "### The agent per backend at $PROCS processes ($REVISION, $DATE, --interval ${INTERVAL}s, ${DURATION}s each)"
echo
echo "| attribution | scans | full walks | first scan ms | first scan CPU ms (start-up included) | CPU ms per later scan \
| CPU % of a core | scan ms median / max | BPF load ms | VmHWM MiB | VmRSS MiB end / min | scans by attribution |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|"
for b in $ATTRIBUTIONS; do
    echo "| $b | ${SCANS[$b]} | ${FULLS[$b]} | $(ms "${FIRST_SCAN[$b]}") | $(ms "${FIRST_CPU[$b]}") | ${CPU_PER_SCAN[$b]} \
| ${CPU_PCT[$b]} | $(ms "${SCAN_MED[$b]}") / $(ms "${SCAN_MAX[$b]}") \
| $([[ ${LOAD_MS[$b]} == nan ]] && echo - || ms "${LOAD_MS[$b]}") | $(mib "${HWM[$b]}") \
| $(mib "${RSS[$b]}") / $(mib "${RSS_MIN[$b]}") | ${ATTR_OK[$b]} |"
done
echo
echo "### Agent memory over time, MiB (VmRSS / VmHWM), a row every ${TABLE_EVERY}s"
echo
header="| seconds |"
rule="|--:|"
for b in $ATTRIBUTIONS; do
    header+=" $b RSS | $b HWM | $b scans |"
    rule+="--:|--:|--:|"
done
echo "$header"
echo "$rule"
# Rows: the sample at or just after each multiple of TABLE_EVERY.
python3 - "$TABLE_EVERY" $ATTRIBUTIONS "$TMP" <<'PY'
import sys
every, backends, tmp = float(sys.argv[1]), sys.argv[2:-1], sys.argv[-1]
series = {}
for b in backends:
    series[b] = [list(map(float, l.split())) for l in open(f"{tmp}/samples.{b}") if l.strip()]
longest = max((s[-1][0] for s in series.values() if s), default=0)
t = every
while t <= longest + every / 2:
    row = [f"{t:.0f}"]
    for b in backends:
        pick = next((s for s in series[b] if s[0] >= t - 1), None)
        row += [f"{pick[1] / 1024:.1f}", f"{pick[2] / 1024:.1f}", f"{pick[4]:.0f}"] if pick else ["", "", ""]
    print("| " + " | ".join(row) + " |")
    t += every
PY
