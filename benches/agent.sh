#!/usr/bin/env bash
# Measures the closewatch agent on a leaky host's socket load
# (examples/loadgen.rs, 100 processes × 1,000 sockets by default):
#   a. /metrics latency, requests/s and response size under concurrent scrapers (wrk);
#   b. peak and current RSS after several scans;
#   c. CPU per scan (a 2 s interval, nothing scraping) and the agent's own scan duration;
#   d. idle overhead at the production interval (15 s) as a % of one core.
# See benches/README.md for how to run it and what the numbers mean.
#
# Everything it starts is stopped by pid from an EXIT trap, on success, failure
# or Ctrl-C; every step is bounded by a timeout and the whole run by MAX_SECONDS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/benches/lib.sh"

LOAD=${LOAD:-100x1000}            # loadgen processes x sockets per process
CLOSE_WAIT_PCT=${CLOSE_WAIT_PCT:-10}
FIN_WAIT2_PCT=${FIN_WAIT2_PCT:-$CLOSE_WAIT_PCT}
FILES=${FILES:-100}               # regular files held open per loadgen worker
CONNECTIONS=${CONNECTIONS:-50}    # concurrent scrapers (wrk -c)
THREADS=${THREADS:-2}             # wrk -t
DURATION=${DURATION:-15}          # seconds of scraping (wrk -d)
SCAN_INTERVAL=${SCAN_INTERVAL:-2} # seconds between scans, CPU-per-scan run
SCANS=${SCANS:-6}                 # scans in the CPU-per-scan window (≥ 4)
IDLE_INTERVAL=${IDLE_INTERVAL:-15} # seconds between scans, production run
IDLE_SECONDS=${IDLE_SECONDS:-60}  # idle window, rounded to whole intervals
STALE_AFTER=${STALE_AFTER:-60}    # load age before measuring (closewatch's close_wait_age)
START_TIMEOUT=${START_TIMEOUT:-60} # seconds, agent until /metrics answers 200
SETUP_TIMEOUT=${SETUP_TIMEOUT:-300} # seconds, loadgen until ready
BUILD_TIMEOUT=${BUILD_TIMEOUT:-900} # seconds, cargo build
SETTLE_SECONDS=${SETTLE_SECONDS:-20} # at most, for the host to go quiet after the setup
MAX_SECONDS=${MAX_SECONDS:-1800}  # the whole script, checked between steps

LG_PID=""
AGENT_PID=""

# Stops a process by pid (lib.sh's stop_pids): SIGTERM, then SIGKILL after
# 30 s; reaps it.
stop_agent() {
    stop_pids closewatch "" "$AGENT_PID"
    AGENT_PID=""
}

# loadgen SIGKILLs and reaps its workers on SIGTERM (and they have
# PR_SET_PDEATHSIG, so a SIGKILLed loadgen takes them along).
stop_loadgen() {
    stop_pids loadgen "" "$LG_PID"
    LG_PID=""
}

# Run by the EXIT trap (lib.sh's cleanup), before $TMP is removed.
bench_cleanup() {
    stop_agent
    stop_loadgen
}
bench_init closewatch-agent-bench
cd "$TMP" # stray output of a tool lands here, and is removed with it

for tool in cargo curl wrk jq awk setpriv timeout getconf; do
    command -v "$tool" >/dev/null || die "$tool is required (apt-get install -y wrk jq curl)"
