#!/usr/bin/env bash
# Measures the closewatch agent on a leaky host's socket load
# (examples/loadgen.rs, 100 processes × 1,000 sockets by default):
#   a. /metrics latency, requests/s and response size under concurrent scrapers (wrk);
#   b. peak and current RSS after several scans;
#   cold. CPU of a cold scan: the median of one-shot `closewatch --report` runs on
#      the same host state (and the agent's own first scan, for comparison);
#   c. CPU per cached scan (a 2 s interval, nothing scraping), its ratio to the
#      cold scan, and the agent's own scan duration;
#   d. idle overhead at the production interval (15 s) as a % of one core, over
#      a window long enough (300 s) to hold one periodic full /proc walk and
#      about five all-states count dumps: the amortized CPU per scan, and its
#      ratio to the cold scan.
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
DURATION=${DURATION:-15}          # seconds of scraping (wrk -d), per encoding
ENCODINGS=${ENCODINGS:-identity gzip} # scrape runs: no Accept-Encoding, and gzip as Prometheus asks
SCAN_INTERVAL=${SCAN_INTERVAL:-2} # seconds between scans, CPU-per-scan run
SCANS=${SCANS:-10}                # scans in the CPU-per-scan window (≥ 4)
IDLE_INTERVAL=${IDLE_INTERVAL:-15} # seconds between scans, production run
IDLE_SECONDS=${IDLE_SECONDS:-300} # idle window, rounded to whole intervals
COLD_RUNS=${COLD_RUNS:-5}         # timed one-shot runs, the cold reference (median)
COLD_WARMUP=${COLD_WARMUP:-1}     # untimed one-shot runs before them
COLD_GAP=${COLD_GAP:-$SCAN_INTERVAL} # seconds idle before each one-shot (as between the agent's scans)
CMD_TIMEOUT=${CMD_TIMEOUT:-180}   # seconds, one one-shot run
STALE_AFTER=${STALE_AFTER:-60}    # load age before measuring (closewatch's close_wait_age)
START_TIMEOUT=${START_TIMEOUT:-60} # seconds, agent until /metrics answers 200
SETUP_TIMEOUT=${SETUP_TIMEOUT:-300} # seconds, loadgen until ready
BUILD_TIMEOUT=${BUILD_TIMEOUT:-900} # seconds, cargo build
SETTLE_SECONDS=${SETTLE_SECONDS:-20} # at most, for the host to go quiet after the setup
MAX_SECONDS=${MAX_SECONDS:-2400}  # the whole script, checked between steps

# The agent's caches (src/collect/cache.rs FULL_WALK_EVERY and
# STATE_COUNTS_EVERY): a cached scan reads only the fd
# tables whose fd count changed and dumps only CLOSE_WAIT|FIN_WAIT_2|LISTEN;
# every 300 s the /proc walk is full again, and every 60 s a scan also dumps
# every state to count them. Used here only to place and label the windows.
FULL_WALK_EVERY=300
STATE_COUNTS_EVERY=60

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

for tool in cargo curl wrk jq awk python3 setpriv timeout getconf; do
    command -v "$tool" >/dev/null || die "$tool is required (apt-get install -y wrk jq curl)"
