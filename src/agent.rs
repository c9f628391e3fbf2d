//! The agent: a scan thread that publishes each scan's rendered metrics, an
//! HTTP server that serves them, and signal handling (SIGTERM/SIGINT stop,
//! SIGHUP reloads the config; a bad config is logged and counted, and the
//! old one stays in force).

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::analyse::{self, Analysis, History, Status};
use crate::cli::Cli;
use crate::collect::{own_process, Collector, ScanCache, ScanTime, Skip};
use crate::config::{self, Settings};
use crate::export::http::address::{self, ListenAddr};
use crate::export::http::web_config::{self, WebConfigError};
use crate::export::http::{self, Limits, Published, Shared, Web};
use crate::export::metrics::{self, AgentStats, ScanView};
use crate::export::sdnotify::Notifier;
use crate::model::Snapshot;
use crate::sync;

/// Processes at this share of their fd limit get series before any finding.
pub const WORTH_A_LOOK_FD_UTILIZATION: f64 = 0.5;

/// Requests from the signal thread to the scan thread.
#[derive(Debug, Default)]
struct Requests {
    stop: bool,
    reload: bool,
}

#[derive(Debug, Default)]
struct Control {
    requests: Mutex<Requests>,
    wake: Condvar,
}

impl Control {
    fn request(&self, f: impl FnOnce(&mut Requests)) {
        let mut g = sync::lock(&self.requests);
        f(&mut g);
        self.wake.notify_all();
    }

    /// Sleeps until `deadline` or until a request arrives; takes the requests.
    fn wait(&self, deadline: Instant) -> Requests {
        let mut g = sync::lock(&self.requests);
        loop {
            if g.stop || g.reload {
                return std::mem::take(&mut *g);
            }
            let now = Instant::now();
            if now >= deadline {
                return Requests::default();
            }
            g = sync::wait_timeout(&self.wake, g, deadline - now);
        }
    }
}

/// The listen backlog asked for (the kernel caps it at net.core.somaxconn).
const LISTEN_BACKLOG: i32 = 4096;

/// The nice value of the scan threads (the HTTP thread keeps the agent's).
const SCAN_NICE: i32 = 10;

/// Analysis settings for the agent: every process worth a series is listed.
fn agent_analysis(settings: &Settings) -> analyse::Settings {
    analyse::Settings {
        list_fd_utilization: Some(WORTH_A_LOOK_FD_UTILIZATION),
        list_growing: true,
        only_pids: None,
        group_peers: false,
        ..settings.analysis()
    }
}

/// The unit label of each process that gets series, read when a process
/// first gets them and then every [`DETAILS_EVERY`](crate::collect::cache::DETAILS_EVERY);
/// and how many could not be read (their label is empty, and counted).
fn units(
    collector: &Collector,
    cache: &mut ScanCache,
    snapshot: &Snapshot,
    analysis: &Analysis,
    max: usize,
    now: Instant,
) -> (Vec<Option<String>>, u64) {
    let mut unreadable = 0;
    let units = analysis
        .processes
        .iter()
        .take(max)
        .map(|p| {
            let key = snapshot.processes.get(p.index)?.key;
            match collector.describe_unit_cached(key, cache, now) {
                Ok(unit) => unit,
                Err(Skip::Failed(_)) => {
                    unreadable += 1;
                    None
                }
                Err(_) => None,
            }
        })
        .collect();
    (units, unreadable)
}

struct ScanLoop {
    /// The flags, which a reloaded config file does not override.
    cli: Cli,
    settings: Settings,
    /// Built from `settings`; rebuilt only when a reload succeeds.
    collector: Collector,
    history: History,
    /// What the last scan read: a process whose fd count did not change is
    /// not walked again, and every state is counted at most once a minute.
    scan_cache: ScanCache,
    stats: AgentStats,
    last_status: Option<Status>,
    shared: Arc<Shared>,
    control: Arc<Control>,
    notifier: Arc<Notifier>,
}