done
PROCS=${LOAD%x*}
SOCKETS=${LOAD#*x}
[[ $PROCS =~ ^[1-9][0-9]*$ && $SOCKETS =~ ^[1-9][0-9]*$ ]] || die "LOAD='$LOAD' is not PROCESSESxSOCKETS"
if ! [[ $SCANS =~ ^[0-9]+$ ]] || ((SCANS < 4)); then die "SCANS must be ≥ 4"; fi
for v in CONNECTIONS THREADS DURATION SCAN_INTERVAL IDLE_INTERVAL IDLE_SECONDS STALE_AFTER; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number (seconds for durations)"
done
IDLE_SCANS=$(((IDLE_SECONDS + IDLE_INTERVAL / 2) / IDLE_INTERVAL))
((IDLE_SCANS >= 1)) || IDLE_SCANS=1
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- build ----
# The binaries (CW, LOADGEN, REVISION) and the FIFO that holds loadgen: lib.sh.
build_binaries
# An empty config file, so that /etc/closewatch/closewatch.toml cannot change
# the settings: defaults plus the flags given here.
: >"$TMP/empty.toml"
open_hold

# -------------------------------------------------------------- helpers ----
now() { date +%s.%N; }
# sleep_until EPOCH: sleeps until that wall-clock time (returns at once if past).
sleep_until() {
    local d
    d=$(awk -v t="$1" -v n="$(now)" 'BEGIN {d = t - n; printf "%.3f", (d > 0) ? d : 0}')
    # Without the FIFO's write end: loadgen must see EOF as soon as this
    # script dies, not when a minute-long sleep ends.
    sleep "$d" {HOLD_FD}>&-
}

# user + system CPU of the agent, all its threads (dead ones included), seconds.
# The fields after the last ')' of /proc/PID/stat: utime and stime are 12th and 13th.
agent_cpu() {
    local stat rest
    stat=$(<"/proc/$AGENT_PID/stat") || die "closewatch $AGENT_PID is gone"
    rest=${stat##*) }
    awk -v r="$rest" -v hz="$CLK_TCK" 'BEGIN {split(r, f, " "); printf "%.2f", (f[12] + f[13]) / hz}'
}

# status_kib FIELD: VmHWM / VmRSS of the agent in KiB.
status_kib() {
    awk -v f="$1:" '$1 == f {print $2}' "/proc/$AGENT_PID/status"
}

alive() {
    kill -0 "$LG_PID" 2>/dev/null || die "loadgen died: $(tail -n 3 "$TMP/loadgen.err")"
    kill -0 "$AGENT_PID" 2>/dev/null || {
        tail -n 5 "$TMP/agent.err" >&2
        die "closewatch agent $AGENT_PID died"
    }
}

# scrape FILE: GET /metrics into FILE; prints the HTTP status.
scrape() {
    curl -s --max-time 10 -o "$1" -w '%{http_code}' "$URL" || echo 000
}

# metric FILE NAME: value of an unlabelled series.
metric() { awk -v n="$2" '$1 == n {print $2; found = 1; exit} END {if (!found) print "nan"}' "$1"; }

# Scrapes once (must be 200) and sets M_SCANS, M_TS (start of the last scan,
# epoch), M_DUR (its duration).
read_scan_state() {
    local code
    code=$(scrape "$TMP/state.prom")
    [[ $code == 200 ]] || die "/metrics answered $code"
    M_SCANS=$(metric "$TMP/state.prom" closewatch_scans_total)
    M_TS=$(metric "$TMP/state.prom" closewatch_last_scan_timestamp_seconds)
    M_DUR=$(metric "$TMP/state.prom" closewatch_scan_duration_seconds)
    [[ $M_SCANS =~ ^[0-9]+$ ]] || die "no closewatch_scans_total in /metrics"
}

# Checks what the last scan saw: the load's CLOSE_WAIT, complete attribution,
# every loadgen worker listed, no scan errors (warnings otherwise).
check_view() {
    local f=$TMP/state.prom total complete listed errors
    total=$(awk '/^closewatch_tcp_sockets\{/ && /state="close_wait"/ {s += $NF} END {print s + 0}' "$f")
    complete=$(metric "$f" closewatch_attribution_complete)
    listed=$(grep -c '^closewatch_process_open_fds{comm="loadgen"' "$f" || true)
    errors=$(awk '/^closewatch_scan_errors_total/ {s += $NF} END {print s + 0}' "$f")
    PROCESSES_LISTED=$(grep -c '^closewatch_process_open_fds{' "$f" || true)
    FINDINGS=$(grep -c '^closewatch_process_finding{' "$f" || true)
    ((total >= EXPECT_CW)) ||
        die "the agent saw $total CLOSE_WAIT sockets; loadgen built $EXPECT_CW"
    [[ $complete == 1 ]] || warn "closewatch_attribution_complete is $complete"
    local want=$((PROCS < 100 ? PROCS : 100)) # default max_processes
    ((listed == want)) || warn "the agent lists $listed loadgen workers, expected $want"
    ((errors == 0)) || warn "closewatch_scan_errors_total adds up to $errors"
}

# start_agent INTERVAL_SECONDS: starts the agent, waits for /metrics to answer
# 200 (the first scan is published). setpriv --pdeathsig: the agent gets
# SIGTERM if this script dies without running its trap (SIGKILL).
start_agent() {
    local interval=$1 i code
    : >"$TMP/agent.err"
    RUST_LOG=info,closewatch::agent=debug \
        setpriv --pdeathsig TERM "$CW" -c "$TMP/empty.toml" --listen 127.0.0.1:0 \
        --interval "${interval}s" </dev/null >/dev/null 2>"$TMP/agent.err" {HOLD_FD}>&- &
    AGENT_PID=$!
    URL=""
    for ((i = 0; i < START_TIMEOUT * 10; i++)); do
        kill -0 "$AGENT_PID" 2>/dev/null || {
            cat "$TMP/agent.err" >&2
            die "closewatch exited at start"
        }
        if [[ -z $URL ]]; then
            URL=$(sed -n 's|.*listening on \(http://[^ ]*/metrics\).*|\1|p' "$TMP/agent.err" | head -n 1)
        fi
        if [[ -n $URL ]]; then
            code=$(scrape /dev/null)
            [[ $code == 200 ]] && break
            [[ $code == 503 || $code == 000 ]] || die "/metrics answered $code before the first scan"
        fi
        sleep 0.1
    done
    [[ -n $URL && $code == 200 ]] || die "the agent did not serve /metrics within $START_TIMEOUT s"
    note "agent $AGENT_PID on $URL, scanning every ${interval}s"
}

# Durations of scans FIRST..LAST, from the agent's debug log ("scan N took
# 312.3ms: ..."), in seconds, one a line.
scan_durations() {
    sed -n 's/.*] scan \([0-9]*\) took \([0-9.]*\)\([a-zµ]*\):.*/\1 \2 \3/p' "$TMP/agent.err" |
        awk -v a="$1" -v b="$2" '$1 >= a && $1 <= b {
            m = ($3 == "s") ? 1 : ($3 == "ms") ? 1e-3 : ($3 == "µs" || $3 == "us") ? 1e-6 : ($3 == "ns") ? 1e-9 : -1
            print $2 * m }'
}

# measure_window INTERVAL K: the agent's CPU over exactly K scans with nothing
# scraping. The window opens just after a scan is published and closes K
# intervals later, just after scan +K is published and before scan +K+1
# starts, so it holds K whole scans and the idle time between them. The two
# scrapes that find the edges lie outside it. Sets WIN_CPU, WIN_SECONDS,
# WIN_FIRST, WIN_LAST.
measure_window() {
    local interval=$1 k=$2 margin t_a t_b cpu_a cpu_b s_a s_b ts_a ts_b dur attempt
    for attempt in 1 2 3; do
        read_scan_state
        # Half the idle gap after a scan, at most 0.5 s: the scan's duration
        # may vary from one to the next by less than that.
        margin=$(awk -v i="$interval" -v d="$M_DUR" 'BEGIN {m = (i - d) / 2; printf "%.3f", (m > 0.5) ? 0.5 : m}')
        awk -v m="$margin" 'BEGIN {exit !(m >= 0.1)}' ||
            die "a scan takes $M_DUR s of the ${interval} s interval: no idle gap to measure in"
        # The next scan starts at M_TS + interval and is published about M_DUR later.
        sleep_until "$(awk -v t="$M_TS" -v i="$interval" -v d="$M_DUR" -v m="$margin" 'BEGIN {printf "%.3f", t + i + d + m}')"
        read_scan_state
        s_a=$M_SCANS ts_a=$M_TS
        cpu_a=$(agent_cpu)
        t_a=$(now)
        awk -v t="$t_a" -v ts="$ts_a" -v d="$M_DUR" -v i="$interval" 'BEGIN {exit !(t > ts + d && t < ts + i)}' &&
            break
        ((attempt < 3)) || die "could not open the window between two scans (last scan started $ts_a, took $M_DUR s)"
        warn "window start $t_a is not between scans (last scan started $ts_a, took $M_DUR s); again"
    done
    sleep_until "$(awk -v t="$t_a" -v i="$interval" -v k="$k" 'BEGIN {printf "%.3f", t + k * i}')"
    cpu_b=$(agent_cpu)
    t_b=$(now)
    read_scan_state
    s_b=$M_SCANS ts_b=$M_TS dur=$M_DUR
    ((s_b - s_a == k)) || die "$((s_b - s_a)) scans in the window instead of $k (scans_total $s_a → $s_b)"
    awk -v t="$t_b" -v ts="$ts_b" -v d="$dur" -v i="$interval" 'BEGIN {exit !(t > ts + d && t < ts + i)}' ||
        die "window end $t_b is not between scans (last scan started $ts_b, took $dur s)"
    WIN_CPU=$(awk -v a="$cpu_a" -v b="$cpu_b" 'BEGIN {printf "%.2f", b - a}')
    WIN_SECONDS=$(awk -v a="$t_a" -v b="$t_b" 'BEGIN {printf "%.2f", b - a}')
    WIN_FIRST=$((s_a + 1))
    WIN_LAST=$s_b
}

# ------------------------------------------------------------- the load ----
check_budget
start_loadgen_and_wait "$PROCS" "$SOCKETS" # sets LG_PID, LG_READY
ready=$LG_READY
READY_AT=$(now)
EXPECT_CW=$(jq .close_wait <<<"$ready")
TOTAL_SOCKETS=$(jq .sockets <<<"$ready")
TOTAL_FDS=$(jq .fds <<<"$ready")
SETUP=$(jq .setup_seconds <<<"$ready")
busy=$(settle_host) # at most SETTLE_SECONDS, for a quiet second
note "loadgen ready in $SETUP s: $TOTAL_SOCKETS sockets, $TOTAL_FDS fds, $EXPECT_CW CLOSE_WAIT; host ${busy}% busy"
((busy <= 10)) || warn "the host was ${busy}% busy with the load idle: timings will be noisy"

# ------------------------------------- run 1: CPU per scan (short interval) ----
check_budget
start_agent "$SCAN_INTERVAL"
# Steady state: the load's sockets are older than closewatch's stale age, so
# every worker has findings (the report is "warning"); the scans before that
# find nothing to flag and /metrics is smaller.
stale_at=$(awk -v r="$READY_AT" -v s="$STALE_AFTER" 'BEGIN {printf "%.3f", r + s + 1}')
note "waiting for the load to be ${STALE_AFTER} s old (stale) before measuring..."
sleep_until "$stale_at"
for ((i = 0; ; i++)); do
    alive
    read_scan_state
    awk -v t="$M_TS" -v s="$stale_at" 'BEGIN {exit !(t >= s)}' && break
    ((i < (SCAN_INTERVAL + 30) * 5)) || die "no scan published since the load turned stale"
    sleep 0.2
done
check_view
note "run 1: measuring CPU over $SCANS scans at ${SCAN_INTERVAL}s, nothing scraping..."
measure_window "$SCAN_INTERVAL" "$SCANS"
alive
check_view
C_CPU=$WIN_CPU C_SECONDS=$WIN_SECONDS C_SCANS=$SCANS
C_FIRST=$WIN_FIRST C_LAST=$WIN_LAST
C_CPU_PER_SCAN=$(awk -v c="$WIN_CPU" -v n="$SCANS" 'BEGIN {printf "%.1f", 1000 * c / n}')
scan_durations "$C_FIRST" "$C_LAST" >"$TMP/c.durations"
(($(wc -l <"$TMP/c.durations") == SCANS)) || warn "the debug log has $(wc -l <"$TMP/c.durations") of the $SCANS scan durations"
C_DUR_MED=$(median <"$TMP/c.durations")
C_DUR_MIN=$(sort -g "$TMP/c.durations" | head -n 1)
C_DUR_MAX=$(sort -g "$TMP/c.durations" | tail -n 1)
C_GAUGE=$M_DUR
C_TOTAL_SCANS=$M_SCANS
C_HWM=$(status_kib VmHWM)
C_RSS=$(status_kib VmRSS)
C_STATUS=$(sed -n 's/.*INFO ] status \([a-z]*\):.*/\1/p' "$TMP/agent.err" | tail -n 1)
stop_agent

# ------------------------- run 2: production interval: idle, then scraped ----
check_budget
start_agent "$IDLE_INTERVAL"
alive
read_scan_state
awk -v t="$M_TS" -v s="$stale_at" 'BEGIN {exit !(t >= s)}' || die "the load is not stale yet"
check_view
note "run 2: measuring idle CPU over $IDLE_SCANS scans at ${IDLE_INTERVAL}s ($((IDLE_SCANS * IDLE_INTERVAL)) s), nothing scraping..."
measure_window "$IDLE_INTERVAL" "$IDLE_SCANS"
alive
check_view
D_CPU=$WIN_CPU D_SECONDS=$WIN_SECONDS
D_PCT=$(awk -v c="$WIN_CPU" -v s="$WIN_SECONDS" 'BEGIN {printf "%.2f", 100 * c / s}')
D_CPU_PER_SCAN=$(awk -v c="$WIN_CPU" -v n="$IDLE_SCANS" 'BEGIN {printf "%.1f", 1000 * c / n}')
scan_durations "$WIN_FIRST" "$WIN_LAST" >"$TMP/d.durations"
D_DUR_MED=$(median <"$TMP/d.durations")

check_budget
# The scrape whose response is measured, and the response size the wrk
# average is checked against.
code=$(curl -s --max-time 10 -o "$TMP/one.prom" -D "$TMP/one.headers" -w '%{http_code}' "$URL" || echo 000)
[[ $code == 200 ]] || die "/metrics answered $code"
BODY_BYTES=$(stat -c %s "$TMP/one.prom")
HEADER_BYTES=$(stat -c %s "$TMP/one.headers")
cat >"$TMP/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %d %d %d %.0f %.0f %.0f %.0f\n",
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
LUA
note "run 2: $CONNECTIONS scrapers on $THREADS wrk threads for ${DURATION}s..."
read_scan_state
s_before=$M_SCANS
cpu_before=$(agent_cpu)
timeout --foreground $((DURATION + 60)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
    -s "$TMP/report.lua" "$URL" >"$TMP/wrk.out" 2>&1 {HOLD_FD}>&- || {
    cat "$TMP/wrk.out" >&2
    die "wrk failed"
}
cpu_after=$(agent_cpu)
alive
read_scan_state
check_view
s_after=$M_SCANS
sed 's/^/  wrk: /' "$TMP/wrk.out" | grep -v '  wrk: WRK ' >&2
read -r _ REQS BYTES WRK_US E_CONNECT E_READ E_WRITE E_STATUS E_TIMEOUT P50 P90 P99 PMAX \
    < <(grep '^WRK ' "$TMP/wrk.out") || die "no summary from wrk"
((REQS > 0)) || die "wrk made no request"
# Every response 200: the agent answers 200, 404, 405 or 503 only, and wrk
# counts every status ≥ 400; the average size is checked against one 200.
((E_STATUS == 0)) || die "$E_STATUS responses were not 200 (wrk counts statuses ≥ 400)"
((E_CONNECT == 0 && E_WRITE == 0 && E_TIMEOUT == 0)) ||
    die "wrk socket errors: connect $E_CONNECT, write $E_WRITE, timeout $E_TIMEOUT"
# After 60 s a connection's responses carry "Connection: close" and wrk
# reconnects: no request may fail, however long the run.
((E_READ == 0)) || die "$E_READ read errors: a connection was closed under a request"
AVG_BYTES=$(awk -v b="$BYTES" -v r="$REQS" 'BEGIN {printf "%.0f", b / r}')
awk -v a="$AVG_BYTES" -v one="$((BODY_BYTES + HEADER_BYTES))" 'BEGIN {d = a / one - 1; exit !(d < 0.05 && d > -0.05)}' ||
    die "wrk read $AVG_BYTES bytes per response on average; one 200 is $((BODY_BYTES + HEADER_BYTES))"
if ((DURATION >= IDLE_INTERVAL && s_after <= s_before)); then
    die "no scan completed during the ${DURATION} s of scraping (scans_total $s_before → $s_after)"
fi
RPS=$(awk -v r="$REQS" -v us="$WRK_US" 'BEGIN {printf "%.0f", r / (us / 1e6)}')
A_CPU_PCT=$(awk -v a="$cpu_before" -v b="$cpu_after" -v us="$WRK_US" 'BEGIN {printf "%.0f", 100 * (b - a) / (us / 1e6)}')
A_US_PER_REQ=$(awk -v a="$cpu_before" -v b="$cpu_after" -v r="$REQS" 'BEGIN {printf "%.1f", 1e6 * (b - a) / r}')
A_SCANS=$((s_after - s_before))
A_DUR=$M_DUR
B_HWM=$(status_kib VmHWM)
B_RSS=$(status_kib VmRSS)
B_SCANS=$M_SCANS
B_THREADS=$(awk '$1 == "Threads:" {print $2}' "/proc/$AGENT_PID/status")
stop_agent
kill -0 "$LG_PID" 2>/dev/null || die "loadgen died: $(tail -n 3 "$TMP/loadgen.err")"
stop_loadgen

# ---------------------------------------------------------------- table ----
us_ms() { awk -v u="$1" 'BEGIN {printf "%.2f", u / 1000}'; }
row() { printf '%-46s %s\n' "$1" "$2"; }
{
    echo "closewatch $REVISION on $(uname -r), $(nproc) CPUs"
    echo
    echo "== agent at $PROCS processes × $SOCKETS sockets — $TOTAL_SOCKETS TCP sockets, $TOTAL_FDS fds, \
$EXPECT_CW CLOSE_WAIT (loadgen setup $SETUP s; host ${busy}% busy before); agent status $C_STATUS, \
$PROCESSES_LISTED processes listed, $FINDINGS finding series"
    row "measurement" "value"
    row "a. /metrics latency p50 / p90 / p99 / max" \
        "$(us_ms "$P50") / $(us_ms "$P90") / $(us_ms "$P99") / $(us_ms "$PMAX") ms  (wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s)"
    row "a. /metrics requests/s" "$RPS  ($REQS requests, all 200; socket read errors $E_READ)"
    row "a. /metrics response size" "$BODY_BYTES B body + $HEADER_BYTES B headers (wrk average $AVG_BYTES B)"
    row "a. agent CPU while scraped" "$A_CPU_PCT % of one core, $A_US_PER_REQ µs per request (scans during it: $A_SCANS, the last took $(ms "$A_DUR") ms)"
    row "b. peak RSS (VmHWM) / RSS (VmRSS), run 2" \
        "$(mib "$B_HWM") / $(mib "$B_RSS") MiB after $B_SCANS scans at ${IDLE_INTERVAL}s and the scraping ($B_THREADS threads)"
    row "b. peak RSS (VmHWM) / RSS (VmRSS), run 1" \
        "$(mib "$C_HWM") / $(mib "$C_RSS") MiB after $C_TOTAL_SCANS scans at ${SCAN_INTERVAL}s, no load test"
    row "c. CPU per scan" "$C_CPU_PER_SCAN ms  ($C_CPU CPU s over $C_SCANS scans in $C_SECONDS s at ${SCAN_INTERVAL}s, nothing scraping)"
    row "c. scan_duration_seconds (wall)" \
        "median $(ms "$C_DUR_MED") ms, min $(ms "$C_DUR_MIN"), max $(ms "$C_DUR_MAX") over those scans; gauge at the end $(ms "$C_GAUGE") ms"
    row "d. idle overhead at ${IDLE_INTERVAL}s" \
        "$D_PCT % of one core  ($D_CPU CPU s over $D_SECONDS s, $IDLE_SCANS scans: $D_CPU_PER_SCAN ms each, median scan $(ms "$D_DUR_MED") ms)"
    echo
    echo "| load | p50 ms | p90 ms | p99 ms | max ms | req/s | response bytes | peak RSS MiB | RSS MiB | CPU ms/scan | scan ms | idle % of a core @${IDLE_INTERVAL}s |"
    echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    echo "| $PROCS × $SOCKETS | $(us_ms "$P50") | $(us_ms "$P90") | $(us_ms "$P99") | $(us_ms "$PMAX") | $RPS \
| $BODY_BYTES | $(mib "$B_HWM") | $(mib "$B_RSS") | $C_CPU_PER_SCAN | $(ms "$C_DUR_MED") | $D_PCT |"
}
