#!/usr/bin/env bash
# The soak: the closewatch agent for DURATION (30 minutes) at the medium load
# (examples/loadgen.rs, 100 processes × 1,000 sockets), next to a process
# leaking LEAK_RATE (10) CLOSE_WAIT sockets a second until its fd limit
# (examples/fixture cw-leak) and one forking CHURN_RATE (200) short-lived
# processes a second that hold CLOSE_WAIT sockets (examples/churn.rs). Every
# SAMPLE_EVERY (10) seconds it records the agent's RSS, peak RSS, fds, CPU,
# scans, scan errors, /healthz, and the leaker's fds against the stale
# CLOSE_WAIT the agent reports for it, into a TSV; then prints RSS over time
# and judges the run:
#   - every scan completed: /healthz 200 at every sample, no scan error,
#     closewatch_scans_total advancing at every sample and within
#     SCAN_SLACK_PCT of elapsed / interval at the end;
#   - the agent never restarted: the same pid and start time throughout;
#   - the leaker reached its cap, and the agent reports every socket it holds
#     that the kernel has in CLOSE_WAIT as stale CLOSE_WAIT (now and then the
#     kernel drops one from its tables, as by a reset, about tcp_fin_timeout
#     after it was made: the agent then counts it dead, not stale);
#   - RSS flat after the warm-up: no sample after it more than the bound above
#     the peak of the warm-up's last minute.
# Exits 0 when all hold, 1 otherwise. CHECK_ONLY=PATH/samples.tsv judges a
# recorded run again (with other bounds, say) without running anything.
# See benches/README.md for how to run it and what the numbers mean.
#
# Everything it starts is stopped by pid from an EXIT trap, on success, failure
# or Ctrl-C; every step is bounded by a timeout and the whole run by MAX_SECONDS.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/benches/lib.sh"

DURATION=${DURATION:-30m}         # of the sampling, from the agent's start: 90s, 5m, 1h, or seconds
LOAD=${LOAD:-100x1000}            # loadgen processes x sockets per process
CLOSE_WAIT_PCT=${CLOSE_WAIT_PCT:-10}
FIN_WAIT2_PCT=${FIN_WAIT2_PCT:-$CLOSE_WAIT_PCT}
FILES=${FILES:-100}               # regular files held open per loadgen worker
LEAK_RATE=${LEAK_RATE:-10}        # CLOSE_WAIT sockets leaked a second (fixture cw-leak)
LEAK_NOFILE=${LEAK_NOFILE:-4096}  # the leaker's soft fd limit: it caps 16 short of it
CHURN_RATE=${CHURN_RATE:-200}     # forks a second (churn --rate)
INTERVAL=${INTERVAL:-1s}          # the agent's --interval: 500ms, 1s, 2s ...
FD_GROWTH_WINDOW=${FD_GROWTH_WINDOW:-15m} # the agent's --fd-growth-window (its default)
CLOSE_WAIT_AGE=${CLOSE_WAIT_AGE:-60s} # the agent's --close-wait-age (its default)
SAMPLE_EVERY=${SAMPLE_EVERY:-10}  # seconds between samples
TABLE_EVERY=${TABLE_EVERY:-120}   # seconds between rows of the RSS table (a multiple of SAMPLE_EVERY)
CAP_MARGIN=${CAP_MARGIN:-120}     # seconds: the warm-up lasts this long after the leaker capped ...
FILL_MARGIN=${FILL_MARGIN:-60}    # ... and this long after the growth window filled and the first periodic full walk
# seconds: the RSS reference is the peak of the warm-up's last span. RSS swings
# by ~5 MiB with the periodic full walk (every 300 scans at 1 s), so the span
# covers one whole cycle and a minute: a shorter one reads whichever phase the
# warm-up ends in (a 60 s span caught a trough in a 60-minute run).
REFERENCE_SPAN=${REFERENCE_SPAN:-360}
RSS_BOUND_KIB=${RSS_BOUND_KIB:-2048} # RSS may rise this much above the reference after the warm-up ...
RSS_BOUND_PCT=${RSS_BOUND_PCT:-5} # ... or this % of the reference, whichever is larger
SCAN_SLACK_PCT=${SCAN_SLACK_PCT:-5} # scans_total at least (100 - this) % of elapsed / interval
OUT=${OUT:-$ROOT/target/soak/$(date +%Y%m%d-%H%M%S)} # samples.tsv, agent.log, summary.txt
CHECK_ONLY=${CHECK_ONLY:-}        # a samples.tsv to judge again; nothing is run
START_TIMEOUT=${START_TIMEOUT:-60} # seconds, agent until /metrics answers 200
SETUP_TIMEOUT=${SETUP_TIMEOUT:-300} # seconds, loadgen, fixture and churn until ready
BUILD_TIMEOUT=${BUILD_TIMEOUT:-900} # seconds, cargo build
SETTLE_SECONDS=${SETTLE_SECONDS:-20} # at most, for the host to go quiet after the setup