impl ScanLoop {
    /// One scan: collect, judge, publish the metrics, tell systemd and the
    /// log.
    fn scan_once(&mut self) {
        let at = ScanTime::now();
        let snapshot = self.collector.scan_cached(&mut self.scan_cache, at);
        // Between scans' reads, so that its fd count is the agent at rest:
        // what the scan opened is closed, nothing after it is open yet.
        let own_process = own_process::read()
            .inspect_err(|e| log::warn!("reading the agent's own process: {e}"))
            .ok();
        self.history
            .observe(&snapshot, at.wall, self.settings.fd_growth_window);
        let analysis = analyse::analyse(
            &snapshot,
            &self.history,
            &agent_analysis(&self.settings),
            at.wall,
        );
        let (units, units_unreadable) = units(
            &self.collector,
            &mut self.scan_cache,
            &snapshot,
            &analysis,
            self.settings.max_processes,
            at.mono,
        );
        self.stats.count_scan(&snapshot);
        self.stats.http = self.shared.counts();
        self.log_scan(&snapshot, &analysis);
        let view = ScanView {
            snapshot: &snapshot,
            analysis: &analysis,
            units: &units,
            units_unreadable,
            thresholds: &self.settings.thresholds,
            max_processes: self.settings.max_processes,
            own_process,
        };
        match metrics::render(&view, &self.stats) {
            Ok(text) => self
                .shared
                .publish(Published::scan(Bytes::from(text), Instant::now())),
            // The previous scan's text stays up; /healthz turns 503 if this
            // keeps failing.
            Err(e) => log::error!("rendering metrics: {e}"),
        }
        self.notifier.status(&format!(
            "scan {}: {}, {} flagged sockets, {} processes listed, took {}",
            self.stats.scans,
            analysis.status.name(),
            snapshot.sockets.len(),
            analysis.processes.len(),
            humantime::format_duration(Duration::from_millis(snapshot.duration.as_millis() as u64)),
        ));
    }

    /// Errors as warnings, a change of status as info, every scan at debug.
    fn log_scan(&mut self, snapshot: &Snapshot, analysis: &Analysis) {
        for e in &snapshot.errors {
            log::warn!("scan error ({}): {}", e.stage.name(), e.message);
        }
        if self.last_status != Some(analysis.status) {
            let with_findings = analysis
                .processes
                .iter()
                .filter(|p| !p.findings.is_empty())
                .count();
            log::info!(
                "status {}: {with_findings} processes with findings, {} host findings",
                analysis.status.name(),
                analysis.host_findings.len()
            );
            self.last_status = Some(analysis.status);
        }
        log::debug!(
            "scan {} took {:?}: {} flagged sockets, {} processes listed, \
             {} fd links read, {} fd tables from the cache{}",
            self.stats.scans,
            snapshot.duration,
            snapshot.sockets.len(),
            analysis.processes.len(),
            snapshot.walk.links_read,
            snapshot.walk.processes_reused,
            if snapshot.walk.full {
                " (full walk)"
            } else {
                ""
            }
        );
    }

    fn reload(&mut self) {
        self.notifier.reloading();
        let loaded = config::load(&self.cli)
            .map_err(|e| e.to_string())
            .and_then(|new| Ok((web(&new).map_err(|e| e.to_string())?, new)));
        match loaded {
            Ok((web, new)) => {
                let new = keep_logging(&self.settings, new);
                if new.listen != self.settings.listen {
                    log::warn!(
                        "config reload: listen changed to {} but stays {} until restart",
                        addresses(&new.listen),
                        addresses(&self.settings.listen)
                    );
                }
                if web.tls.is_none() && self.shared.web().tls.is_some() {
                    log::warn!("config reload: TLS is off from now on");
                }
                log::info!("web: {}", web.describe());
                self.shared.set_web(Arc::new(web));
                let listen = std::mem::take(&mut self.settings.listen);
                self.settings = Settings { listen, ..new };
                // The BPF iterators stay loaded across a reload.
                self.collector = self.settings.collector().attributing_as(&self.collector);
                self.shared.set_interval(self.settings.interval);
                self.stats.reloads_ok += 1;
                self.stats.last_reload_ok = true;
                log::info!("config reloaded");
            }
            Err(e) => {
                self.stats.reloads_failed += 1;
                self.stats.last_reload_ok = false;
                log::error!("config reload failed, keeping the running config: {e}");
            }
        }
        self.notifier.ready(if self.stats.last_reload_ok {
            "config reloaded"
        } else {
            "config reload failed, the running config stays"
        });
    }

    fn run(mut self) {
        let mut first = true;
        loop {
            let started = Instant::now();
            self.scan_once();
            self.notifier.keep_alive();
            if first {
                // The listener was bound before this thread started.
                self.notifier.ready(&format!(
                    "first scan done, scanning every {}",
                    humantime::format_duration(self.settings.interval)
                ));
                first = false;
            }
            let requests = loop {
                // Keep-alives come from this thread, so a scan that hangs
                // lets the watchdog fire; between scans they come at half
                // the watchdog period.
                let next_scan = started + self.settings.interval;
                let wake = match self.notifier.watchdog_every() {
                    Some(every) => next_scan.min(Instant::now() + every),
                    None => next_scan,
                };
                let requests = self.control.wait(wake);
                if requests.stop || requests.reload || Instant::now() >= next_scan {
                    break requests;
                }
                self.notifier.keep_alive();
            };
            if requests.stop {
                return;
            }
            if requests.reload {
                self.reload();
            }
        }
    }
}

