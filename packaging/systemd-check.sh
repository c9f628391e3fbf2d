#!/usr/bin/env bash
# The packaged service under a real systemd: boots a Debian root with
# `systemd-nspawn -b`, installs the .deb in it and checks, in the container,
# what only a running systemd can show:
#   1. Type=notify: `systemctl start` returns once the first scan is served
#      (READY=1 follows it), not when the process is spawned;
#   2. `systemctl reload` (SIGHUP) re-reads /etc/closewatch/closewatch.toml,
#      and a broken file keeps the running config;
#   3. under the unit's sandbox the agent attributes root's CLOSE_WAIT sockets,
#      in the container's namespace and in an `ip netns` of its own, and says
#      which attribution backend ran;
#   4. the watchdog: an agent stopped with SIGSTOP is killed after WatchdogSec
#      and restarted (NRestarts, a new MainPID, "Watchdog timeout");
#   5. `systemd-analyze security closewatch.service`, printed.
# Usage: packaging/systemd-check.sh [DEB]   (default: target/debian/closewatch_<version>-*.deb,
# as packaging/build-packages.sh leaves it). Run as root; needs debootstrap,
# systemd-container (systemd-nspawn), util-linux (unshare, nsenter).
#
# The Debian root is made once by debootstrap and kept under
# $CLOSEWATCH_NSPAWN_CACHE (default /var/cache/closewatch-nspawn); each run
# boots an overlay of it, so the cache stays clean. The overlay, the nspawn
# lock directory and the container live in a private mount namespace: when
# the container stops, nothing stays mounted on the host. The container has
# a private network (only lo), so its :9958 is not the host's.
#
# Environment: CLOSEWATCH_NSPAWN_MIRROR (Debian mirror for debootstrap),
# CLOSEWATCH_NSPAWN_WATCHDOG (e.g. 10s: a drop-in shortens WatchdogSec for a
# quick run; by default the unit's own value is waited out),
# CLOSEWATCH_NSPAWN_DROPIN ([Service] lines added by a drop-in: to see a
# check fail, e.g. "RestrictNamespaces=yes" leaves the ip netns unscanned).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "systemd-check.sh: $*" >&2; }
failed=""
fail() {
    say "FAILED: $*"
    failed=yes
    exit 1
}
started=$SECONDS
elapsed() { echo "$((SECONDS - started))s"; }

[ "$(id -u)" = 0 ] || fail "run as root (debootstrap, systemd-nspawn)"
for tool in debootstrap systemd-nspawn unshare nsenter flock; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install debootstrap systemd-container util-linux)"
done

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb=${1:-$(ls target/debian/closewatch_"${version}"-*.deb 2>/dev/null | head -1)}
[ -n "$deb" ] && [ -f "$deb" ] || fail "no .deb: run packaging/build-packages.sh first, or pass its path"