done
PROCS=${LOAD%x*}
SOCKETS=${LOAD#*x}
[[ $PROCS =~ ^[1-9][0-9]*$ && $SOCKETS =~ ^[1-9][0-9]*$ ]] || die "LOAD='$LOAD' is not PROCESSESxSOCKETS"
if ! [[ $SCANS =~ ^[0-9]+$ ]] || ((SCANS < 4)); then die "SCANS must be ≥ 4"; fi
for v in CONNECTIONS THREADS DURATION SCAN_INTERVAL IDLE_INTERVAL IDLE_SECONDS STALE_AFTER COLD_RUNS CMD_TIMEOUT; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number (seconds for durations)"
done
[[ $COLD_WARMUP =~ ^[0-9]+$ ]] || die "COLD_WARMUP must be a whole number"
[[ $COLD_GAP =~ ^[0-9]+$ ]] || die "COLD_GAP must be a whole number of seconds"
IDLE_SCANS=$(((IDLE_SECONDS + IDLE_INTERVAL / 2) / IDLE_INTERVAL))
((IDLE_SCANS >= 1)) || IDLE_SCANS=1
# Run 1's window holds scans 3 .. SCANS+2 of a fresh agent (scan 1 is cold,
# scan 2 opens the window): all of them must start within STATE_COUNTS_EVERY
# of scan 1, or one may dump every state.
if (((SCANS + 1) * SCAN_INTERVAL + 1 >= STATE_COUNTS_EVERY)); then
    warn "SCANS=$SCANS at ${SCAN_INTERVAL}s reaches ${STATE_COUNTS_EVERY} s after the agent's first \
scan: the CPU-per-scan window may include an all-states count dump"
fi
if ((IDLE_SCANS * IDLE_INTERVAL < FULL_WALK_EVERY)); then
    warn "the idle window ($((IDLE_SCANS * IDLE_INTERVAL)) s) is shorter than the full-walk period \
(${FULL_WALK_EVERY} s): its amortized CPU per scan may hold no full walk"
fi
CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- build ----
# The binaries (CW, LOADGEN, REVISION) and the FIFO that holds loadgen: lib.sh.
build_binaries
# The one-shot timer (wait4: the child's own user + system CPU): lib.sh.
write_measure_py
# An empty config file, so that /etc/closewatch/closewatch.toml cannot change
# the settings: defaults plus the flags given here.
: >"$TMP/empty.toml"
open_hold

# -------------------------------------------------------------- helpers ----

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
# SIGTERM if this script dies without running its trap (SIGKILL). Sets
# AGENT_STARTED (epoch, just before the start: the first scan starts after
# it) and FIRST_CPU (the agent's CPU seconds when its first scan was seen
# published: start-up, that cold scan and its rendering).
start_agent() {
    local interval=$1 i code
    : >"$TMP/agent.err"
    AGENT_STARTED=$(now)
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
    FIRST_CPU=$(agent_cpu)
    note "agent $AGENT_PID on $URL, scanning every ${interval}s"
}

# scan_log FIRST LAST: scans FIRST..LAST from the agent's debug log, one a line:
# "N SECONDS LINKS REUSED FULL" — the scan's duration, the fd links it read,
# the fd tables it took from the cache ("nan" for both if the line does not
# say) and 1 if its /proc walk was full, else 0. The log line reads
#   [… DEBUG] scan 12 took 102.46ms: 10000 flagged sockets, 100 processes
#   listed, 1 fd links read, 110 fd tables from the cache
# (one line), with " (full walk)" at the end for a full walk. Plain awk
# (mawk): index, match and substr only.
scan_log() {
    awk -v a="$1" -v b="$2" '{
        i = index($0, "] scan "); if (!i) next
        s = substr($0, i + 7)
        n = split(s, w, " ")
        if (n < 3 || w[2] != "took" || w[1] !~ /^[0-9]+$/) next
        k = w[1] + 0; if (k < a || k > b) next
        d = w[3]; sub(/:$/, "", d)
        if (!match(d, /^[0-9.]+/)) next
        v = substr(d, 1, RLENGTH) + 0; u = substr(d, RLENGTH + 1)
        m = (u == "s") ? 1 : (u == "ms") ? 1e-3 : (u == "µs" || u == "us") ? 1e-6 : (u == "ns") ? 1e-9 : -1
        links = "nan"; reused = "nan"
        if (match(s, /[0-9]+ fd links read/)) links = substr(s, RSTART, RLENGTH) + 0
        if (match(s, /[0-9]+ fd tables from the cache/)) reused = substr(s, RSTART, RLENGTH) + 0
        printf "%d %.9f %s %s %d\n", k, v * m, links, reused, (index(s, "(full walk)") > 0)
    }' "$TMP/agent.err"
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

# run_oneshot MODE: one `closewatch --report --format json` (the same copied
# binary and empty config as the agent; a cold scan: no cache), timed by
# measure.py (wait4: the child's own user + system CPU, µs). Checks it as
# compare.sh does: exit 0/1/2, the CLOSE_WAIT and owned FIN_WAIT_2 attributed
# to loadgen's workers equal what they built, the host total at least
# loadgen's. A timed run appends "wall cpu scan_duration" to $TMP/cold.
run_oneshot() {
    local mode=$1 line rc wall user sys check total attributed fw2 errors complete scan
    line=$(python3 "$TMP/measure.py" "$CMD_TIMEOUT" "$TMP/cw.json" "$TMP/cw.err" \
        "$CW" -c "$TMP/empty.toml" --report --format json {HOLD_FD}>&-) ||
        die "one-shot measurement failed"
    read -r rc wall user sys <<<"$line"
    if [[ $rc != [012] ]]; then
        sed 's/^/  closewatch stderr: /' "$TMP/cw.err" | head -20 >&2
        die "closewatch --report exited $rc (expected 0, 1 or 2)"
    fi
    check=$(jq -r --argjson pids "$WORKER_PIDS" "$REPORT_JQ"'
        workers($pids) as $w
        | [ .tcp_states.close_wait,
            attributed($w),
            (.errors | length),
            .attribution_complete,
            .scan_duration_seconds ] | @tsv' "$TMP/cw.json") || die "closewatch --report printed invalid JSON"
    read -r total attributed fw2 errors complete scan <<<"$check"
    if ((attributed != EXPECT_CW || fw2 != EXPECT_FW2 || total < EXPECT_CW)); then
        die "closewatch --report saw $total CLOSE_WAIT on the host, $attributed CLOSE_WAIT and $fw2 \
FIN_WAIT_2 in loadgen's workers; loadgen built $EXPECT_CW and $EXPECT_FW2"
    fi
    if ((errors > 0)) || [[ $complete != true ]]; then
        warn "closewatch --report reported $errors scan errors, attribution_complete=$complete"
    fi
    if [[ $mode == timed ]]; then
        awk -v w="$wall" -v u="$user" -v s="$sys" -v d="$scan" \
            'BEGIN {printf "%s %.6f %s\n", w, u + s, d}' >>"$TMP/cold"
    fi
}

# ------------------------------------------------------------- the load ----
check_budget
start_loadgen_and_wait "$PROCS" "$SOCKETS" # sets LG_PID, LG_READY
ready=$LG_READY
READY_AT=$(now)
EXPECT_CW=$(jq .close_wait <<<"$ready")
EXPECT_FW2=$(jq .fin_wait2_owned <<<"$ready")
WORKER_PIDS=$(jq -c .worker_pids <<<"$ready")
TOTAL_SOCKETS=$(jq .sockets <<<"$ready")
TOTAL_FDS=$(jq .fds <<<"$ready")
SETUP=$(jq .setup_seconds <<<"$ready")
busy=$(settle_host) # at most SETTLE_SECONDS, for a quiet second
note "loadgen ready in $SETUP s: $TOTAL_SOCKETS sockets, $TOTAL_FDS fds, $EXPECT_CW CLOSE_WAIT; host ${busy}% busy"
((busy <= 10)) || warn "the host was ${busy}% busy with the load idle: timings will be noisy"

# Steady state: everything is measured once the load's sockets are older
# than closewatch's stale age, so every worker has findings (the report is
# "warning"); before that the scans find nothing to flag and /metrics is
# smaller.
stale_at=$(awk -v r="$READY_AT" -v s="$STALE_AFTER" 'BEGIN {printf "%.3f", r + s + 1}')
note "waiting for the load to be ${STALE_AFTER} s old (stale) before measuring..."
sleep_until "$stale_at"
kill -0 "$LG_PID" 2>/dev/null || die "loadgen died: $(tail -n 3 "$TMP/loadgen.err")"

# ---------------------------------------- the cold reference: one-shots ----
# No agent runs yet: the one-shots have the CPUs to themselves, on the host
# state the agents will see. The warmup run leaves the kernel's caches (the
# /proc dentries) as warm as the agent's later scans find them. Each run
# follows COLD_GAP idle seconds, as each of run 1's scans follows the
# interval: a scan right after another costs measurably less CPU than one
# after a second or two of idle (CPU caches), and the agent's never run
# back to back.
check_budget
note "cold reference: $COLD_WARMUP + $COLD_RUNS runs of closewatch --report --format json, ${COLD_GAP} s apart..."
: >"$TMP/cold"
for ((i = 0; i < COLD_WARMUP + COLD_RUNS; i++)); do
    check_budget
    sleep "$COLD_GAP" {HOLD_FD}>&-
    kill -0 "$LG_PID" 2>/dev/null || die "loadgen died: $(tail -n 3 "$TMP/loadgen.err")"
    if ((i < COLD_WARMUP)); then run_oneshot warmup; else run_oneshot timed; fi
done
COLD_CPU=$(col_median "$TMP/cold" 2)
COLD_WALL=$(col_median "$TMP/cold" 1)
COLD_SCAN=$(col_median "$TMP/cold" 3)
COLD_CPU_MS=$(ms "$COLD_CPU")
COLD_EACH=$(awk '{printf "%s%.1f", (NR > 1) ? " " : "", $2 * 1000}' "$TMP/cold")
note "cold reference: median $COLD_CPU_MS ms CPU ($COLD_EACH)"

# ------------------------------------- run 1: CPU per scan (short interval) ----
check_budget
# The agent scans at once when it starts: after the same idle gap as the
# one-shots, so that its first scan compares with them.
sleep "$COLD_GAP" {HOLD_FD}>&-
start_agent "$SCAN_INTERVAL" # sets AGENT_STARTED, FIRST_CPU
alive
read_scan_state
awk -v t="$M_TS" -v s="$stale_at" 'BEGIN {exit !(t >= s)}' || die "the load is not stale yet"
check_view
# The agent's own first scan: cold (a full walk and an all-states count).
# Its CPU is read when the scan is seen published, so it also holds the
# agent's start-up and the rendering, in 10 ms ticks: a cross-check only; the
# one-shots' median is the cold reference.
FIRST_CPU_MS=$(awk -v c="$FIRST_CPU" 'BEGIN {printf "%.0f", c * 1000}')
# (The line is logged just after the scan is published: wait for it.)
for ((i = 0; i < 50; i++)); do
    [[ -n $(scan_log 1 1) ]] && break
    sleep 0.1
done
read -r _ FIRST_DUR FIRST_LINKS _ FIRST_FULL < <(scan_log 1 1) ||
    die "no 'scan 1 took …' line in the agent's debug log"
FIRST_KIND="full walk"
((FIRST_FULL == 1)) || {
    FIRST_KIND="NOT a full walk"
    warn "the agent's first scan was not a full walk"
}
# The window: SCANS cached scans, from the third on (measure_window opens it
# after the next scan is published). Should a scan in it have walked all of
# /proc (a flagged socket the cache could not place: someone else's
# connections), it is measured once more.
for attempt in 1 2; do
    note "run 1: measuring CPU over $SCANS scans at ${SCAN_INTERVAL}s, nothing scraping..."
    measure_window "$SCAN_INTERVAL" "$SCANS"
    alive
    check_view
    scan_log "$WIN_FIRST" "$WIN_LAST" >"$TMP/c.scans"
    C_FULL=$(awk '{s += $5} END {print s + 0}' "$TMP/c.scans")
    ((C_FULL == 0)) && break
    ((attempt < 2)) || {
        warn "$C_FULL of the window's scans walked all of /proc again: the figure is not of cached scans only"
        break
    }
    warn "$C_FULL of the window's scans walked all of /proc again; measuring once more"
done
C_LAST_TS=$M_TS
# Every scan of the window started within STATE_COUNTS_EVERY of the agent's
# start (so of its first scan, which counted every state): none counted them.
if awk -v t="$C_LAST_TS" -v a="$AGENT_STARTED" -v e="$STATE_COUNTS_EVERY" 'BEGIN {exit !(t < a + e)}'; then
    C_COUNTS="none (the window ends $(awk -v t="$C_LAST_TS" -v a="$AGENT_STARTED" 'BEGIN {printf "%.0f", t - a}') s after the agent's start, < ${STATE_COUNTS_EVERY} s)"
else
    C_COUNTS="possibly some (the window ends ≥ ${STATE_COUNTS_EVERY} s after the agent's start)"
    warn "run 1's window reaches ${STATE_COUNTS_EVERY} s after the agent started: it may hold an all-states count dump"
fi
C_CPU=$WIN_CPU C_SECONDS=$WIN_SECONDS C_SCANS=$SCANS
WIN_C_FIRST=$WIN_FIRST WIN_C_LAST=$WIN_LAST
C_CPU_PER_SCAN=$(awk -v c="$WIN_CPU" -v n="$SCANS" 'BEGIN {printf "%.1f", 1000 * c / n}')
C_PCT=$(awk -v c="$C_CPU_PER_SCAN" -v r="$COLD_CPU_MS" 'BEGIN {if (r > 0) printf "%.1f", 100 * c / r; else print "n/a"}')
awk '{print $2}' "$TMP/c.scans" >"$TMP/c.durations"
(($(wc -l <"$TMP/c.durations") == SCANS)) || warn "the debug log has $(wc -l <"$TMP/c.durations") of the $SCANS scan durations"
C_DUR_MED=$(median <"$TMP/c.durations")
C_DUR_MIN=$(sort -g "$TMP/c.durations" | head -n 1)
C_DUR_MAX=$(sort -g "$TMP/c.durations" | tail -n 1)
C_LINKS_MED=$(awk '{print $3}' "$TMP/c.scans" | median)
C_REUSED_MED=$(awk '{print $4}' "$TMP/c.scans" | median)
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
# The window holds scans 3 .. IDLE_SCANS+2 (the cold first scan is outside
# it). The agent's full walks fall FULL_WALK_EVERY apart, give or take a
# scan: scan 1, then scan 21 or 22 at 15 s (which one depends on a few ms of
# jitter); a window of scans 3..22 holds exactly one of them either way. Its
# all-states counts come every STATE_COUNTS_EVERY, rounded up to whole
# intervals (every 4th scan at 15 s, or 5th with the same jitter).
note "run 2: measuring idle CPU over $IDLE_SCANS scans at ${IDLE_INTERVAL}s ($((IDLE_SCANS * IDLE_INTERVAL)) s), nothing scraping..."
measure_window "$IDLE_INTERVAL" "$IDLE_SCANS"
alive
check_view
D_CPU=$WIN_CPU D_SECONDS=$WIN_SECONDS
D_PCT=$(awk -v c="$WIN_CPU" -v s="$WIN_SECONDS" 'BEGIN {printf "%.2f", 100 * c / s}')
D_CPU_PER_SCAN=$(awk -v c="$WIN_CPU" -v n="$IDLE_SCANS" 'BEGIN {printf "%.1f", 1000 * c / n}')
D_AMORT_PCT=$(awk -v c="$D_CPU_PER_SCAN" -v r="$COLD_CPU_MS" 'BEGIN {if (r > 0) printf "%.1f", 100 * c / r; else print "n/a"}')
scan_log "$WIN_FIRST" "$WIN_LAST" >"$TMP/d.scans"
awk '{print $2}' "$TMP/d.scans" >"$TMP/d.durations"
(($(wc -l <"$TMP/d.durations") == IDLE_SCANS)) || warn "the debug log has $(wc -l <"$TMP/d.durations") of the $IDLE_SCANS scan durations"
D_DUR_MED=$(median <"$TMP/d.durations")
D_FULL=$(awk '{s += $5} END {print s + 0}' "$TMP/d.scans")
# Full walks' own CPU is not separable (ticks), their wall time is: the
# median duration of the window's full-walk scans and of the others.
D_FULL_DUR=$(awk '$5 == 1 {print $2}' "$TMP/d.scans" | median)
D_CACHED_DUR=$(awk '$5 == 0 {print $2}' "$TMP/d.scans" | median)
COUNT_PERIOD=$(((STATE_COUNTS_EVERY + IDLE_INTERVAL - 1) / IDLE_INTERVAL * IDLE_INTERVAL))
D_COUNTS=$((IDLE_SCANS * IDLE_INTERVAL / COUNT_PERIOD))
if ((IDLE_SCANS * IDLE_INTERVAL >= FULL_WALK_EVERY && D_FULL == 0)); then
    warn "no full walk in the ${D_SECONDS} s idle window: the amortized figure lacks the periodic full walk"
fi

cat >"$TMP/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("WRK %d %d %d %d %d %d %d %d %.0f %.0f %.0f %.0f\n",
    summary.requests, summary.bytes, summary.duration,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
LUA
# One wrk run per response encoding: "identity" (no Accept-Encoding, as wrk
# and curl send by default) and "gzip" (Accept-Encoding: gzip, as Prometheus
# sends). Results in the associative array A[<encoding>,<field>].
declare -A A
for enc in $ENCODINGS; do
    check_budget
    hdr=()
    [[ $enc == gzip ]] && hdr=(-H "Accept-Encoding: gzip")
    # The scrape whose response is measured, and the response size the wrk
    # average is checked against.
    code=$(curl -s --max-time 10 "${hdr[@]}" -o "$TMP/one.prom" -D "$TMP/one.headers" -w '%{http_code}' "$URL" || echo 000)
    [[ $code == 200 ]] || die "/metrics answered $code"
    if [[ $enc == gzip ]]; then
        grep -qi '^content-encoding: gzip' "$TMP/one.headers" || die "Accept-Encoding: gzip got no gzip response"
        gzip -t <"$TMP/one.prom" || die "the gzip response does not decompress"
    else
        grep -qi '^content-encoding' "$TMP/one.headers" && die "a response without Accept-Encoding was encoded"
    fi
    BODY_BYTES=$(stat -c %s "$TMP/one.prom")
    HEADER_BYTES=$(stat -c %s "$TMP/one.headers")
    note "run 2: $CONNECTIONS scrapers on $THREADS wrk threads for ${DURATION}s, $enc..."
    read_scan_state
    s_before=$M_SCANS
    cpu_before=$(agent_cpu)
    timeout --foreground $((DURATION + 60)) wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
        "${hdr[@]}" -s "$TMP/report.lua" "$URL" >"$TMP/wrk.out" 2>&1 {HOLD_FD}>&- || {
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
    # A scan in the middle of the run changes the body a little (gzip more).
    awk -v a="$AVG_BYTES" -v one="$((BODY_BYTES + HEADER_BYTES))" 'BEGIN {d = a / one - 1; exit !(d < 0.1 && d > -0.1)}' ||
        die "wrk read $AVG_BYTES bytes per response on average; one 200 is $((BODY_BYTES + HEADER_BYTES))"
    # A scan must land while scrapers run (they must not starve it); with
    # scans of up to seconds at large loads, only over two intervals.
    if ((DURATION >= 2 * IDLE_INTERVAL && s_after <= s_before)); then
        die "no scan completed during the ${DURATION} s of scraping (scans_total $s_before → $s_after)"
    fi
    A[$enc,p50]=$P50 A[$enc,p90]=$P90 A[$enc,p99]=$P99 A[$enc,max]=$PMAX A[$enc,reqs]=$REQS A[$enc,eread]=$E_READ
    A[$enc,body]=$BODY_BYTES A[$enc,headers]=$HEADER_BYTES A[$enc,avg]=$AVG_BYTES
    A[$enc,rps]=$(awk -v r="$REQS" -v us="$WRK_US" 'BEGIN {printf "%.0f", r / (us / 1e6)}')
    A[$enc,cpu_pct]=$(awk -v a="$cpu_before" -v b="$cpu_after" -v us="$WRK_US" 'BEGIN {printf "%.0f", 100 * (b - a) / (us / 1e6)}')
    A[$enc,us_per_req]=$(awk -v a="$cpu_before" -v b="$cpu_after" -v r="$REQS" 'BEGIN {printf "%.1f", 1e6 * (b - a) / r}')
    A[$enc,scans]=$((s_after - s_before))
    A[$enc,dur]=$M_DUR
done
B_HWM=$(status_kib VmHWM)
B_RSS=$(status_kib VmRSS)
B_SCANS=$M_SCANS
B_THREADS=$(awk '$1 == "Threads:" {print $2}' "/proc/$AGENT_PID/status")
stop_agent
kill -0 "$LG_PID" 2>/dev/null || die "loadgen died: $(tail -n 3 "$TMP/loadgen.err")"
stop_loadgen

# ---------------------------------------------------------------- table ----
us_ms() { awk -v u="$1" 'BEGIN {printf "%.2f", u / 1000}'; }
# ms, or "n/a" for the median of nothing.
ms_na() { if [[ $1 == nan ]]; then echo n/a; else ms "$1"; fi; }
row() { printf '%-46s %s\n' "$1" "$2"; }
{
    echo "closewatch $REVISION on $(uname -r), $(nproc) CPUs"
    echo
    echo "== agent at $PROCS processes × $SOCKETS sockets — $TOTAL_SOCKETS TCP sockets, $TOTAL_FDS fds, \
$EXPECT_CW CLOSE_WAIT (loadgen setup $SETUP s; host ${busy}% busy before); agent status $C_STATUS, \
$PROCESSES_LISTED processes listed, $FINDINGS finding series"
    row "measurement" "value"
    for enc in $ENCODINGS; do
        row "a. /metrics latency p50 / p90 / p99 / max, $enc" \
            "$(us_ms "${A[$enc,p50]}") / $(us_ms "${A[$enc,p90]}") / $(us_ms "${A[$enc,p99]}") / $(us_ms "${A[$enc,max]}") ms  (wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s)"
        row "a. /metrics requests/s, $enc" "${A[$enc,rps]}  (${A[$enc,reqs]} requests, all 200; socket read errors ${A[$enc,eread]})"
        row "a. /metrics response size, $enc" "${A[$enc,body]} B body + ${A[$enc,headers]} B headers (wrk average ${A[$enc,avg]} B)"
        row "a. agent CPU while scraped, $enc" "${A[$enc,cpu_pct]} % of one core, ${A[$enc,us_per_req]} µs per request (scans during it: ${A[$enc,scans]}, the last took $(ms "${A[$enc,dur]}") ms)"
    done
    row "b. peak RSS (VmHWM) / RSS (VmRSS), run 2" \
        "$(mib "$B_HWM") / $(mib "$B_RSS") MiB after $B_SCANS scans at ${IDLE_INTERVAL}s and the scraping ($B_THREADS threads)"
    row "b. peak RSS (VmHWM) / RSS (VmRSS), run 1" \
        "$(mib "$C_HWM") / $(mib "$C_RSS") MiB after $C_TOTAL_SCANS scans at ${SCAN_INTERVAL}s, no load test"
    row "cold. CPU of a cold scan (reference)" \
        "$COLD_CPU_MS ms  (median of $COLD_RUNS one-shot --report runs ${COLD_GAP} s apart: $COLD_EACH ms; wall $(ms "$COLD_WALL") ms, own scan_duration $(ms "$COLD_SCAN") ms)"
    row "cold. the agent's first scan (run 1)" \
        "$FIRST_CPU_MS ms CPU at its publication, start-up included (10 ms ticks); scan $(ms "$FIRST_DUR") ms wall, \
$FIRST_LINKS fd links read, $FIRST_KIND"
    row "c. cached scan CPU" \
        "$C_CPU_PER_SCAN ms per scan  ($C_CPU CPU s over $C_SCANS scans in $C_SECONDS s at ${SCAN_INTERVAL}s, nothing scraping)"
    row "c. cached / cold" "$C_PCT %  (goal ≤ 25 %)"
    row "c. the window's scans" \
        "scans $WIN_C_FIRST–$WIN_C_LAST: $C_FULL full walks; all-states count dumps: $C_COUNTS; \
median $C_LINKS_MED fd links read and $C_REUSED_MED fd tables from the cache per scan"
    row "c. scan_duration_seconds (wall)" \
        "median $(ms "$C_DUR_MED") ms, min $(ms "$C_DUR_MIN"), max $(ms "$C_DUR_MAX") over those scans; gauge at the end $(ms "$C_GAUGE") ms"
    row "d. idle overhead at ${IDLE_INTERVAL}s" \
        "$D_PCT % of one core  ($D_CPU CPU s over $D_SECONDS s, $IDLE_SCANS scans; goal ≤ 1 % at 100 × 1000)"
    row "d. amortized CPU per scan at ${IDLE_INTERVAL}s" \
        "$D_CPU_PER_SCAN ms  ($D_FULL full walks and about $D_COUNTS all-states count dumps among the $IDLE_SCANS scans)"
    row "d. amortized / cold" "$D_AMORT_PCT %"
    row "d. scan_duration_seconds (wall)" \
        "median $(ms "$D_DUR_MED") ms; full walks $(ms_na "$D_FULL_DUR") ms, the others $(ms_na "$D_CACHED_DUR") ms (medians)"
    echo
    echo "| load | encoding | p50 ms | p90 ms | p99 ms | max ms | req/s | response bytes | peak RSS MiB | RSS MiB \
| cold CPU ms | cached CPU ms/scan | cached/cold % | cached scan ms | amortized CPU ms/scan @${IDLE_INTERVAL}s \
| amortized/cold % | idle % of a core @${IDLE_INTERVAL}s |"
    echo "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for enc in $ENCODINGS; do
        echo "| $PROCS × $SOCKETS | $enc | $(us_ms "${A[$enc,p50]}") | $(us_ms "${A[$enc,p90]}") | $(us_ms "${A[$enc,p99]}") \
| $(us_ms "${A[$enc,max]}") | ${A[$enc,rps]} | ${A[$enc,body]} | $(mib "$B_HWM") | $(mib "$B_RSS") | $COLD_CPU_MS \
| $C_CPU_PER_SCAN | $C_PCT | $(ms "$C_DUR_MED") | $D_CPU_PER_SCAN | $D_AMORT_PCT | $D_PCT |"
    done
}
