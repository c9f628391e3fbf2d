// Renders packaging/prometheus/closewatch-alerts.yml, the rule file the
// packages ship (rule_files:). `selector` overrides _config.closewatchSelector.
function(selector=null)
  local mixin = (import 'mixin.libsonnet') + (
    if selector == null then {} else { _config+:: { closewatchSelector: selector } }
  );
  (import 'header.libsonnet')(mixin._config.closewatchSelector) + '\n' +
  (import 'yaml.libsonnet').manifest(mixin.prometheusAlerts)