# --- the Debian root, made once. The key changes with what goes in, so a
# changed list makes a new root instead of reusing a stale one.
suite=bookworm
mirror=${CLOSEWATCH_NSPAWN_MIRROR:-http://deb.debian.org/debian}
# systemd + dbus: the init under test; procps: /bin/kill of ExecReload=;
# adduser: the postinst; python3: a process holding CLOSE_WAIT sockets;
# iproute2: ip netns; curl: scrapes /metrics from inside.
include=systemd,systemd-sysv,dbus,procps,adduser,python3,iproute2,curl
cache=${CLOSEWATCH_NSPAWN_CACHE:-/var/cache/closewatch-nspawn}
key=$(echo "$suite $include" | sha256sum | cut -c1-12)
rootfs=$cache/$suite-$key
mkdir -p "$cache"
exec 9>"$cache/lock"
flock 9
if [ ! -x "$rootfs/lib/systemd/systemd" ]; then
    say "debootstrap $suite into $rootfs (once; later runs reuse it)"
    t0=$SECONDS
    # Twice: a mirror's hiccup is not the service's failure.
    for attempt in 1 2; do
        rm -rf "$rootfs.new"
        if timeout 15m debootstrap --variant=minbase --include="$include" "$suite" "$rootfs.new" "$mirror" \
            >"$cache/debootstrap.log" 2>&1; then
            break
        fi
        tail -20 "$cache/debootstrap.log" >&2
        rm -rf "$rootfs.new"
        [ "$attempt" = 2 ] && fail "debootstrap failed twice (log: $cache/debootstrap.log)"
        say "debootstrap failed; once more in 10s"
        sleep 10
    done
    mv "$rootfs.new" "$rootfs"
    say "debootstrap took $((SECONDS - t0))s"
fi
flock -u 9

# --- boot
work=$(mktemp -d /var/tmp/closewatch-nspawn.XXXXXX)
machine=closewatch-check-$$
nspawn_pid=""
leader=""
made_lockdir=""

# Runs a command in the container (all its namespaces, its root), with a
# time limit, a clean environment and the container's PATH.
in_ct() {
    timeout 120 nsenter --target "$leader" --all -- \
        env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"
}
unit_prop() { in_ct systemctl show --property="$1" --value closewatch; }
metrics() { in_ct curl -sf --max-time 10 http://127.0.0.1:9958/metrics; }
# `sample TEXT NAME [LABEL=VALUE ...]`: the value of the first sample of
# metric NAME carrying those labels (literal matches, no regex).
sample() {
    local text=$1 name=$2
    shift 2
    awk -v name="$name" -v want="$*" '
        {
            series = $0
            sub(/ [^ ]*$/, "", series)
            if (series != name && index(series, name "{") != 1) next
            n = split(want, w, " ")
            for (i = 1; i <= n; i++) {
                eq = index(w[i], "=")
                label = substr(w[i], 1, eq - 1) "=\"" substr(w[i], eq + 1) "\""
                if (index(series, "{" label) == 0 && index(series, "," label) == 0) next
            }
            print $NF
            exit
        }' <<<"$text"
}
# Polls a command until it succeeds or `seconds` pass.
wait_for() {
    local seconds=$1
    shift
    local deadline=$((SECONDS + seconds))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

cleanup() {
    local code=$?
    if [ -n "$leader" ] && [ -d "/proc/$leader" ]; then
        if [ -n "$failed" ] || [ "$code" != 0 ]; then
            say "the unit's journal in the container:"
            in_ct journalctl -u closewatch --no-pager -o short-monotonic 2>&1 | tail -40 >&2 || true
        fi
        # SIGRTMIN+4 asks the container's systemd to power off.
        kill -RTMIN+4 "$leader" 2>/dev/null || true
    fi
    if [ -n "$nspawn_pid" ]; then
        local deadline=$((SECONDS + 30))
        while kill -0 "$nspawn_pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
            sleep 0.2
        done
        if kill -0 "$nspawn_pid" 2>/dev/null; then
            say "the container did not power off in 30s: SIGKILL to its leader $leader"
            [ -n "$leader" ] && kill -KILL "$leader" 2>/dev/null || true
            sleep 2
            kill -KILL "$nspawn_pid" 2>/dev/null || true
        fi
        wait "$nspawn_pid" 2>/dev/null || true
    fi
    # The mounts were in the container's private mount namespace; check.
    if grep -q " $work/" /proc/self/mountinfo; then
        say "left mounted under $work: unmounting"
        umount -R -l "$work/root" 2>/dev/null || true
    fi
    rm -rf "$work"
    [ -n "$made_lockdir" ] && rmdir /run/systemd/nspawn 2>/dev/null || true
    if [ "$code" = 0 ]; then
        say "ok after $(elapsed)"
    else
        say "failed after $(elapsed); the console log is gone with $work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$work/upper" "$work/work" "$work/root"
# nspawn keeps lock and propagation directories under /run/systemd/nspawn
# and removes them only from a tmpfs: there is none at /run on this host,
# so the private mount namespace gets one.
[ -d /run/systemd/nspawn ] || made_lockdir=yes
mkdir -p /run/systemd/nspawn
# --register=no --keep-unit: the host has no systemd (machined, a scope) to
# register with. --private-network: its own lo, its own :9958.
# --system-call-filter=bpf: nspawn's own seccomp filter denies bpf() to the
# whole container (EPERM); let it through so that the unit's filter is what
# decides (see the attribution check).
unshare --mount --propagation private -- bash -c '
    set -e
    mount -t tmpfs -o mode=0755 tmpfs /run/systemd/nspawn
    mount -t overlay overlay -o "lowerdir=$1,upperdir=$2/upper,workdir=$2/work" "$2/root"
    exec systemd-nspawn --quiet --directory="$2/root" --machine="$3" \
        --register=no --keep-unit --private-network --system-call-filter=bpf \
        --console=read-only --boot
' boot "$rootfs" "$work" "$machine" </dev/null >"$work/console.log" 2>&1 &
nspawn_pid=$!
boot_ms=$(date +%s%3N)
find_leader() {
    kill -0 "$nspawn_pid" 2>/dev/null || {
        cat "$work/console.log" >&2
        fail "systemd-nspawn exited"
    }
    leader=$(cat /proc/"$nspawn_pid"/task/*/children 2>/dev/null | awk '{print $1; exit}')
    [ -n "$leader" ] && [ "$(cat /proc/"$leader"/comm 2>/dev/null)" = systemd ] && return 0
    leader=""
    return 1
}
wait_for 60 find_leader || fail "no systemd in the container after 60s"
state=$(in_ct systemctl is-system-running --wait || true)
case "$state" in
running) ;;
*)
    in_ct systemctl --failed --no-pager >&2 || true
    fail "the container's systemd is $state, not running"
    ;;
esac
say "booted $machine (leader pid $leader) in $(($(date +%s%3N) - boot_ms)) ms: $state; $(in_ct systemctl --version | head -1)"

# --- install: the postinst creates the user, enables and starts the unit
cp "$deb" "/proc/$leader/root/root/closewatch.deb"
in_ct dpkg -i /root/closewatch.deb >"$work/dpkg.log" 2>&1 || {
    cat "$work/dpkg.log" >&2
    fail "dpkg -i $(basename "$deb") failed in the container"
}
[ "$(in_ct systemctl is-enabled closewatch)" = enabled ] || fail "the .deb did not enable closewatch"
wait_for 60 test "$(unit_prop ActiveState)" = active ||
    fail "closewatch is $(unit_prop ActiveState) after dpkg -i"
dropin=""
[ -n "${CLOSEWATCH_NSPAWN_WATCHDOG:-}" ] && dropin="WatchdogSec=$CLOSEWATCH_NSPAWN_WATCHDOG"$'\n'
dropin+=${CLOSEWATCH_NSPAWN_DROPIN:-}
if [ -n "$dropin" ]; then
    mkdir -p "/proc/$leader/root/etc/systemd/system/closewatch.service.d"
    printf '[Service]\n%s\n' "$dropin" >"/proc/$leader/root/etc/systemd/system/closewatch.service.d/check.conf"
    in_ct systemctl daemon-reload
    say "a drop-in changes the unit under test: $(tr '\n' ' ' <<<"$dropin")"
fi

# --- 1. READY=1 after the first scan
# Type=notify: `systemctl restart` returns when systemd takes the unit for
# active, i.e. at READY=1. Were READY=1 sent before the first scan was
# published, /metrics would answer 503 right after it; the agent scans every
# 15 s, so the first answer must be scan 1.
for round in 1 2 3; do
    in_ct systemctl restart closewatch
    [ "$(unit_prop ActiveState)" = active ] || fail "restart $round: not active"
    text=$(metrics) || fail "restart $round: /metrics did not answer 200 once active"
    scans=$(sample "$text" closewatch_scans_total)
    [ "$scans" = 1 ] || fail "restart $round: closewatch_scans_total is '$scans' when active, not 1"
done
status=$(unit_prop StatusText)
case "$status" in
"first scan done"*) ;;
*) fail "StatusText is '$status', not the first scan's READY=1 status" ;;
esac
# The journal of this start: the agent's first-scan line ("status ...")
# comes before systemd's "Started".
invocation=$(unit_prop InvocationID)
journal=$(in_ct journalctl --no-pager -o short-monotonic _SYSTEMD_INVOCATION_ID="$invocation" + \
    INVOCATION_ID="$invocation" _PID=1)
scan_line=$(grep -n 'closewatch\[[0-9]*\]: status ' <<<"$journal" | head -1 | cut -d: -f1)
started_line=$(grep -n 'Started closewatch.service' <<<"$journal" | head -1 | cut -d: -f1)
[ -n "$scan_line" ] && [ -n "$started_line" ] && [ "$scan_line" -lt "$started_line" ] ||
    fail "the journal does not show the first scan before \"Started\":
$journal"
exec_us=$(unit_prop ExecMainStartTimestampMonotonic)
active_us=$(unit_prop ActiveEnterTimestampMonotonic)
say "1 ok: active only once scan 1 is served (3 restarts; exec→READY=1 $(((active_us - exec_us) / 1000)) ms); journal:"
grep -E 'Starting|listening|status|Started' <<<"$journal" >&2 || true

# --- 1b. priorities: the agent's "<N>" prefixes reach journald as PRIORITY,
# so `journalctl -p warning` shows its warnings (here: BPF refused in the
# container's pid namespace) and not its info lines.
warnings=$(in_ct journalctl -u closewatch -p warning --no-pager -o cat _SYSTEMD_INVOCATION_ID="$invocation")
grep -q 'BPF attribution unavailable' <<<"$warnings" ||
    fail "journalctl -p warning lacks the agent's warning:
$warnings"
! grep -q 'listening on' <<<"$warnings" || fail "an info line has warning priority:
$warnings"
grep -q '^<[0-9]>' <<<"$warnings" && fail "the <N> prefix reached the journal's text"
say "1b ok: journalctl -p warning shows the agent's warning and none of its info lines"

# --- 2. reload
conf=/proc/$leader/root/etc/closewatch/closewatch.toml
cp "$conf" "$work/closewatch.toml.shipped"
pid_before=$(unit_prop MainPID)
text=$(metrics)
[ "$(sample "$text" closewatch_threshold check=close_wait_stale severity=warning)" = 1 ] ||
    fail "the default close_wait_stale warning threshold is not 1"
# Faster scans and a short age for the checks below; a changed threshold to see.
cat >"$work/closewatch.toml.test" <<'EOF'
interval = "2s"
close_wait_age = "3s"
[thresholds]
close_wait_stale = { warning = 2, critical = 50 }
EOF
cp "$work/closewatch.toml.test" "$conf"
in_ct systemctl reload closewatch
reloaded() {
    text=$(metrics) &&
        [ "$(sample "$text" closewatch_config_reloads_total result=success)" = 1 ] &&
        [ "$(sample "$text" closewatch_threshold check=close_wait_stale severity=warning)" = 2 ]
}
wait_for 20 reloaded || fail "after systemctl reload the metrics do not show the new config:
$(grep -E 'reload|threshold' <<<"$text")"
[ "$(sample "$text" closewatch_config_last_reload_successful)" = 1 ] || fail "last reload not successful"
[ "$(unit_prop MainPID)" = "$pid_before" ] || fail "reload restarted the agent"
journal=$(in_ct journalctl -u closewatch --no-pager -o cat)
grep -q 'config reloaded' <<<"$journal" || fail "no 'config reloaded' in the journal"
# A broken file: counted, logged, and the running config stays.
echo 'interval = "soon"' >"$conf"
in_ct systemctl reload closewatch
broken() {
    text=$(metrics) && [ "$(sample "$text" closewatch_config_last_reload_successful)" = 0 ]
}
wait_for 20 broken || fail "a broken config did not show as closewatch_config_last_reload_successful 0"
[ "$(unit_prop ActiveState)" = active ] || fail "a broken config stopped the agent"
[ "$(sample "$text" closewatch_threshold check=close_wait_stale severity=warning)" = 2 ] ||
    fail "a broken config changed the running thresholds"
cp "$work/closewatch.toml.test" "$conf"
in_ct systemctl reload closewatch
fixed() {
    text=$(metrics) && [ "$(sample "$text" closewatch_config_last_reload_successful)" = 1 ]
}
wait_for 20 fixed || fail "the fixed config did not reload"
say "2 ok: reload applied interval 2s and close_wait_stale warning 1 → 2 in the same pid $pid_before; a broken file kept them:"
journal=$(in_ct journalctl -u closewatch --no-pager -o cat)
grep -E 'SIGHUP|reload' <<<"$journal" >&2 || true

# --- 3. attribution under the sandbox: root processes holding CLOSE_WAIT
# sockets, one in the container's namespace and one in an `ip netns`.
cat >"/proc/$leader/root/root/close-wait.py" <<'EOF'
# Holds N accepted connections whose clients closed: N CLOSE_WAIT sockets.
import socket, sys, time
n = int(sys.argv[1])
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(n)
held = []
for _ in range(n):
    c = socket.create_connection(srv.getsockname())
    s, _ = srv.accept()
    c.close()
    held.append(s)
time.sleep(3600)
EOF
in_ct ip netns add closewatch-check
in_ct ip -n closewatch-check link set lo up
in_ct systemd-run --quiet --unit=closewatch-check-host --property=KillMode=process \
    python3 /root/close-wait.py 3
in_ct systemd-run --quiet --unit=closewatch-check-netns --property=KillMode=process \
    ip netns exec closewatch-check python3 /root/close-wait.py 2
host_pid=$(in_ct systemctl show -p MainPID --value closewatch-check-host)
netns_pid=$(in_ct systemctl show -p MainPID --value closewatch-check-netns)
netns_id=$(in_ct stat -L -c %i /run/netns/closewatch-check)
attributed() {
    text=$(metrics) &&
        [ "$(sample "$text" closewatch_process_tcp_sockets pid="$host_pid" comm=python3 state=close_wait)" = 3 ] &&
        [ "$(sample "$text" closewatch_process_tcp_sockets pid="$netns_pid" comm=python3 state=close_wait)" = 2 ] &&
        [ "$(sample "$text" closewatch_process_finding pid="$host_pid" check=close_wait_stale)" = 1 ]
}
wait_for 30 attributed || fail "the agent did not attribute the CLOSE_WAIT sockets of pids $host_pid (3) and $netns_pid (2, netns $netns_id):
$(grep -E 'closewatch_process_tcp_sockets|netns|attribution|skipped' <<<"$text")"
grep -q '^closewatch_netns_unscanned{' <<<"$text" && fail "a namespace was not scanned:
$(grep netns <<<"$text")"
[ "$(sample "$text" closewatch_netns_scanned)" -ge 2 ] || fail "fewer than 2 namespaces scanned"
[ "$(sample "$text" closewatch_attribution_complete)" = 1 ] || fail "attribution incomplete"
say "3 ok: under the unit's sandbox, as user $(in_ct ps -o user= -p "$(unit_prop MainPID)"):"
grep -E "^closewatch_process_(tcp_sockets|finding)\{.*pid=\"($host_pid|$netns_pid)\"|^closewatch_netns_scanned|^closewatch_scans_by_attribution_total|^closewatch_attribution_complete|^closewatch_scan_duration_seconds" <<<"$text" >&2 || true
# Which backend ran, and why. BPF iterators report pids as the kernel's
# initial pid namespace numbers them; the container's /proc has its own, so
# the agent must fall back to the /proc walk here, after loading and running
# the iterators (bpf() passed the unit's filter and capabilities).
[ "$(sample "$text" closewatch_scans_by_attribution_total attribution=procfs)" -ge 1 ] ||
    fail "no scan by the /proc walk"
journal=$(in_ct journalctl -u closewatch --no-pager -o cat)
why=$(grep 'BPF attribution unavailable' <<<"$journal" | tail -1 || true)
say "attribution: $why"
case "$why" in
*"another pid namespace"*) ;;
*) fail "BPF was not refused for the pid namespace alone (the unit's sandbox refused bpf()?): $why" ;;
esac
in_ct systemctl stop closewatch-check-host closewatch-check-netns
in_ct ip netns delete closewatch-check

# --- 4. the watchdog
restarts=$(unit_prop NRestarts)
pid=$(unit_prop MainPID)
# What the agent was given, as it reads it.
wd_usec=$(in_ct cat /proc/"$pid"/environ | tr '\0' '\n' | sed -n 's/^WATCHDOG_USEC=//p')
[ -n "$wd_usec" ] || fail "the agent (pid $pid) has no WATCHDOG_USEC"
limit=$((wd_usec / 1000000 + 90))
say "4: kill -STOP $pid; WatchdogSec=$(unit_prop WatchdogUSec) (WATCHDOG_USEC=$wd_usec), RestartSec=$(unit_prop RestartUSec): waiting for the watchdog"
in_ct kill -STOP "$pid"
t0=$SECONDS
restarted() {
    [ "$(unit_prop NRestarts)" -gt "$restarts" ] && [ "$(unit_prop ActiveState)" = active ]
}
wait_for "$limit" restarted ||
    fail "no restart by the watchdog in ${limit}s (NRestarts $(unit_prop NRestarts), $(unit_prop ActiveState))"
new_pid=$(unit_prop MainPID)
[ "$new_pid" != "$pid" ] || fail "MainPID unchanged after the watchdog restart"
journal=$(in_ct journalctl -u closewatch --no-pager -o short-monotonic)
grep -q 'Watchdog timeout' <<<"$journal" ||
    fail "no 'Watchdog timeout' in the journal"
say "4 ok: restarted $((SECONDS - t0))s after SIGSTOP: NRestarts $restarts → $(unit_prop NRestarts), MainPID $pid → $new_pid; journal:"
grep -E -A3 'Watchdog timeout' <<<"$journal" >&2 || true
metrics >/dev/null || fail "/metrics does not answer after the restart"

cp "$work/closewatch.toml.shipped" "$conf"

# --- 5. the exposure score, as systemd rates the unit
in_ct systemd-analyze security --no-pager closewatch.service >"$work/security.txt" 2>&1 || true
grep -q 'Overall exposure level' "$work/security.txt" || fail "systemd-analyze security failed: $(cat "$work/security.txt")"
say "5: what systemd-analyze security holds against the unit (the rest passes):"
grep '✗' "$work/security.txt" >&2 || true
say "5: $(tail -1 "$work/security.txt")"