# The agent reads every fd table again every FULL_WALK_EVERY seconds
# (src/collect/cache.rs), its first periodic full walk sets its memory's
# high-water mark: the warm-up holds it.
FULL_WALK_EVERY=300

# seconds DURATION: 90, 90s, 500ms, 5m, 1h → seconds (may be fractional).
seconds() {
    local v=$1
    [[ $v =~ ^([0-9]+(\.[0-9]+)?)(ms|s|m|h)?$ ]] || return 1
    awk -v n="${BASH_REMATCH[1]}" -v u="${BASH_REMATCH[3]}" 'BEGIN {
        m = (u == "ms") ? 0.001 : (u == "m") ? 60 : (u == "h") ? 3600 : 1
        printf "%g", n * m }'
}

# --------------------------------------------------------------- the verdict ----
# judge TSV: the checks of the run recorded in TSV (its "# key=value" header
# says how it was run; the bounds come from the environment). Prints the
# RSS table and one line per check, "ok ..." or "FAIL ..."; returns 1 if any
# failed.
judge() {
    local tsv=$1 meta
    [[ -s $tsv ]] || die "$tsv is missing or empty"
    meta=$(sed -n 's/^# //p' "$tsv" | tr '\n' ' ')
    awk -F'\t' -v meta="$meta" -v cap_margin="$CAP_MARGIN" -v fill_margin="$FILL_MARGIN" \
        -v ref_span="$REFERENCE_SPAN" -v bound_kib="$RSS_BOUND_KIB" -v bound_pct="$RSS_BOUND_PCT" \
        -v slack="$SCAN_SLACK_PCT" -v table_every="$TABLE_EVERY" '
    function fail(msg) { print "FAIL " msg; failed = 1 }
    function ok(msg) { print "ok   " msg }
    function mib(k) { return sprintf("%.1f", k / 1024) }
    BEGIN {
        n = split(meta, kv, " ")
        for (i = 1; i <= n; i++) { split(kv[i], p, "="); M[p[1]] = p[2] }
        for (k in M) if (k ~ /_s$|nofile|rate/ && M[k] !~ /^[0-9.]+$/) { print "FAIL bad header " k "=" M[k]; exit 2 }
    }
    /^#/ { next }
    !header { for (i = 1; i <= NF; i++) col[$i] = i; header = 1; next }
    {
        k = ++rows
        for (c in col) v[k, c] = $col[c]
    }
    END {
        if (rows < 2) { print "FAIL only " rows " samples"; exit 1 }
        interval = M["interval_s"]; window = M["fd_growth_window_s"]; age = M["close_wait_age_s"]
        cap = M["leak_nofile"] - 16
        # Every scan completed; the agent never restarted.
        bad_health = 0; bad_err = 0; stuck = 0; restarted = 0; cap_t = ""; max_scan = 0
        for (k = 1; k <= rows; k++) {
            if (v[k, "healthz"] != 200) { if (!bad_health++) first_health = v[k, "t_s"] " s: " v[k, "healthz"] }
            e = v[k, "errors_sockdiag"] + v[k, "errors_procfs"] + v[k, "errors_host"]
            if (e != 0 || v[k, "errors_sockdiag"] == "nan") { if (!bad_err++) first_err = v[k, "t_s"] " s: " e }
            if (k > 1 && v[k, "scans"] + 0 <= v[k - 1, "scans"] + 0) { if (!stuck++) first_stuck = v[k, "t_s"] " s: " v[k, "scans"] }
            if (v[k, "agent_pid"] != v[1, "agent_pid"] || v[k, "agent_start"] != v[1, "agent_start"]) restarted++
            if (cap_t == "" && v[k, "leaker_fds"] + 0 >= cap) cap_t = v[k, "t_s"]
            if (v[k, "scan_s"] + 0 > max_scan) max_scan = v[k, "scan_s"] + 0
        }
        t_end = v[rows, "t_s"]; scans = v[rows, "scans"]
        if (bad_health) fail("/healthz: " bad_health " of " rows " samples not 200 (first at " first_health ")")
        else ok("/healthz 200 at all " rows " samples")
        if (bad_err) fail("scan errors at " bad_err " samples (first at " first_err ")")
        else ok("no scan error (closewatch_scan_errors_total 0 for every stage at every sample)")
        if (stuck) fail("closewatch_scans_total did not advance between " stuck " pairs of samples (first at " first_stuck ")")
        else ok("closewatch_scans_total advanced between every two samples")
        # Scans start an interval apart (back to back if one outlasts it):
        # 1 + elapsed / interval at most, a few % fewer for wake-up delays.
        expect = t_end / interval + 1
        line = sprintf("%d scans in %.0f s at %gs: %.1f %% of %.0f scheduled (longest scan seen %.0f ms)", scans, t_end, interval, 100 * scans / expect, expect, 1000 * max_scan)
        if (scans > expect + 1 || scans < expect * (1 - slack / 100)) fail(line ", outside " 100 - slack "–100 %")
        else ok(line)
        if (restarted) fail("the agent restarted: pid or start time changed at " restarted " samples")
        else ok("the agent ran throughout (pid " v[1, "agent_pid"] ", start time unchanged)")
        # The leaker capped; the agent sees as stale each of its sockets the
        # kernel has in CLOSE_WAIT (a TSV of before that column: each socket).
        if (cap_t == "") {
            fail("the leaker never reached its cap of " cap " fds (" v[rows, "leaker_fds"] " at the end): DURATION too short for LEAK_NOFILE / LEAK_RATE")
        } else {
            ok("the leaker capped at " cap " fds (" v[rows, "leaker_sockets"] " sockets) at " cap_t " s")
            stale = v[rows, "leaker_stale"]
            held = v[rows, "leaker_sockets"]
            cw = ("leaker_close_wait" in col) ? v[rows, "leaker_close_wait"] : held
            if (t_end < cap_t + age + 2 * M["sample_every_s"]) {
                print "note the run ended less than close_wait_age after the cap: stale not judged (" stale " of " held ")"
            } else if (stale != cw) {
                fail("the agent reports " stale " stale CLOSE_WAIT for the leaker, which holds " held " sockets, " cw " of them CLOSE_WAIT")
            } else ok("the agent reports all " stale " of the leaker'"'"'s CLOSE_WAIT sockets as stale (" held " sockets held)")
        }
        # RSS over time: a row at the first sample and at the last of every
        # TABLE_EVERY seconds, with the range of RSS since the row before.
        print ""
        printf "%8s %8s %13s %9s %5s %8s %7s %7s %8s %8s %10s %6s\n", "minutes", "RSS MiB", "RSS range", "peak MiB", "fds", "CPU s", "scans", "errors", "scan ms", "leak fds", "leak stale", "procs"
        lo = ""; hi = 0
        for (k = 1; k <= rows; k++) {
            t = v[k, "t_s"]; r = v[k, "rss_kib"] + 0
            if (lo == "" || r < lo) lo = r
            if (r > hi) hi = r
            if (k == 1 || k == rows || int((v[k + 1, "t_s"] - 1) / table_every) != int((t - 1) / table_every)) {
                printf "%8.1f %8s %13s %9s %5s %8s %7s %7s %8.1f %8s %10s %6s\n", t / 60, mib(r), mib(lo) "-" mib(hi), mib(v[k, "hwm_kib"]), v[k, "agent_fds"], v[k, "agent_cpu_s"], v[k, "scans"], v[k, "errors_sockdiag"] + v[k, "errors_procfs"] + v[k, "errors_host"], 1000 * v[k, "scan_s"], v[k, "leaker_fds"], v[k, "leaker_stale"], v[k, "host_processes"]
                lo = ""; hi = 0
            }
        }
        print ""
        if (cap_t == "") { fail("RSS not judged: no warm-up end without the leaker'"'"'s cap"); exit 1 }
        # The warm-up ends CAP_MARGIN after the cap (the leaker'"'"'s sockets all
        # stale, its growth over), and FILL_MARGIN after the fd-growth window
        # first filled (one fd sample per process per scan, bounded by it)
        # and after the first periodic full walk (it reads every fd table
        # while the cache still holds the last ones: the high-water mark).
        full_walk = (M["full_walk_every_s"] != "") ? M["full_walk_every_s"] : 300
        w_end = cap_t + cap_margin
        if (window + fill_margin > w_end) w_end = window + fill_margin
        if (full_walk + fill_margin > w_end) w_end = full_walk + fill_margin
        ref = ""; after = 0; max = 0; min = ""; sx = sy = sxx = sxy = 0
        for (k = 1; k <= rows; k++) {
            t = v[k, "t_s"]; r = v[k, "rss_kib"] + 0
            if (t < w_end && t >= w_end - ref_span && (ref == "" || r > ref)) ref = r
            if (t >= w_end) {
                after++; if (r > max) { max = r; t_max = t }
                if (min == "" || r < min) min = r
                if (after == 1) t_first = t
                sx += t; sy += r; sxx += t * t; sxy += t * r
            }
        }
        print "warm-up: until " sprintf("%.1f", w_end / 60) " min, the latest of: leaker capped at " sprintf("%.1f", cap_t / 60) " min + " cap_margin " s; fd-growth window " window " s + " fill_margin " s; first periodic full walk " full_walk " s + " fill_margin " s"
        if (ref == "" || after < 6) {
            fail("RSS not judged: " after " samples after the warm-up (≥ 6 needed) and " (ref == "" ? "none" : "some") " in its last " ref_span " s: DURATION too short")
            exit 1
        }
        bound = bound_kib; if (ref * bound_pct / 100 > bound) bound = ref * bound_pct / 100
        slope = (after > 1 && after * sxx - sx * sx > 0) ? (after * sxy - sx * sy) / (after * sxx - sx * sx) : 0
        line = sprintf("RSS after the warm-up: %s–%s MiB over %.1f min (max %s MiB at %.1f min), reference %s MiB (peak of the warm-up'"'"'s last %d s), bound +%.0f KiB; trend %+.1f KiB/min", mib(min), mib(max), (t_end - t_first) / 60, mib(max), t_max / 60, mib(ref), ref_span, bound, slope * 60)
        if (max > ref + bound) fail(line ": rose " max - ref " KiB")
        else ok(line)
        exit failed
    }' "$tsv"
}

if [[ -n $CHECK_ONLY ]]; then
    judge "$CHECK_ONLY"
    exit
fi

# --------------------------------------------------------------- the run ----
LG_PID=""
FX_PID=""
CHURN_PID=""
AGENT_PID=""

# Run by the EXIT trap (lib.sh's cleanup), before $TMP is removed: stops by
# pid, the agent first (so that it never scans a half-stopped load). The
# fixture and churn reap what they forked; loadgen SIGKILLs its workers.
bench_cleanup() {
    stop_pids closewatch "" "$AGENT_PID"
    stop_pids churn "" "$CHURN_PID"
    stop_pids fixture "" "$FX_PID"
    stop_pids loadgen "" "$LG_PID"
    AGENT_PID="" CHURN_PID="" FX_PID="" LG_PID=""
}
bench_init closewatch-soak
cd "$TMP" # stray output of a tool lands here, and is removed with it
# A command failing under set -e says where, before the EXIT trap cleans up.
trap 'warn "stopped: line $LINENO failed"' ERR
shopt -s nullglob

((EUID == 0)) || die "run it as root: the agent must read every process's fds"
for tool in cargo curl jq awk setpriv timeout getconf find ss; do
    command -v "$tool" >/dev/null || die "$tool is required (apt-get install -y jq curl iproute2)"
done
PROCS=${LOAD%x*}
SOCKETS=${LOAD#*x}
[[ $PROCS =~ ^[1-9][0-9]*$ && $SOCKETS =~ ^[1-9][0-9]*$ ]] || die "LOAD='$LOAD' is not PROCESSESxSOCKETS"
DURATION_S=$(seconds "$DURATION") || die "DURATION='$DURATION': a number with ms, s, m or h"
INTERVAL_S=$(seconds "$INTERVAL") || die "INTERVAL='$INTERVAL': a number with ms, s, m or h"
WINDOW_S=$(seconds "$FD_GROWTH_WINDOW") || die "FD_GROWTH_WINDOW='$FD_GROWTH_WINDOW': a number with ms, s, m or h"
AGE_S=$(seconds "$CLOSE_WAIT_AGE") || die "CLOSE_WAIT_AGE='$CLOSE_WAIT_AGE': a number with ms, s, m or h"
DURATION_S=${DURATION_S%.*}
for v in LEAK_RATE LEAK_NOFILE CHURN_RATE SAMPLE_EVERY TABLE_EVERY CAP_MARGIN FILL_MARGIN \
    REFERENCE_SPAN RSS_BOUND_KIB RSS_BOUND_PCT SCAN_SLACK_PCT DURATION_S; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive whole number"
done
((DURATION_S >= 2 * SAMPLE_EVERY)) || die "DURATION must hold at least two samples"
# The time the leaker needs to cap, roughly: it starts with a few fds.
CAP_AFTER=$(((LEAK_NOFILE - 16) / LEAK_RATE))
WARMUP_S=$(awk -v c="$CAP_AFTER" -v m="$CAP_MARGIN" -v w="$WINDOW_S" -v f="$FULL_WALK_EVERY" -v fm="$FILL_MARGIN" \
    'BEGIN {a = c + m; b = ((w > f) ? w : f) + fm; printf "%d", (a > b) ? a : b}')
((DURATION_S >= WARMUP_S + 6 * SAMPLE_EVERY)) ||
    warn "DURATION ($DURATION_S s) leaves under 6 samples after a warm-up of about $WARMUP_S s \
(leaker cap ~$CAP_AFTER s + $CAP_MARGIN s; fd-growth window $WINDOW_S s or first periodic full walk \
$FULL_WALK_EVERY s, + $FILL_MARGIN s): RSS will not be judged"
MAX_SECONDS=${MAX_SECONDS:-$((DURATION_S + BUILD_TIMEOUT + 3 * SETUP_TIMEOUT + 600))}
CLK_TCK=$(getconf CLK_TCK)
mkdir -p "$OUT"
TSV=$OUT/samples.tsv
LOG=$OUT/agent.log

# ---------------------------------------------------------------- build ----
build_binaries # CW, LOADGEN, REVISION (lib.sh); fixture and churn are examples too
for ex in fixture churn; do
    [[ -x $TARGET_DIR/release/examples/$ex ]] || die "no release build of examples/$ex (cargo build --release --examples)"
    cp "$TARGET_DIR/release/examples/$ex" "$TMP/bin/"
done
FIXTURE=$TMP/bin/fixture
CHURN=$TMP/bin/churn
: >"$TMP/empty.toml" # no /etc/closewatch/closewatch.toml: defaults plus the flags
open_hold

# -------------------------------------------------------------- helpers ----

# first_line FILE PID WHAT: waits, at most SETUP_TIMEOUT s, for the first
# line of FILE (a program's ready line) while PID lives; sets FIRST_LINE.
first_line() {
    local file=$1 pid=$2 what=$3 waited=0
    FIRST_LINE=""
    while ! IFS= read -r FIRST_LINE <"$file" 2>/dev/null || [[ -z $FIRST_LINE ]]; do
        kill -0 "$pid" 2>/dev/null || die "$what exited before it was ready: $(tail -n 3 "$TMP/$what.err")"
        ((waited++ < SETUP_TIMEOUT * 10)) || die "$what not ready after $SETUP_TIMEOUT s"
        sleep 0.1
    done
}

# Field N (1-based, after the comm) of /proc/PID/stat: 12, 13 utime, stime;
# 20 starttime (ticks since boot).
stat_field() {
    local stat
    stat=$(<"/proc/$1/stat") || return 1
    stat=${stat##*) }
    awk -v r="$stat" -v n="$2" 'BEGIN {split(r, f, " "); print f[n]}'
}

# Checks that everything the soak needs is still running; stops it if not.
alive() {
    kill -0 "$LG_PID" 2>/dev/null || die "loadgen died: $(tail -n 3 "$TMP/loadgen.err")"
    kill -0 "$FX_PID" 2>/dev/null || die "the fixture died: $(tail -n 3 "$TMP/fixture.err")"
    kill -0 "$LEAKER" 2>/dev/null || die "the leaker $LEAKER died: $(tail -n 3 "$TMP/fixture.err")"
    kill -0 "$CHURN_PID" 2>/dev/null || die "churn ended early: $(tail -n 3 "$TMP/churn.err")"
    if ! kill -0 "$AGENT_PID" 2>/dev/null || [[ $(stat_field "$AGENT_PID" 20 2>/dev/null) != "$AGENT_START" ]]; then
        tail -n 5 "$LOG" >&2
        die "the closewatch agent $AGENT_PID died (samples so far: $TSV)"
    fi
}

# count ARGS...: how many arguments: a glob's matches (nullglob is on).
count() { echo $#; }

# One sample, a TSV row: see HEADER.
HEADER=(t_s rss_kib hwm_kib agent_fds agent_threads agent_cpu_s healthz scans
    errors_sockdiag errors_procfs errors_host scan_s leaker_fds leaker_sockets
    leaker_stale host_processes agent_pid agent_start leaker_close_wait)
take_sample() {
    local t code status rss hwm fds threads cpu ut st lfds lsocks lcw procs scans es ep eh dur stale
    t=$(awk -v n="$(now)" -v s="$AGENT_STARTED" 'BEGIN {printf "%.1f", n - s}')
    code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$BASE/healthz" || true)
    : >"$TMP/metrics"
    curl -s --max-time 10 -o "$TMP/metrics" "$BASE/metrics" || true
    status=$(awk '$1 == "VmRSS:" {r = $2} $1 == "VmHWM:" {h = $2} $1 == "Threads:" {t = $2} END {print r, h, t}' \
        "/proc/$AGENT_PID/status")
    read -r rss hwm threads <<<"$status"
    # Globs (readdir only) and find without stopping at an entry that went
    # away between the listing and the readlink (processes and fds come and
    # go all the time here).
    fds=$(count "/proc/$AGENT_PID/fd"/*)
    ut=$(stat_field "$AGENT_PID" 12) st=$(stat_field "$AGENT_PID" 13)
    cpu=$(awk -v u="$ut" -v s="$st" -v hz="$CLK_TCK" 'BEGIN {printf "%.2f", (u + s) / hz}')
    lfds=$(count "/proc/$LEAKER/fd"/*)
    { find "/proc/$LEAKER/fd" -mindepth 1 -maxdepth 1 -lname 'socket:*' -printf '%l\n' 2>/dev/null || true; } |
        sed -n 's/^socket:\[\([0-9]*\)\]$/\1/p' >"$TMP/leaker_inodes"
    lsocks=$(wc -l <"$TMP/leaker_inodes")
    # Of those, the ones the kernel has in CLOSE_WAIT (by inode).
    lcw=$({ ss -tanHe state close-wait 2>/dev/null || true; } |
        awk 'NR == FNR {want[$1] = 1; next}
            {for (i = 1; i <= NF; i++) if ($i ~ /^ino:/ && (substr($i, 5) in want)) n++}
            END {print n + 0}' "$TMP/leaker_inodes" -)
    procs=$(count /proc/[0-9]*)
    # Label values may hold spaces (comm): match on the line, value last.
    awk -v lp="pid=\"$LEAKER\"" '
        $1 == "closewatch_scans_total" {scans = $NF}
        $1 == "closewatch_scan_duration_seconds" {dur = $NF}
        /^closewatch_scan_errors_total\{/ {
            if (index($0, "stage=\"sockdiag\"")) es = $NF
            else if (index($0, "stage=\"procfs\"")) ep = $NF
            else eh += $NF   # host, and any stage added later
        }
        /^closewatch_process_stale_tcp_sockets\{/ && index($0, lp) && index($0, "state=\"close_wait\"") {stale = $NF}
        END {
            print (scans == "" ? "nan" : scans), (es == "" ? "nan" : es), (ep == "" ? "nan" : ep), eh + 0,
                (dur == "" ? "nan" : dur), (stale == "" ? "nan" : stale)
        }' "$TMP/metrics" >"$TMP/parsed"
    read -r scans es ep eh dur stale <"$TMP/parsed"
    printf '%s\t' "$t" "$rss" "$hwm" "$fds" "$threads" "$cpu" "$code" "$scans" "$es" "$ep" "$eh" \
        "$dur" "$lfds" "$lsocks" "$stale" "$procs" "$AGENT_PID" "$AGENT_START"
    printf '%s\n' "$lcw"
}

# ---------------------------------------------------------- the load ----
start_loadgen_and_wait "$PROCS" "$SOCKETS" # LG_PID (lib.sh)
note "loadgen ready: $(jq -c '{sockets, fds, close_wait, setup_seconds}' <<<"$LG_READY")"
busy=$(settle_host)

note "starting fixture cw-leak $LEAK_RATE (FIXTURE_NOFILE=$LEAK_NOFILE)"
: >"$TMP/fixture.json"
FIXTURE_NOFILE=$LEAK_NOFILE "$FIXTURE" cw-leak "$LEAK_RATE" \
    <"$TMP/hold" >"$TMP/fixture.json" 2>"$TMP/fixture.err" {HOLD_FD}>&- &
FX_PID=$!
first_line "$TMP/fixture.json" "$FX_PID" fixture
LEAKER=$(jq -r '.roles[] | select(.role == "leaker") | .pids[0]' <<<"$FIRST_LINE")
[[ $LEAKER =~ ^[0-9]+$ ]] || die "no leaker in the fixture's line: $(cat "$TMP/fixture.json")"

# Longer than the sampling: it must churn until the last sample (and it
# stops by itself if this script is SIGKILLed: its stdin is the FIFO).
note "starting churn --rate $CHURN_RATE"
: >"$TMP/churn.out"
"$CHURN" --rate "$CHURN_RATE" --duration "$((DURATION_S + 300))" \
    <"$TMP/hold" >"$TMP/churn.out" 2>"$TMP/churn.err" {HOLD_FD}>&- &
CHURN_PID=$!
first_line "$TMP/churn.out" "$CHURN_PID" churn

# ---------------------------------------------------------- the agent ----
# setpriv --pdeathsig: the agent gets SIGTERM if this script dies without
# running its trap (SIGKILL). The debug log has one line per scan.
note "starting the agent: --interval $INTERVAL --fd-growth-window $FD_GROWTH_WINDOW --close-wait-age $CLOSE_WAIT_AGE"
: >"$LOG"
AGENT_STARTED=$(now)
RUST_LOG=info,closewatch::agent=debug \
    setpriv --pdeathsig TERM "$CW" -c "$TMP/empty.toml" --listen 127.0.0.1:0 --interval "$INTERVAL" \
    --fd-growth-window "$FD_GROWTH_WINDOW" --close-wait-age "$CLOSE_WAIT_AGE" \
    </dev/null >/dev/null 2>"$LOG" {HOLD_FD}>&- &
AGENT_PID=$!
BASE=""
code=000
for ((i = 0; i < START_TIMEOUT * 10; i++)); do
    kill -0 "$AGENT_PID" 2>/dev/null || {
        cat "$LOG" >&2
        die "closewatch exited at start"
    }
    [[ -n $BASE ]] || BASE=$(sed -n 's|.*listening on \(http://[^ /]*\)/metrics.*|\1|p' "$LOG" | head -n 1)
    if [[ -n $BASE ]]; then
        code=$(curl -s --max-time 10 -o /dev/null -w '%{http_code}' "$BASE/metrics" || true)
        [[ $code == 200 ]] && break
    fi
    sleep 0.1
done
[[ -n $BASE && $code == 200 ]] || die "the agent did not serve /metrics within $START_TIMEOUT s"
AGENT_START=$(stat_field "$AGENT_PID" 20)

{
    # How the run was made, for judge (and CHECK_ONLY): one "# key=value" a line.
    printf '# %s\n' "revision=$REVISION" "kernel=$(uname -r)" "cpus=$(nproc)" "load=$LOAD" \
        "leak_rate=$LEAK_RATE" "leak_nofile=$LEAK_NOFILE" "churn_rate=$CHURN_RATE" \
        "interval_s=$INTERVAL_S" "fd_growth_window_s=$WINDOW_S" "close_wait_age_s=$AGE_S" "full_walk_every_s=$FULL_WALK_EVERY" \
        "sample_every_s=$SAMPLE_EVERY" "duration_s=$DURATION_S" "host_busy_pct=$busy"
    (
        IFS=$'\t'
        echo "${HEADER[*]}"
    )
} >"$TSV"
note "agent $AGENT_PID on $BASE; sampling every $SAMPLE_EVERY s for $DURATION_S s into $TSV"

# ---------------------------------------------------------- sampling ----
SAMPLES=$((DURATION_S / SAMPLE_EVERY))
for ((k = 1; k <= SAMPLES; k++)); do
    sleep_until "$(awk -v s="$AGENT_STARTED" -v k="$k" -v e="$SAMPLE_EVERY" 'BEGIN {printf "%.3f", s + k * e}')"
    check_budget
    alive
    take_sample >>"$TSV"
    if ((k * SAMPLE_EVERY % TABLE_EVERY == 0)); then
        tail -n 1 "$TSV" | awk -F'\t' '{printf "soak.sh: %.1f min: RSS %.1f MiB (peak %.1f), %s fds, %s scans, /healthz %s, leaker %s fds, %s stale\n",
            $1 / 60, $2 / 1024, $3 / 1024, $4, $8, $7, $13, $15}' >&2
    fi
done
alive

# What churn did: SIGTERM, then its summary line (the second on its stdout).
stop_pids churn "" "$CHURN_PID"
CHURN_PID=""
CHURN_SUMMARY=$(sed -n 2p "$TMP/churn.out")
if [[ -n $CHURN_SUMMARY ]]; then
    CHURNED=$(jq -r '"\(.forks) forks, \(.forks_per_s)/s, \(.failures) failures"' <<<"$CHURN_SUMMARY" 2>/dev/null || echo "$CHURN_SUMMARY")
else
    CHURNED="no summary from churn"
fi
SCAN_LINES=$(grep -c '] scan [0-9]* took ' "$LOG" || true)
# The full /proc walks (every 300 s, and when the cache cannot place a
# socket), by scan number: RSS can step at one.
FULL_WALKS=$(sed -n 's/.*] scan \([0-9]*\) took .*(full walk)$/\1/p' "$LOG" | paste -sd, - | sed 's/,/, /g')

{
    echo "closewatch $REVISION on $(uname -r), $(nproc) CPUs; $DURATION_S s at loadgen $PROCS × $SOCKETS, \
cw-leak $LEAK_RATE/s under $LEAK_NOFILE fds, churn $CHURN_RATE/s ($CHURNED); --interval $INTERVAL, \
--fd-growth-window $FD_GROWTH_WINDOW; host ${busy}% busy before"
    echo "agent log: $SCAN_LINES scans logged; full walks at scans ${FULL_WALKS:-none}; samples: $TSV"
    echo
    judge "$TSV" || true # its FAIL lines decide, below
} | tee "$OUT/summary.txt"
if grep -q '^FAIL' "$OUT/summary.txt"; then
    die "the soak failed (see above; samples in $TSV, agent log in $LOG)"
fi
note "the soak passed"
