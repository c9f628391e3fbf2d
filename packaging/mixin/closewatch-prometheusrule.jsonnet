// Renders packaging/kubernetes/closewatch-prometheusrule.yaml: the same rule
// groups as packaging/prometheus/closewatch-alerts.yml, as a Prometheus
// Operator PrometheusRule (its spec is the rule file's content). `selector`
// overrides _config.closewatchSelector.
function(selector=null)
  local mixin = (import 'mixin.libsonnet') + (
    if selector == null then {} else { _config+:: { closewatchSelector: selector } }
  );
  local rule = {
    apiVersion: 'monitoring.coreos.com/v1',
    kind: 'PrometheusRule',
    metadata: {
      name: 'closewatch',
      labels: { 'app.kubernetes.io/name': 'closewatch' },
    },
    spec: mixin.prometheusAlerts,
  };
  (import 'header.libsonnet')(mixin._config.closewatchSelector) +
  |||
    #
    # A Prometheus picks up only the PrometheusRules its ruleSelector matches
    # (kube-prometheus-stack: the label release=<its release name>): add that
    # label, e.g. with the labels: field of a kustomization.
  ||| + '\n' +
  (import 'yaml.libsonnet').manifest(rule)
