// closewatch's monitoring mixin: its alerting rules, with the scrape-target
// selector as a setting (config.libsonnet). What the rules test is
// documented in alerts.libsonnet.
//
// Rendered, and committed, by packaging/mixin/build.sh:
//   packaging/prometheus/closewatch-alerts.yml          (closewatch-alerts.jsonnet)
//   packaging/kubernetes/closewatch-prometheusrule.yaml (closewatch-prometheusrule.jsonnet)
// tests/packaging_assets.rs renders them again and fails when a committed
// file differs.
(import 'config.libsonnet') + (import 'alerts.libsonnet')
