#!/usr/bin/env bash
# The agent's endpoint with a web config, from a release build: scrape
# latency at CLIENTS concurrent scrapers over TLS + basic auth next to plain
# HTTP (keep-alive connections, as Prometheus scrapes, and a fresh
# connection per scrape), and the agent's CPU for a storm of STORM requests
# with distinct wrong passwords, next to what bcrypt alone would cost them
# without the credential cache and its limit. Hashes are bcrypt cost 10,
# htpasswd's and the toolkit docs' usual cost. See benches/README.md.
#
# Everything started here is stopped by pid from the EXIT trap.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$ROOT/benches/lib.sh"

CLIENTS=${CLIENTS:-50}
REQUESTS=${REQUESTS:-5000}
STORM=${STORM:-1000}
COST=${COST:-10}
PASSWORD=bench-password
PIDS=()

bench_cleanup() { stop_pids agent "" "${PIDS[@]}"; }
bench_init tls
cd "$ROOT"

note "building (release)"
cargo build --release --locked --bin closewatch --example scrapers >/dev/null 2>&1 ||
    die "cargo build --release failed"
BIN=$ROOT/target/release/closewatch
SCRAPERS=$ROOT/target/release/examples/scrapers

# A CA and a server certificate for 127.0.0.1 (P-256).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
    -keyout "$TMP/ca.key" -out "$TMP/ca.pem" -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$TMP/server.key" -out "$TMP/server.csr" -subj /CN=localhost 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$TMP/ext"
openssl x509 -req -in "$TMP/server.csr" -CA "$TMP/ca.pem" -CAkey "$TMP/ca.key" \
    -CAcreateserial -days 1 -extfile "$TMP/ext" -out "$TMP/server.pem" 2>/dev/null
HASH=$("$SCRAPERS" --hash "$PASSWORD" "$COST")
cat >"$TMP/web.yml" <<YAML
tls_server_config:
  cert_file: server.pem
  key_file: server.key
basic_auth_users:
  prometheus: $HASH
YAML
: >"$TMP/closewatch.toml"

# start_agent NAME ARGS...: starts the agent, sets ADDR and AGENT_PID.
start_agent() {
    local name=$1 i
    shift
    "$BIN" -c "$TMP/closewatch.toml" --listen 127.0.0.1:0 --attribution procfs "$@" \
        </dev/null 2>"$TMP/$name.log" &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
    for ((i = 0; i < 300; i++)); do
        ADDR=$(sed -n 's|.*listening on https\?://\([^/]*\)/metrics.*|\1|p' "$TMP/$name.log" | head -n1)
        [[ -n $ADDR ]] && break
        sleep 0.1
    done
    [[ -n $ADDR ]] || die "$name: the agent never logged its address: $(tail -n 3 "$TMP/$name.log")"
    sleep 2 # the first scan
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_ms() { awk -v t="$1" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.0f", t * 1000 / hz}'; }

# run LABEL ARGS...: one load against ADDR; prints a table row with the
# agent's CPU for it.
run() {
    local label=$1 before after line
    shift
    before=$(cpu_ticks "$AGENT_PID")
    line=$("$SCRAPERS" "$ADDR" "$@")
    after=$(cpu_ticks "$AGENT_PID")
    field() { sed -n "s/.*$1=\([^ ]*\).*/\1/p" <<<"$line"; }
    printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "$(field requests)" \
        "$(field status)" "$(field failed)" "$(field p50_ms)" "$(field p99_ms)" \
        "$(field max_ms)" "$(cpu_ms $((after - before)))"
}

note "host: $(uname -r), $(nproc) CPUs; $CLIENTS clients, $REQUESTS requests a row"
printf '| load | requests | status | failed | p50 ms | p99 ms | max ms | agent CPU ms |\n'
printf '|---|--:|---|--:|--:|--:|--:|--:|\n'
start_agent plain
run "plain HTTP, keep-alive" "$CLIENTS" "$REQUESTS"
run "plain HTTP, a connection each" "$CLIENTS" "$REQUESTS" --fresh
stop_pids agent "" "$AGENT_PID"
start_agent tls --web-config "$TMP/web.yml"
run "TLS + basic auth, keep-alive" "$CLIENTS" "$REQUESTS" --ca "$TMP/ca.pem" --user "prometheus:$PASSWORD"
run "TLS + basic auth, a connection each" "$CLIENTS" "$REQUESTS" --ca "$TMP/ca.pem" --user "prometheus:$PASSWORD" --fresh
run "storm: $STORM wrong passwords" "$CLIENTS" "$STORM" --ca "$TMP/ca.pem" --user "prometheus:x" --fresh --wrong
run "TLS handshakes only (no auth header)" "$CLIENTS" "$STORM" --ca "$TMP/ca.pem" --fresh
bcrypt=$("$SCRAPERS" --bcrypt "$PASSWORD" "$HASH" 20)
each=$(sed -n 's/bcrypt_each_ms=\([0-9.]*\).*/\1/p' <<<"$bcrypt")
note "bcrypt cost $COST: $each ms a check (20 checks, one thread); without the cache and limit,"
note "  $REQUESTS good scrapes would cost $(awk -v e="$each" -v n="$REQUESTS" 'BEGIN {printf "%.0f", e * n}') ms of bcrypt and the storm $(awk -v e="$each" -v n="$STORM" 'BEGIN {printf "%.0f", e * n}') ms"
