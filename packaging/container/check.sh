#!/usr/bin/env bash
# Proves that the image's binary needs nothing but what the image holds: the
# static binary and its config run in an otherwise empty root, with the host's
# /proc at /host/proc as the DaemonSet mounts it, and find a CLOSE_WAIT socket
# leaked by a process outside that root, by its host pid:
#   - `closewatch --report --format json`: the leaker is named, exit 0-2;
#   - the agent: /healthz answers 200, /metrics has the leaker's stale
#     CLOSE_WAIT series, SIGTERM ends it with status 0.
#
#   packaging/container/check.sh           # in a chroot (CI runs this)
#   packaging/container/check.sh --image   # the same checks, in the image (podman)
#
# The chroot holds /usr/bin/closewatch, /etc/closewatch/closewatch.toml and
# mount points: /proc (a container has its own), /host/proc (the host's,
# read-only) and /sys (read-only, for the kernel's BTF: the BPF iterators).
# The mounts are made in a mount namespace of their own (unshare), so nothing
# outlives the script even if it is killed; they are also unmounted, the
# directory removed and every process it started stopped by pid on exit.
# Runs as root. Builds the static binary first (build.sh --binary-only; cheap
# when it is up to date). With --image, packaging/container/build.sh must
# have built the image, and podman must be able to run containers here (see
# README.md, "Container image", for what this machine needed).
set -euo pipefail
cd "$(dirname "$0")/../.."

say() { echo "container/check.sh: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

mode=chroot
case "${1:-}" in
"") ;;
--image) mode=image ;;
--inner) mode=inner ;;
*) fail "usage: $0 [--image]" ;;
esac
[ "$(id -u)" = 0 ] || fail "run as root (it mounts /proc into a chroot)"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
image=${IMAGE:-ghcr.io/closewatch/closewatch}:$version
context=target/container/context

if [ "$mode" = chroot ]; then
    packaging/container/build.sh --binary-only
    # Everything below runs again inside a private mount namespace.
    exec unshare --mount --propagation private -- "$0" --inner
fi

# --- helpers shared by both modes
pids=()
root=""
cid=""
cleanup() {
    local pid
    for pid in "${pids[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$cid" ]; then
        podman rm -f "$cid" >/dev/null 2>&1 || true
    fi
    if [ -n "$root" ]; then
        for m in "$root/sys" "$root/host/proc" "$root/proc"; do
            mountpoint -q "$m" && umount "$m"
        done
        rm -rf "$root"
    fi
}
trap cleanup EXIT

# A process outside the root that leaks one CLOSE_WAIT socket: the peer
# closes, the socket is never closed.
python3 -c '
import socket, time
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen()
c = socket.create_connection(l.getsockname()); s, _ = l.accept()
c.close()
print("ready", flush=True)
time.sleep(300)
' >"${TMPDIR:-/tmp}/closewatch-check-leaker.$$" &
leaker=$!
pids+=("$leaker")
for _ in $(seq 50); do
    grep -q ready "${TMPDIR:-/tmp}/closewatch-check-leaker.$$" 2>/dev/null && break
    sleep 0.1
done
rm -f "${TMPDIR:-/tmp}/closewatch-check-leaker.$$"
say "leaker: pid $leaker"

args=(--config /etc/closewatch/closewatch.toml --proc-root /host/proc --close-wait-age 0s)
if [ "$mode" = inner ]; then
    root=$(mktemp -d "${TMPDIR:-/tmp}/closewatch-root.XXXXXX")
    install -D -m 755 "$context/closewatch" "$root/usr/bin/closewatch"
    install -D -m 644 "$context/closewatch.toml" "$root/etc/closewatch/closewatch.toml"
    mkdir -p "$root/proc" "$root/host/proc" "$root/sys"
    mount -t proc -o ro,nosuid,nodev,noexec proc "$root/proc"
    mount --bind /proc "$root/host/proc"
    mount -o remount,bind,ro "$root/host/proc"
    mount --bind /sys "$root/sys"
    mount -o remount,bind,ro "$root/sys"
    files=$(cd "$root" && find . \( -path ./proc -o -path ./host/proc -o -path ./sys \) -prune -o \
        -type f -print | sort | tr '\n' ' ')
    say "root: files $files+ mounts /proc, /host/proc (ro), /sys (ro)"
    run() { chroot "$root" /usr/bin/closewatch "$@"; }
