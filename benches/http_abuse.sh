#!/usr/bin/env bash
# The issue's "< 100 ms under abuse" goal, measured: runs the attack of
# tests/http_abuse.rs (500 slowloris clients and a stream of garbage requests
# while a well-behaved client scrapes /metrics every 200 ms for 15 s) from a
# release build, RUNS times, and judges each run's scrape latency. The test
# itself asserts only that every scrape is answered; speed is judged here.
# See benches/README.md.
#
# The test stops its agent and clients by pid itself; each run is bounded by
# RUN_TIMEOUT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/benches/lib.sh"

RUNS=${RUNS:-3}
GOAL_MS=100 # the issue's goal (the test counts the scrapes under 100 ms)
RUN_TIMEOUT=${RUN_TIMEOUT:-600} # seconds, one run (the first one builds)

bench_cleanup() { :; }
bench_init http_abuse
cd "$ROOT"

note "host: $(uname -r), $(nproc) CPUs; goal: every scrape under ${GOAL_MS} ms"
printf '| run | scrapes | failed | p50 ms | p90 ms | p99 ms | max ms | under %s ms |\n' "$GOAL_MS"
printf '|---|--:|--:|--:|--:|--:|--:|--:|\n'
met=1
for ((run = 1; run <= RUNS; run++)); do
    log="$TMP/run$run.log"
    if ! timeout "$RUN_TIMEOUT" cargo test --release --locked --test http_abuse \
        slowloris_and_garbage_do_not_starve_a_scraper -- --nocapture >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "run $run: the test failed (above)"
    fi
    line=$(grep -m1 '^latency-ms:' "$log") || die "run $run: no latency-ms line in the test's output"
    field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
    scrapes=$(field scrapes) failed=$(field failed) max=$(field max)
    under=$(sed -n "s/.* under_100ms=\([0-9]*\).*/\1/p" <<<"$line")
    printf '| %d | %s | %s | %s | %s | %s | %s | %s |\n' "$run" "$scrapes" "$failed" \
        "$(field p50)" "$(field p90)" "$(field p99)" "$max" "$under"
    if ((failed > 0)) || awk -v m="$max" -v g="$GOAL_MS" 'BEGIN {exit !(m >= g)}'; then
        met=0
    fi
done
if ((met)); then
    note "goal met: every scrape of every run answered in under ${GOAL_MS} ms"
else
    note "goal missed: a scrape failed or took ${GOAL_MS} ms or more (table above)"
    exit 1
fi
