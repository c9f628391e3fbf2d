// closewatch's alerting rules: stale CLOSE_WAIT, owned FIN_WAIT_2, unaccepted
// CLOSE_WAIT, fd utilization and exhaustion, deleted open files, host file
// handles, dead sockets, half-open connections, UNIX close-wait, full accept
// queues, ephemeral ports (group closewatch-leaks); and the agent's own
// health (group closewatch-agent).
//
// How the per-process alerts are built (the rendered files' header says it
// to their readers too): each compares a series with the level the agent
// exports for that check, closewatch_threshold{check, severity}, joined
// `on(instance, job) group_left()`, so the thresholds are configured once, in
// the agent's config. Each comes as a warning/critical pair with one name.
//
// Every alert has promtool unit tests where it fires, at each severity, and
// where it does not: packaging/prometheus/closewatch-alerts.test.yml.
// Strings are Prometheus templates; only the expressions that use the
// selector are %-formatted with _config.
{
  prometheusAlerts+:: {
    groups+: [
      {
        name: 'closewatch-leaks',
        rules: [
          // --- stale CLOSE_WAIT: the peer closed, the program never called close()
          {
            alert: 'CloseWatchStaleCloseWait',
            expr: |||
              (closewatch_process_stale_tcp_sockets{state="close_wait"} > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="close_wait_stale", severity="warning"}
            |||,
            'for': '5m',
            labels: {
              severity: 'warning',
              check: 'close_wait_stale',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} stale CLOSE_WAIT sockets',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} has {{ $value }} TCP sockets in CLOSE_WAIT older than close_wait_age: the peer closed the connection and the program never called close(). Each one holds a file descriptor until the process exits. Peers and a hint: `closewatch --report --pid {{ $labels.pid }}` on that host.',
            },
          },
          {
            alert: 'CloseWatchStaleCloseWait',
            expr: |||
              (closewatch_process_stale_tcp_sockets{state="close_wait"} > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="close_wait_stale", severity="critical"}
            |||,
            'for': '5m',
            labels: {
              severity: 'critical',
              check: 'close_wait_stale',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} stale CLOSE_WAIT sockets',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} has {{ $value }} TCP sockets in CLOSE_WAIT older than close_wait_age, at or above the critical level: a connection leak that will exhaust its file descriptors. Peers and a hint: `closewatch --report --pid {{ $labels.pid }}` on that host.',
            },
          },
          // --- owned FIN_WAIT_2: half-closed with shutdown(SHUT_WR) and kept
          {
            alert: 'CloseWatchStaleFinWait2',
            expr: |||
              (closewatch_process_stale_tcp_sockets{state="fin_wait2"} > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="fin_wait2_stale", severity="warning"}
            |||,
            'for': '5m',
            labels: {
              severity: 'warning',
              check: 'fin_wait2_stale',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} stale FIN_WAIT_2 sockets',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} keeps {{ $value }} half-closed TCP sockets (shutdown(SHUT_WR), never close()d) in FIN_WAIT_2 for longer than fin_wait2_age; the kernel does not time out a socket the program still owns. Peers and a hint: `closewatch --report --pid {{ $labels.pid }}` on that host.',
            },
          },
          {
            alert: 'CloseWatchStaleFinWait2',
            expr: |||
              (closewatch_process_stale_tcp_sockets{state="fin_wait2"} > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="fin_wait2_stale", severity="critical"}
            |||,
            'for': '5m',
            labels: {
              severity: 'critical',
              check: 'fin_wait2_stale',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} stale FIN_WAIT_2 sockets',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} keeps {{ $value }} half-closed TCP sockets in FIN_WAIT_2 for longer than fin_wait2_age, at or above the critical level. Peers and a hint: `closewatch --report --pid {{ $labels.pid }}` on that host.',
            },
          },
          // --- connections the peer closed while they waited in a listen queue:
          // the program stopped calling accept() (stale ones only, so the agent's
          // finding is the basis; see the header).
          {
            alert: 'CloseWatchUnacceptedCloseWait',
            expr: |||
              max without(severity) (
                closewatch_process_finding{check="close_wait_unaccepted"}
              )
            |||,
            'for': '5m',
            labels: {
              severity: 'warning',
              check: 'close_wait_unaccepted',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} is not accepting connections',
              description: 'Connections to a socket that {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} listens on were closed by their peers while they waited, never accepted, in its listen queue for longer than close_wait_age: the accept loop is stuck or too slow. Details: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          {
            alert: 'CloseWatchUnacceptedCloseWait',
            expr: |||
              closewatch_process_finding{check="close_wait_unaccepted", severity="critical"}
            |||,
            'for': '5m',
            labels: {
              severity: 'critical',
              check: 'close_wait_unaccepted',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} is not accepting connections',
              description: 'At least the critical number of connections to a socket that {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} listens on were closed by their peers while they waited, never accepted, in its listen queue: the accept loop is stuck. Details: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          // --- open fds / soft RLIMIT_NOFILE (no max series: unlimited, no alert)
          {
            alert: 'CloseWatchFdUtilization',
            expr: |||
              (closewatch_process_open_fds / closewatch_process_max_fds)
                >= on(instance, job) group_left()
              closewatch_threshold{check="fd_utilization", severity="warning"}
            |||,
            'for': '10m',
            labels: {
              severity: 'warning',
              check: 'fd_utilization',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} uses {{ $value | humanizePercentage }} of its file descriptor limit',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} has {{ $value | humanizePercentage }} of its soft RLIMIT_NOFILE open. At the limit every accept(), open() and socket() fails with EMFILE. What the fds are: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          {
            alert: 'CloseWatchFdUtilization',
            expr: |||
              (closewatch_process_open_fds / closewatch_process_max_fds)
                >= on(instance, job) group_left()
              closewatch_threshold{check="fd_utilization", severity="critical"}
            |||,
            'for': '5m',
            labels: {
              severity: 'critical',
              check: 'fd_utilization',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} uses {{ $value | humanizePercentage }} of its file descriptor limit',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} has {{ $value | humanizePercentage }} of its soft RLIMIT_NOFILE open, at or above the critical level: it is about to fail with EMFILE. What the fds are: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          // --- predicted time to the fd limit (exported only while fds grow
          // steadily; less is worse)
          {
            alert: 'CloseWatchFdExhaustion',
            expr: |||
              closewatch_process_fd_exhaustion_seconds
                <= on(instance, job) group_left()
              closewatch_threshold{check="fd_exhaustion", severity="warning"}
            |||,
            'for': '15m',
            labels: {
              severity: 'warning',
              check: 'fd_exhaustion',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} runs out of file descriptors in {{ $value | humanizeDuration }}',
              description: 'The open fds of {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} grow steadily; at that rate the process reaches its RLIMIT_NOFILE in about {{ $value | humanizeDuration }}. What grows: `closewatch --report --duration 30s --pid {{ $labels.pid }}`.',
            },
          },
          {
            alert: 'CloseWatchFdExhaustion',
            expr: |||
              closewatch_process_fd_exhaustion_seconds
                <= on(instance, job) group_left()
              closewatch_threshold{check="fd_exhaustion", severity="critical"}
            |||,
            'for': '5m',
            labels: {
              severity: 'critical',
              check: 'fd_exhaustion',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} runs out of file descriptors in {{ $value | humanizeDuration }}',
              description: 'The open fds of {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} grow steadily; at that rate the process reaches its RLIMIT_NOFILE in about {{ $value | humanizeDuration }}, within the critical horizon. What grows: `closewatch --report --duration 30s --pid {{ $labels.pid }}`.',
            },
          },
          // --- bytes held by files deleted but still open (disk space df shows
          // used and du cannot find)
          {
            alert: 'CloseWatchDeletedOpenFiles',
            expr: |||
              (closewatch_process_deleted_open_bytes > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="deleted_open_files", severity="warning"}
            |||,
            'for': '15m',
            labels: {
              severity: 'warning',
              check: 'deleted_open_files',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value | humanize1024 }}B of deleted files open',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} keeps files open that were deleted ({{ $value | humanize1024 }}B): the disk space is not freed until it closes them (log rotation without reopen?). Which files: `closewatch --report --pid {{ $labels.pid }}` or `lsof +L1 -p {{ $labels.pid }}`.',
            },
          },
          {
            alert: 'CloseWatchDeletedOpenFiles',
            expr: |||
              (closewatch_process_deleted_open_bytes > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="deleted_open_files", severity="critical"}
            |||,
            'for': '5m',
            labels: {
              severity: 'critical',
              check: 'deleted_open_files',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value | humanize1024 }}B of deleted files open',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} keeps {{ $value | humanize1024 }}B of deleted files open, at or above the critical level: the space is not freed until it closes them. Which files: `closewatch --report --pid {{ $labels.pid }}` or `lsof +L1 -p {{ $labels.pid }}`.',
            },
          },
          // --- host-wide file handles (fs.file-nr / fs.file-max)
          {
            alert: 'CloseWatchHostFdUtilization',
            expr: |||
              (closewatch_host_open_fds / closewatch_host_max_fds)
                >= on(instance, job) group_left()
              closewatch_threshold{check="host_fd_utilization", severity="warning"}
            |||,
            'for': '10m',
            labels: {
              severity: 'warning',
              check: 'host_fd_utilization',
            },
            annotations: {
              summary: '{{ $labels.instance }} uses {{ $value | humanizePercentage }} of fs.file-max',
              description: 'File handles allocated on {{ $labels.instance }} are at {{ $value | humanizePercentage }} of fs.file-max; at the limit every open() on the host fails with ENFILE. The processes holding the most: `closewatch --report`.',
            },
          },
          {
            alert: 'CloseWatchHostFdUtilization',
            expr: |||
              (closewatch_host_open_fds / closewatch_host_max_fds)
                >= on(instance, job) group_left()
              closewatch_threshold{check="host_fd_utilization", severity="critical"}
            |||,
            'for': '5m',
            labels: {
              severity: 'critical',
              check: 'host_fd_utilization',
            },
            annotations: {
              summary: '{{ $labels.instance }} uses {{ $value | humanizePercentage }} of fs.file-max',
              description: 'File handles allocated on {{ $labels.instance }} are at {{ $value | humanizePercentage }} of fs.file-max, at or above the critical level: every open() on the host is about to fail with ENFILE. The processes holding the most: `closewatch --report`.',
            },
          },
          // --- dead sockets: TCP sockets in no table (reset by the peer, or
          // never connected) that the program still holds
          {
            alert: 'CloseWatchDeadSockets',
            expr: |||
              (closewatch_process_stale_tcp_sockets{state="dead"} > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="dead_sockets", severity="warning"}
            |||,
            'for': '5m',
            labels: {
              severity: 'warning',
              check: 'dead_sockets',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} dead TCP sockets',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} has held {{ $value }} TCP sockets for longer than dead_socket_age that are in no TCP table: the peer reset them (or they never connected) and the program never closed them. `ss` does not show them. Details: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          {
            alert: 'CloseWatchDeadSockets',
            expr: |||
              (closewatch_process_stale_tcp_sockets{state="dead"} > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="dead_sockets", severity="critical"}
            |||,
            'for': '5m',
            labels: {
              severity: 'critical',
              check: 'dead_sockets',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} dead TCP sockets',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} TCP sockets in no TCP table (reset or never connected), at or above the critical level: an fd leak on the error path that will exhaust its file descriptors. Details: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          // --- half-open: idle ESTABLISHED connections without keepalive whose
          // peer is not known alive (the read-deadline bug)
          {
            alert: 'CloseWatchHalfOpen',
            expr: |||
              (closewatch_process_idle_tcp_sockets > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="half_open", severity="warning"}
            |||,
            'for': '15m',
            labels: {
              severity: 'warning',
              check: 'half_open',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} half-open connections',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} has {{ $value }} ESTABLISHED connections that received nothing for longer than idle_age with no keepalive: if their peer is gone it will wait forever (no read deadline). Details, and which peers are proven gone: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          {
            alert: 'CloseWatchHalfOpen',
            expr: |||
              (closewatch_process_idle_tcp_sockets > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="half_open", severity="critical"}
            |||,
            'for': '15m',
            labels: {
              severity: 'critical',
              check: 'half_open',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} half-open connections',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} has {{ $value }} idle ESTABLISHED connections without keepalive, at or above the critical level: connections to vanished peers pile up, each holding a file descriptor and a waiting reader. Details: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          // --- UNIX stream sockets whose peer closed, kept open
          {
            alert: 'CloseWatchUnixCloseWait',
            expr: |||
              (closewatch_process_stale_unix_sockets{state="close_wait"} > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="unix_close_wait", severity="warning"}
            |||,
            'for': '5m',
            labels: {
              severity: 'warning',
              check: 'unix_close_wait',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} UNIX sockets whose peer closed',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} has kept {{ $value }} connected UNIX stream sockets for longer than dead_socket_age after their peer closed (a leaked connection to a local service such as docker.sock or a database socket). Details: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          {
            alert: 'CloseWatchUnixCloseWait',
            expr: |||
              (closewatch_process_stale_unix_sockets{state="close_wait"} > 0)
                >= on(instance, job) group_left()
              closewatch_threshold{check="unix_close_wait", severity="critical"}
            |||,
            'for': '5m',
            labels: {
              severity: 'critical',
              check: 'unix_close_wait',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} holds {{ $value }} UNIX sockets whose peer closed',
              description: 'Process {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} keeps {{ $value }} UNIX stream sockets whose peer closed, at or above the critical level: a connection leak that will exhaust its file descriptors. Details: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          // --- a listener's accept queue at its backlog: the program is not
          // accepting and the kernel is about to drop (or drops) connections
          {
            alert: 'CloseWatchAcceptQueueFull',
            expr: |||
              closewatch_listen_queue_ratio
                >= on(instance, job) group_left()
              closewatch_threshold{check="accept_queue_full", severity="warning"}
            |||,
            'for': '2m',
            labels: {
              severity: 'warning',
              check: 'accept_queue_full',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} is not keeping up with connections on {{ $labels.local }}',
              description: 'The accept queue of {{ $labels.local }}, a listener of {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }}, is at {{ $value | humanizePercentage }} of its backlog: the program is not calling accept() fast enough, or at all. Clients wait and time out. Details: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          {
            alert: 'CloseWatchAcceptQueueFull',
            expr: |||
              closewatch_listen_queue_ratio
                >= on(instance, job) group_left()
              closewatch_threshold{check="accept_queue_full", severity="critical"}
            |||,
            'for': '2m',
            labels: {
              severity: 'critical',
              check: 'accept_queue_full',
            },
            annotations: {
              summary: '{{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }} is not keeping up with connections on {{ $labels.local }}',
              description: 'The accept queue of {{ $labels.local }}, a listener of {{ $labels.comm }} (pid {{ $labels.pid }}, unit {{ or $labels.unit "none" }}) on {{ $labels.instance }}, is full ({{ $value | humanizePercentage }} of its backlog): the kernel drops new connections. The accept loop is stuck or far too slow. Details: `closewatch --report --pid {{ $labels.pid }}`.',
            },
          },
          // --- ephemeral ports toward one destination near the end of the range
          {
            alert: 'CloseWatchEphemeralPortExhaustion',
            expr: |||
              (
                closewatch_ephemeral_ports_in_use
                  / on(instance, job, netns) group_left()
                closewatch_ephemeral_port_range_size
              )
                >= on(instance, job) group_left()
              closewatch_threshold{check="port_exhaustion", severity="warning"}
            |||,
            'for': '5m',
            labels: {
              severity: 'warning',
              check: 'port_exhaustion',
            },
            annotations: {
              summary: '{{ $labels.instance }} uses {{ $value | humanizePercentage }} of its ephemeral ports toward {{ $labels.remote }}',
              description: 'Connections from {{ $labels.local_ip }} to {{ $labels.remote }} in network namespace {{ $labels.netns }} on {{ $labels.instance }} hold {{ $value | humanizePercentage }} of net.ipv4.ip_local_port_range (TIME_WAIT included); when it is full, connect() to that destination fails with "cannot assign requested address". Reuse connections, or widen the range. Who holds them: `closewatch --report` on that host.',
            },
          },
          {
            alert: 'CloseWatchEphemeralPortExhaustion',
            expr: |||
              (
                closewatch_ephemeral_ports_in_use
                  / on(instance, job, netns) group_left()
                closewatch_ephemeral_port_range_size
              )
                >= on(instance, job) group_left()
              closewatch_threshold{check="port_exhaustion", severity="critical"}
            |||,
            'for': '5m',
            labels: {
              severity: 'critical',
              check: 'port_exhaustion',
            },
            annotations: {
              summary: '{{ $labels.instance }} uses {{ $value | humanizePercentage }} of its ephemeral ports toward {{ $labels.remote }}',
              description: 'Connections from {{ $labels.local_ip }} to {{ $labels.remote }} in network namespace {{ $labels.netns }} on {{ $labels.instance }} hold {{ $value | humanizePercentage }} of net.ipv4.ip_local_port_range, at or above the critical level: new connections to that destination are failing or about to fail with EADDRNOTAVAIL. Who holds them: `closewatch --report` on that host.',
            },
          },
        ],
      },
      {
        name: 'closewatch-agent',
        rules: [
          // The scrape fails: the agent is down, unreachable, or has not finished
          // its first scan (/metrics answers 503 until then).
          {
            alert: 'CloseWatchAgentDown',
            expr: |||
              up{%(closewatchSelector)s} == 0
            ||| % $._config,
            'for': '5m',
            labels: {
              severity: 'warning',
            },
            annotations: {
              summary: 'closewatch on {{ $labels.instance }} cannot be scraped',
              description: 'Prometheus has failed to scrape closewatch on {{ $labels.instance }} (job {{ $labels.job }}) for 5 minutes: socket and fd leaks on that host go unnoticed. Check `systemctl status closewatch` (or the pod), its /healthz, and the last scrape error Prometheus shows for the target (a 401 is a web config password Prometheus does not have).',
            },
          },
          // No target at all: the job is missing from the scrape config or service
          // discovery finds no agent.
          {
            alert: 'CloseWatchAgentAbsent',
            expr: |||
              absent(up{%(closewatchSelector)s})
            ||| % $._config,
            'for': '15m',
            labels: {
              severity: 'warning',
            },
            annotations: {
              summary: 'No closewatch target is being scraped',
              description: 'Prometheus has no target in job {{ $labels.job }} for 15 minutes: no host is watched for socket and fd leaks. Check the scrape config and service discovery.',
            },
          },
          // Scrapes work but serve an old scan: the scan loop is stuck (a /proc read
          // or a sock_diag dump hung in the kernel). 300 s is 20 default intervals:
          // raise it if --interval is longer than a minute.
          {
            alert: 'CloseWatchScansStalled',
            expr: |||
              time() - closewatch_last_scan_timestamp_seconds > 300
            |||,
            'for': '5m',
            labels: {
              severity: 'warning',
            },
            annotations: {
              summary: 'closewatch on {{ $labels.instance }} has not completed a scan for {{ $value | humanizeDuration }}',
              description: 'The last scan of closewatch on {{ $labels.instance }} started {{ $value | humanizeDuration }} ago; its metrics are stale and /healthz answers 503. Look at its log (journalctl -u closewatch) for the stuck stage.',
            },
          },
          // Scans keep recording errors (a failed sock_diag dump, an unreadable
          // /proc, ...). A single failure does not fire: it must recur for 15
          // minutes.
          {
            alert: 'CloseWatchScanErrors',
            expr: |||
              increase(closewatch_scan_errors_total[10m]) > 0
            |||,
            'for': '15m',
            labels: {
              severity: 'warning',
            },
            annotations: {
              summary: 'closewatch scans on {{ $labels.instance }} fail at stage {{ $labels.stage }}',
              description: 'closewatch on {{ $labels.instance }} recorded {{ $value | humanize }} scan errors at stage {{ $labels.stage }} in the last 10 minutes, for 15 minutes running: its view of sockets or processes is incomplete. The log says why (journalctl -u closewatch).',
            },
          },
          // Processes worth a series were left out by --max-processes: alerts and
          // dashboards miss them.
          {
            alert: 'CloseWatchSeriesTruncated',
            expr: |||
              closewatch_processes_truncated > 0
            |||,
            'for': '30m',
            labels: {
              severity: 'warning',
            },
            annotations: {
              summary: 'closewatch on {{ $labels.instance }} leaves {{ $value }} processes without series',
              description: 'closewatch on {{ $labels.instance }} found {{ $value }} more processes worth a series than --max-processes allows; the least bad ones have no per-process metrics, so no per-process alert can fire for them. Raise max_processes, or see them all with `closewatch --report`.',
            },
          },
          // Stale sockets without a known owner while some processes could not be read:
          // the agent lacks CAP_SYS_PTRACE / CAP_DAC_READ_SEARCH.
          {
            alert: 'CloseWatchAttributionIncomplete',
            expr: |||
              closewatch_attribution_complete == 0
            |||,
            'for': '30m',
            labels: {
              severity: 'warning',
            },
            annotations: {
              summary: 'closewatch on {{ $labels.instance }} cannot name every socket owner',
              description: 'closewatch on {{ $labels.instance }} sees stale sockets whose owner it could not read (closewatch_processes_skipped{reason="permission_denied"}): leaks in those processes raise no per-process alert. closewatch --report on that host names them and says what refuses each and what would let closewatch read it (usually CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH, which systemd/closewatch.service grants; no capability helps against a security module).',
            },
          },
          // A network namespace could not be dumped (open_denied: its handles could
          // not be opened; setns_denied: CAP_SYS_ADMIN): its sockets are not watched.
          {
            alert: 'CloseWatchNetnsUnscanned',
            expr: |||
              count without(netns) (closewatch_netns_unscanned) > 0
            |||,
            'for': '30m',
            labels: {
              severity: 'warning',
            },
            annotations: {
              summary: 'closewatch on {{ $labels.instance }} cannot scan {{ $value }} network namespaces ({{ $labels.reason }})',
              description: 'closewatch on {{ $labels.instance }} could not dump the sockets of {{ $value }} network namespaces (reason {{ $labels.reason }}: open_denied: its handles could not be opened, setns_denied needs CAP_SYS_ADMIN). Leaks in the containers there go unnoticed.',
            },
          },
          // A SIGHUP reload was rejected; the agent runs on with the old config.
          {
            alert: 'CloseWatchConfigReloadFailed',
            expr: |||
              closewatch_config_last_reload_successful == 0
            |||,
            'for': '5m',
            labels: {
              severity: 'warning',
            },
            annotations: {
              summary: 'closewatch on {{ $labels.instance }} rejected its new config',
              description: 'The last config reload (SIGHUP) of closewatch on {{ $labels.instance }} failed and the previous config is still in force. `closewatch -c /etc/closewatch/closewatch.toml --check-config` says what is wrong.',
            },
          },
        ],
      },
    ],
  },
}