else
    command -v podman >/dev/null || fail "podman is not installed"
    podman image exists "$image" || fail "no image $image: run packaging/container/build.sh"
    # The DaemonSet's grant. PODMAN_RUN_OPTS: what this host's podman needs
    # besides (e.g. --runtime runc, --ulimit ...).
    # shellcheck disable=SC2206
    podman_run=(podman run --pid=host -v /proc:/host/proc:ro --read-only
        --cap-drop=ALL --cap-add=SYS_PTRACE,DAC_READ_SEARCH,SYS_ADMIN
        --security-opt no-new-privileges --security-opt apparmor=unconfined
        ${PODMAN_RUN_OPTS:-})
    run() { "${podman_run[@]}" --rm "$image" "$@"; }
fi

# --- one report
set +e
report=$(run "${args[@]}" --report --format json)
code=$?
set -e
[ "$code" -le 2 ] || fail "--report exited $code"
python3 -c '
import json, sys
r = json.loads(sys.argv[1]); leaker = int(sys.argv[2])
assert not r["errors"], r["errors"]
p = [p for p in r["processes"] if p["pid"] == leaker]
assert p, f"the report does not name the leaker (pid {leaker})"
cw = p[0]["sockets"]["close_wait"]
assert cw >= 1, f"the leaker has {cw} CLOSE_WAIT sockets in the report"
print("report: status %s, attribution %s, %d namespaces, leaker pid %d with %d CLOSE_WAIT"
      % (r["status"], r["attribution"], len(r["namespaces"]), leaker, cw))
' "$report" "$leaker" || fail "the report is not what it should be"

# --- the agent
log=$(mktemp "${TMPDIR:-/tmp}/closewatch-agent.XXXXXX")
if [ "$mode" = inner ]; then
    # The chroot shares this host's network: a free loopback port.
    # Not through run(): $! must be the agent itself (chroot execs it).
    chroot "$root" /usr/bin/closewatch "${args[@]}" --listen 127.0.0.1:0 --interval 1s 2>"$log" &
    agent=$!
    pids+=("$agent")
    for _ in $(seq 100); do
        addr=$(sed -n 's|.*listening on http://\([^/]*\)/metrics.*|\1|p' "$log")
        [ -n "$addr" ] && break
        sleep 0.1
    done
else
    cid=$("${podman_run[@]}" -d "$image" "${args[@]}" --interval 1s)
    addr=$(podman inspect -f '{{.NetworkSettings.IPAddress}}' "$cid"):9958
fi
[ -n "$addr" ] || fail "the agent did not say where it listens: $(cat "$log")"
for _ in $(seq 100); do
    curl -fs "http://$addr/healthz" >/dev/null && break
    sleep 0.1
done
curl -fs "http://$addr/healthz" >/dev/null || fail "/healthz at $addr does not answer 200"
metrics=$(curl -fs "http://$addr/metrics")
series=$(grep "^closewatch_process_stale_tcp_sockets{.*pid=\"$leaker\".*state=\"close_wait\"" <<<"$metrics") ||
    fail "/metrics has no stale CLOSE_WAIT series for the leaker (pid $leaker)"
say "agent at $addr: $series"
if [ "$mode" = inner ]; then
    kill -TERM "$agent"
    set +e
    wait "$agent"
    code=$?
    set -e
    pids=("$leaker")
else
    podman stop -t 10 "$cid" >/dev/null
    code=$(podman inspect -f '{{.State.ExitCode}}' "$cid")
    podman logs "$cid" >"$log" 2>&1
fi
[ "$code" = 0 ] || fail "the agent exited $code on SIGTERM: $(cat "$log")"
rm -f "$log"
say "ok ($mode): report and agent from $([ "$mode" = inner ] && echo "an empty root" || echo "$image")"
