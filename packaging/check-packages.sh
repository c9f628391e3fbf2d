#!/usr/bin/env bash
# Builds the .deb and .rpm (build-packages.sh), checks what they hold, then
# installs the .deb on this machine, runs the installed binary and verifies
# the installed unit, and purges the package again (also on failure).
# CI runs it (as root) after the tests; it changes the system, so it refuses
# to run where closewatch is already installed.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "check-packages.sh: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

[ "$(id -u)" = 0 ] || fail "run as root (it installs and purges the .deb)"
if dpkg-query -W -f='${Status}' closewatch 2>/dev/null | grep -q installed; then
    fail "closewatch is already installed here; not touching it"
fi

packaging/build-packages.sh

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
deb=$(ls target/debian/closewatch_"${version}"-*.deb)
rpm=$(ls target/generate-rpm/closewatch-"${version}"-*.rpm)

# --- what the .deb holds
contents=$(dpkg-deb -c "$deb")
echo "$contents"
for path in \
    ./usr/bin/closewatch \
    ./etc/closewatch/closewatch.toml \
    ./usr/lib/systemd/system/closewatch.service \
    ./usr/share/man/man1/closewatch.1.gz \
    ./usr/share/bash-completion/completions/closewatch \
    ./usr/share/zsh/vendor-completions/_closewatch \
    ./usr/share/fish/vendor_completions.d/closewatch.fish \
    ./usr/share/closewatch/prometheus/closewatch-alerts.yml \
    ./usr/share/closewatch/grafana/closewatch-dashboard.json \
    ./usr/share/doc/closewatch/README.md \
    ./usr/share/doc/closewatch/docs/report.schema.json \
    ./usr/share/doc/closewatch/docs/metrics.md \
    ./usr/share/doc/closewatch/web-config.yml; do
    grep -q " ${path}\$" <<<"$contents" || fail "$deb lacks $path"
done
control=$(mktemp -d)
created_user=""
cleanup() {
    rm -rf "$control"
    if dpkg-query -W -f='${Status}' closewatch 2>/dev/null | grep -q installed; then
        dpkg --purge closewatch >/dev/null || say "dpkg --purge closewatch failed"
    fi
    if [ -n "$created_user" ] && getent passwd closewatch >/dev/null; then
        userdel closewatch 2>/dev/null || true
        getent group closewatch >/dev/null && groupdel closewatch 2>/dev/null || true
    fi
}
trap cleanup EXIT
dpkg-deb -e "$deb" "$control"
grep -qx /etc/closewatch/closewatch.toml "$control/conffiles" || fail "the config is not a conffile"
grep -q adduser "$control/postinst" || fail "postinst does not create the user"

# --- what the .rpm holds (rpm from Debian's rpm package)
if command -v rpm >/dev/null; then
    rpm_list=$(rpm -qlp "$rpm")
    echo "$rpm_list"
    for path in /usr/bin/closewatch /etc/closewatch/closewatch.toml \
        /usr/lib/systemd/system/closewatch.service /usr/share/man/man1/closewatch.1.gz \
        /usr/share/doc/closewatch/README.md /usr/share/doc/closewatch/docs/report.schema.json \
        /usr/share/doc/closewatch/docs/metrics.md /usr/share/doc/closewatch/web-config.yml; do
        grep -qx "$path" <<<"$rpm_list" || fail "$rpm lacks $path"
    done
    rpm -qp --scripts "$rpm" | grep -q useradd || fail "the rpm does not create the user"
else
    fail "rpm is not installed (apt-get install rpm) to inspect $rpm"
fi

# --- install, use, verify, purge
getent passwd closewatch >/dev/null || created_user=yes
dpkg -i "$deb"
getent passwd closewatch >/dev/null || fail "the package did not create the closewatch user"
[ -x /usr/bin/closewatch ] || fail "/usr/bin/closewatch is not installed"
/usr/bin/closewatch --version
/usr/bin/closewatch --check-config >/dev/null || fail "the packaged config does not load"
set +e
/usr/bin/closewatch --report >/tmp/closewatch-report.$$ 2>&1
code=$?
set -e
head -40 /tmp/closewatch-report.$$
rm -f /tmp/closewatch-report.$$
# 0/1/2 are verdicts (this host may well hold stale sockets); 3 is a failure.
[ "$code" -le 2 ] || fail "/usr/bin/closewatch --report exited $code"
verify=$(systemd-analyze verify --man=no /usr/lib/systemd/system/closewatch.service 2>&1) ||
    fail "systemd-analyze verify failed: $verify"
[ -z "$verify" ] || fail "systemd-analyze verify of the installed unit: $verify"
zcat /usr/share/man/man1/closewatch.1.gz | grep -q -- 'close\\-wait\\-age' ||
    fail "the installed man page lacks --close-wait-age"
say "ok: $deb and $rpm"