/// Logging is set up once, at start: a reloaded config that changes it
/// says so, and the running level and format stay (as `listen` does).
fn keep_logging(running: &Settings, new: Settings) -> Settings {
    if new.log_level != running.log_level || new.log_format != running.log_format {
        log::warn!(
            "config reload: log_level {} and log_format {} stay {} and {} until restart",
            new.log_level,
            new.log_format.name(),
            running.log_level,
            running.log_format.name()
        );
    }
    Settings {
        log_level: running.log_level.clone(),
        log_format: running.log_format,
        ..new
    }
}

/// Runs the agent until SIGTERM or SIGINT: binds the listener, starts the
/// signal and scan threads, and serves HTTP on this one.
pub fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    let web = web(&settings)?;
    let listeners = listen(&settings, &web)?;
    let notifier = Arc::new(Notifier::from_env().unwrap_or_else(|e| {
        log::warn!("not notifying systemd: {e}");
        Notifier::disabled()
    }));
    if let Some(w) = notifier.watchdog() {
        log::info!(
            "systemd watchdog every {}: keep-alives from the scan loop",
            humantime::format_duration(w)
        );
    }
    let shared = Arc::new(Shared::new(settings.interval));
    shared.set_web(Arc::new(web));
    let control = Arc::new(Control::default());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    handle_signals(control.clone(), notifier.clone(), stop_tx)?;
    let scan_loop = ScanLoop {
        cli,
        collector: settings.collector(),
        settings,
        history: History::default(),
        scan_cache: ScanCache::default(),
        stats: AgentStats {
            last_reload_ok: true,
            ..AgentStats::default()
        },
        last_status: None,
        shared: shared.clone(),
        control,
        notifier,
    };
    std::thread::Builder::new()
        .name("scan".into())
        .spawn(move || {
            // Scans yield the CPU to /metrics (and to the host's own work):
            // the scan thread and the walk threads it starts run at nice
            // SCAN_NICE. Linux applies nice per thread; a failure is harmless.
            let tid = rustix::thread::gettid();
            if let Err(e) = rustix::process::setpriority_process(Some(tid), SCAN_NICE) {
                log::debug!("could not lower the scan thread's priority: {e}");
            }
            scan_loop.run()
        })
        .context("starting the scan thread")?;
    serve(listeners, shared, stop_rx)?;
    // A scan in progress is abandoned: it holds nothing that needs cleanup.
    log::info!("stopped");
    Ok(())
}

/// The web config the settings name (plain HTTP without one).
fn web(settings: &Settings) -> Result<Web, WebConfigError> {
    match &settings.web_config {
        Some(path) => web_config::load(path),
        // No web config: plain HTTP, no authentication.
        None => Ok(Web::default()),
    }
}

/// `a, b` for the log.
fn addresses(listen: &[ListenAddr]) -> String {
    let all: Vec<String> = listen.iter().map(ToString::to_string).collect();
    all.join(", ")
}

/// The bound, non-blocking listeners; each address is logged.
fn listen(settings: &Settings, web: &Web) -> anyhow::Result<Vec<std::net::TcpListener>> {
    // std listens with a backlog of 128; a flood of connections (reconnecting
    // slowloris clients) overflows it and the kernel drops a scraper's SYN.
    let listeners = if settings.systemd_socket {
        address::inherited().context("--web-systemd-socket")?
    } else {
        address::bind(&settings.listen, LISTEN_BACKLOG)?
    };
    log::info!("web: {}", web.describe());
    for listener in &listeners {
        let bound: SocketAddr = listener.local_addr()?;
        log::info!(
            "closewatch {} listening on {}://{bound}/metrics, scanning every {}",
            env!("CARGO_PKG_VERSION"),
            web.scheme(),
            humantime::format_duration(settings.interval)
        );
    }
    Ok(listeners)
}

/// A thread that turns SIGHUP into a reload request and SIGTERM or SIGINT
/// into a stop (of the scan loop and, through `stop`, of the server).
fn handle_signals(
    control: Arc<Control>,
    notifier: Arc<Notifier>,
    stop: tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<()> {
    let mut signals =
        Signals::new([SIGTERM, SIGINT, SIGHUP]).context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if sig == SIGHUP {
                    log::info!("SIGHUP: reloading the config");
                    control.request(|r| r.reload = true);
                } else {
                    log::info!("signal {sig}: shutting down");
                    notifier.stopping();
                    control.request(|r| r.stop = true);
                    let _ = stop.send(true);
                    break;
                }
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

/// Serves HTTP on this thread (a current-thread runtime) until `stop`.
fn serve(
    listeners: Vec<std::net::TcpListener>,
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    runtime.block_on(async move {
        let listeners = listeners
            .into_iter()
            .map(tokio::net::TcpListener::from_std)
            .collect::<Result<Vec<_>, _>>()?;
        let stopped = async move {
            while !*stop.borrow_and_update() {
                if stop.changed().await.is_err() {
                    break;
                }
            }
        };
        http::serve(listeners, shared, Limits::default(), stopped).await;
        anyhow::Ok(())
    })
}
