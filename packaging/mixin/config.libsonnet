// The mixin's settings. Override them as with any monitoring mixin:
//   (import 'mixin.libsonnet') + { _config+:: { closewatchSelector: 'job="node-agents"' } }
// or, for the files this directory renders, with a top-level argument:
//   jsonnet -S --tla-str selector='job="kubernetes-pods"' closewatch-alerts.jsonnet
{
  _config+:: {
    // The label matchers that select closewatch's scrape targets, as
    // node-mixin's nodeExporterSelector does. The agent-health alerts use it
    // on `up` (down, absent). The per-process and host alerts need none:
    // only closewatch exports closewatch_* series, and each joins a target's
    // series with that same target's thresholds on (instance, job).
    //
    // job="closewatch" is the documented static scrape job, the job the
    // ServiceMonitor and PodMonitor of packaging/kubernetes/ produce (their
    // jobLabel is app.kubernetes.io/name), and the job name to give an
    // annotation-based scrape of the DaemonSet. Annotation discovery usually
    // calls it kubernetes-pods: then select job="kubernetes-pods",
    // app_kubernetes_io_name="closewatch" or whatever labels your
    // relabelling keeps.
    closewatchSelector: 'job="closewatch"',
  },
}
