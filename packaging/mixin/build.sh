#!/usr/bin/env bash
# Renders the closewatch monitoring mixin into the files that are committed
# and shipped:
#   packaging/prometheus/closewatch-alerts.yml          <- closewatch-alerts.jsonnet
#   packaging/kubernetes/closewatch-prometheusrule.yaml <- closewatch-prometheusrule.jsonnet
# Edit alerts.libsonnet or config.libsonnet, run this, commit both.
# tests/packaging_assets.rs renders them again and fails on any difference.
# Needs jsonnet (Debian: apt-get install jsonnet, as .ci/run does).
set -euo pipefail
cd "$(dirname "$0")/../.."

command -v jsonnet >/dev/null || {
    echo "mixin/build.sh: jsonnet is missing (Debian: apt-get install jsonnet)" >&2
    exit 1
}
render() { # SOURCE DEST
    jsonnet -S -J packaging/mixin "packaging/mixin/$1" >"$2.tmp"
    mv "$2.tmp" "$2"
    echo "$2"
}
render closewatch-alerts.jsonnet packaging/prometheus/closewatch-alerts.yml
render closewatch-prometheusrule.jsonnet packaging/kubernetes/closewatch-prometheusrule.yaml
