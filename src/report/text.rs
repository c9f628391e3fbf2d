//! The text report an operator reads on an SSH session: a summary, a table
//! worst-first, then each process's findings with hints. Colour only when the
//! caller says so (a TTY without NO_COLOR).

use std::io::{self, Write};
use std::time::Duration;

use super::Report;
use crate::analyse::groups::{PeerGroup, Side};
use crate::analyse::held::PeerEnd;
use crate::analyse::hints::{count, human};
use crate::analyse::{Finding, ProcessAnalysis, Severity, Status};
use crate::model::{Freshness, ProcessDetails, ProcessInfo};

/// How the report is laid out: ANSI styling or none, and the width its
/// lines are wrapped to (the table's rows are not: a row is one line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub color: bool,
    pub width: usize,
}

impl Layout {
    /// Piped, the width is fixed so that the output is the same everywhere.
    pub const PIPED_WIDTH: usize = 100;
    /// Narrower terminals get this many columns all the same.
    pub const MIN_WIDTH: usize = 60;
}

#[derive(Clone, Copy)]
struct Style {
    on: bool,
    width: usize,
}

impl Style {
    /// Writes `text` broken at spaces into lines of at most the width: the
    /// first after `first`, the rest after `rest` (a hanging indent). A word
    /// longer than a line stays whole. ANSI sequences take no room.
    fn wrapped(&self, out: &mut dyn Write, first: &str, rest: &str, text: &str) -> io::Result<()> {
        for line in wrap(text, self.width, first, rest) {
            writeln!(out, "{line}")?;
        }
        Ok(())
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
    fn severity(&self, sev: Option<Severity>, s: &str) -> String {
        match sev {
            Some(Severity::Critical) => self.paint("1;31", s),
            Some(Severity::Warning) => self.paint("1;33", s),
            None => self.paint("32", s),
        }
    }
}

/// Columns `s` takes on a terminal: its characters but ANSI sequences.
fn columns(s: &str) -> usize {
    let mut n = 0;
    let mut in_escape = false;
    for c in s.chars() {
        match (in_escape, c) {
            (false, '\x1b') => in_escape = true,
            (true, 'm') => in_escape = false,
            (true, _) => {}
            (false, _) => n += 1,
        }
    }
    n
}

/// `text` broken at spaces into lines of at most `width` columns (see
/// [`Style::wrapped`]).
fn wrap(text: &str, width: usize, first: &str, rest: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        if !empty && columns(&line) + 1 + columns(word) > width {
            lines.push(std::mem::replace(&mut line, rest.to_string()));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    lines.push(line);
    lines
}

fn status_severity(s: Status) -> Option<Severity> {
    match s {
        Status::Ok => None,
        Status::Warning => Some(Severity::Warning),
        Status::Critical => Some(Severity::Critical),
    }
}

fn upper(sev: Option<Severity>) -> &'static str {
    match sev {
        Some(Severity::Critical) => "CRITICAL",
        Some(Severity::Warning) => "WARNING",
        None => "OK",
    }
}

/// Cuts `s` to `max` characters, marking the cut.
fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

fn pct(part: u64, whole: u64) -> String {
    let p = part as f64 * 100.0 / whole.max(1) as f64;
    if p > 0.0 && p < 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

fn fds_cell(p: &ProcessInfo, growing: bool) -> String {
    let arrow = if growing { " ↑" } else { "" };
    match p.fds.limit {
        Some(limit) => format!("{}/{} {}{arrow}", p.fds.open, limit, pct(p.fds.open, limit)),
        None => format!("{}/unlimited{arrow}", p.fds.open),
    }
}

/// `stale/total (oldest)`, or `-` when there are none.
fn pair(stale: u64, total: u64, oldest: Option<Duration>) -> String {
    match (total, oldest) {
        (0, _) => "-".to_string(),
        (_, Some(age)) => format!("{stale}/{total} ({})", human(age)),
        (_, None) => format!("{stale}/{total}"),
    }
}

struct Row {
    severity: Option<Severity>,
    cells: [String; 7],
}

const HEADERS: [&str; 7] = [
    "PID",
    "COMM",
    "UNIT",
    "CLOSE_WAIT",
    "FIN_WAIT_2",
    "FDS/LIMIT",
    "TOP PEER",
];

fn row(p: &ProcessAnalysis, info: &ProcessInfo, details: Option<&ProcessDetails>) -> Row {
    let s = &p.sockets;
    let mut close_wait = pair(s.close_wait_stale, s.close_wait, s.oldest_close_wait);
    if s.close_wait_unaccepted > 0 {
        close_wait = format!("{close_wait} +{} queued", s.close_wait_unaccepted);
    }
    let top_peer = p.peer_groups.first().map_or_else(
        || "-".to_string(),
        |g| match g.side {
            Side::Server { local } => format!("server :{} ×{}", local.port(), g.count),
            Side::Client { remote } => format!("{remote} ×{}", g.count),
        },
    );
    Row {
        severity: p.severity(),
        cells: [
            info.key.pid.to_string(),
            fit(&info.comm, 16),
            fit(unit_cell(details), 32),
            close_wait,
            pair(s.fin_wait2_stale, s.fin_wait2, s.oldest_fin_wait2),
            fds_cell(info, p.growth.is_some()),
            top_peer,
        ],
    }
}

/// A process's unit, `-` for none, `?` when its cgroup could not be read.
fn unit_cell(details: Option<&ProcessDetails>) -> &str {
    match details {
        Some(d) if d.unit_error.is_some() => "?",
        Some(d) => d.unit.as_deref().unwrap_or("-"),
        None => "-",
    }
}

/// The table, its columns as wide as their widest cell, one space apart
/// under 100 columns (two from 100 on); the last cell is cut to what is
/// left of the width (a row is never wrapped).
fn table(out: &mut dyn Write, style: Style, rows: &[Row]) -> io::Result<()> {
    let mut widths = HEADERS.map(|h| h.chars().count());
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.cells.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let gap = if style.width < Layout::PIPED_WIDTH {
        1
    } else {
        2
    };
    let last = widths.len() - 1;
    let before_last: usize = widths[..last].iter().map(|w| w + gap).sum();
    let room = style.width.saturating_sub(before_last).max(12);
    let line = |cells: &[String; 7]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
            if i == last {
                l.push_str(&fit(c, room));
            } else {
                l.push_str(c);
                l.push_str(&" ".repeat(w - c.chars().count() + gap));
            }
        }
        l
    };
    writeln!(out, "{}", style.bold(&line(&HEADERS.map(String::from))))?;
    for r in rows {
        let text = line(&r.cells);
        let text = if r.severity.is_some() {
            style.severity(r.severity, &text)
        } else {
            text
        };
        writeln!(out, "{text}")?;
    }
    Ok(())
}

/// The summary: a headline, then one labelled line for each part of the
/// host that has something to say.
fn summary(out: &mut dyn Write, style: Style, report: &Report<'_>) -> io::Result<()> {
    let snap = report.snapshot;
    let a = report.analysis;
    style.wrapped(out, "", "  ", &headline(style, report))?;
    let states: Vec<String> = a
        .tcp_states
        .named()
        .filter(|(_, n)| *n > 0)
        .map(|(name, n)| format!("{n} {name}"))
        .collect();
    if states.is_empty() {
        labelled(out, style, "tcp", &["no sockets".to_string()])?;
    } else {
        labelled(out, style, "tcp", &[states.join(", ")])?;
    }
    labelled(out, style, "netns", &namespaces(style, snap))?;
    if let (Some(open), Some(max)) = (snap.host.open_fds, snap.host.max_fds) {
        labelled(
            out,
            style,
            "host fds",
            &[format!("{open} of {max} ({})", pct(open, max))],
        )?;
    }
    labelled(out, style, "no owner", &unowned(a))?;
    labelled(out, style, "ports", &busiest_ports(a))?;
    labelled(out, style, "skipped", &skipped(snap))?;
    labelled(out, style, "unread", &unread(report))?;
    labelled(out, style, "unix", &unix_unknown(snap))?;
    labelled(out, style, "dead", &dead_unknown(snap))?;
    if !a.attribution_complete {
        let warning = attribution_warning(report);
        for line in wrap(&warning, style.width, "  ", "  ") {
            writeln!(out, "{}", style.severity(Some(Severity::Warning), &line))?;
        }
    }
    Ok(())
}

/// Stale sockets without an owner while processes could not be read, and
/// what those processes need (only what the access rules say: see
/// `analyse::access`).
fn attribution_warning(report: &Report<'_>) -> String {
    let a = report.analysis;
    if report.snapshot.owners_unknown() {
        return format!(
            "ATTRIBUTION INCOMPLETE: {} without a known owner: no owner was looked up (see errors)",
            count(
                a.unattributed.unknown_owner_stale(),
                "stale socket",
                "stale sockets"
            )
        );
    }
    let remedy = a
        .skipped
        .as_ref()
        .and_then(crate::analyse::access::Skipped::summary)
        .unwrap_or_else(|| "see skipped".to_string());
    format!(
        "ATTRIBUTION INCOMPLETE: {} without a known owner while {} could not be read; {remedy}",
        count(
            a.unattributed.unknown_owner_stale(),
            "stale socket",
            "stale sockets"
        ),
        count(
            report.snapshot.skipped.permission_denied,
            "process",
            "processes"
        ),
    )
}

/// The destination using the largest share of its ephemeral range.
fn busiest_ports(a: &crate::analyse::Analysis) -> Vec<String> {
    a.ports
        .first()
        .map(|p| {
            format!(
                "busiest: {} → {} in netns {}: {} of {} ephemeral ports ({}), {} in TIME_WAIT",
                p.local_ip,
                p.remote,
                p.netns,
                p.in_use,
                p.range_size,
                pct(p.in_use, p.range_size),
                p.time_wait
            )
        })
        .into_iter()
        .collect()
}

fn unix_unknown(snap: &crate::model::Snapshot) -> Vec<String> {
    (snap.unix_check == Freshness::Unknown)
        .then(|| "not dumped: no UNIX_DIAG answer in a namespace".to_string())
        .into_iter()
        .collect()
}

fn dead_unknown(snap: &crate::model::Snapshot) -> Vec<String> {
    (snap.dead == Freshness::Unknown)
        .then(|| {
            "not looked for: a network namespace could not be dumped, so its sockets would \
             look dead"
                .to_string()
        })
        .into_iter()
        .collect()
}

/// `  label     part; part`, or nothing when there are no parts.
fn labelled(out: &mut dyn Write, style: Style, label: &str, parts: &[String]) -> io::Result<()> {
    if parts.is_empty() {
        return Ok(());
    }
    style.wrapped(
        out,
        &format!("  {label:<10}"),
        &" ".repeat(12),
        &parts.join("; "),
    )
}

/// Status, host, time and scan duration, and how many processes hold what.
fn headline(style: Style, report: &Report<'_>) -> String {
    let snap = report.snapshot;
    let a = report.analysis;
    let sev = status_severity(a.status);
    let mut head = vec![style.severity(sev, upper(sev))];
    if !snap.host.hostname.is_empty() {
        head.push(snap.host.hostname.clone());
    }
    if !snap.host.kernel.is_empty() {
        head.push(format!("Linux {}", snap.host.kernel));
    }
    head.push(humantime::format_rfc3339_seconds(snap.scanned_at).to_string());
    head.push(match snap.attribution {
        crate::model::Attribution::Bpf => format!("scan {} (BPF)", human(snap.duration)),
        crate::model::Attribution::Procfs => format!("scan {}", human(snap.duration)),
    });
    let flagged = a
        .processes
        .iter()
        .filter(|p| p.sockets.flagged() > 0)
        .count() as u64;
    let with_findings = a
        .processes
        .iter()
        .filter(|p| !p.findings.is_empty())
        .count() as u64;
    format!(
        "closewatch: {} — {}, {} with findings",
        head.join(" · "),
        count(
            flagged,
            "process holds CLOSE_WAIT/FIN_WAIT_2 sockets",
            "processes hold CLOSE_WAIT/FIN_WAIT_2 sockets"
        ),
        with_findings,
    )
}

/// The namespaces scanned, when there is more than one or one was not.
fn namespaces(style: Style, snap: &crate::model::Snapshot) -> Vec<String> {
    if snap.namespaces.len() <= 1
        && snap.unscanned_netns.is_empty()
        && snap.netns_unknown_processes == 0
    {
        return Vec::new();
    }
    let mut ns = vec![count(
        snap.namespaces.len() as u64,
        "network namespace scanned",
        "network namespaces scanned",
    )];
    for u in &snap.unscanned_netns {
        ns.push(style.severity(
            Some(Severity::Warning),
            &format!("netns {} NOT scanned: {}", u.id, u.message),
        ));
    }
    if snap.netns_unknown_processes > 0 {
        ns.push(style.severity(
            Some(Severity::Warning),
            &format!(
                "the namespace of {} could not be read (see skipped)",
                count(snap.netns_unknown_processes, "process", "processes")
            ),
        ));
    }
    ns
}

/// Sockets no process is blamed for, by why.
fn unowned(a: &crate::analyse::Analysis) -> Vec<String> {
    let u = &a.unattributed;
    let mut unowned = Vec::new();
    if u.fin_wait2_orphans > 0 {
        unowned.push(format!(
            "{} (closed by their program; the kernel times them out)",
            count(
                u.fin_wait2_orphans,
                "FIN_WAIT_2 orphan",
                "FIN_WAIT_2 orphans"
            )
        ));
    }
    if u.close_wait_unaccepted > 0 {
        unowned.push(format!(
            "{} in accept queues",
            count(
                u.close_wait_unaccepted,
                "CLOSE_WAIT connection",
                "CLOSE_WAIT connections"
            )
        ));
    }
    let unknown = u.close_wait_unknown_owner + u.fin_wait2_unknown_owner;
    if unknown > 0 {
        unowned.push(format!(
            "{} whose owner was not found",
            count(unknown, "socket", "sockets")
        ));
    }
    unowned
}

/// Reads that failed and what each leaves unknown.
fn unread(report: &Report<'_>) -> Vec<String> {
    let u = &report.snapshot.unread;
    let mut parts = Vec::new();
    if let Some(e) = &u.run_netns {
        parts.push(format!(
            "{e} (namespaces made with `ip netns add` may be missing)"
        ));
    }
    if u.fd_stat > 0 {
        parts.push(format!(
            "{} whose file may be deleted could not be stat-ed (size unknown)",
            count(u.fd_stat, "fd", "fds")
        ));
    }
    if u.port_range > 0 {
        parts.push(format!(
            "the ephemeral port range of {} could not be read (ports not judged)",
            count(u.port_range, "namespace", "namespaces")
        ));
    }
    if u.netstat > 0 {
        parts.push(format!(
            "the listen counters of {} could not be read",
            count(u.netstat, "namespace", "namespaces")
        ));
    }
    let units = report
        .details
        .iter()
        .flatten()
        .filter(|d| d.unit_error.is_some())
        .count() as u64;
    if units > 0 {
        parts.push(format!(
            "the unit of {} could not be read (UNIT ?)",
            count(units, "process", "processes")
        ));
    }
    parts
}

/// Processes the walk could not read, by why.
fn skipped(snap: &crate::model::Snapshot) -> Vec<String> {
    let sk = &snap.skipped;
    let mut skipped = Vec::new();
    for (n, why) in [
        (sk.permission_denied, "not readable (permission denied)"),
        (sk.vanished, "exited during the scan"),
        (sk.failed, "failed to read (see the log)"),
    ] {
        if n > 0 {
            skipped.push(format!("{} {why}", count(n, "process", "processes")));
        }
    }
    skipped
}

/// The processes the scan could not read, by pid: what was refused, why,
/// and what would let closewatch read them (at most `MAX_SKIPPED`).
fn skipped_details(out: &mut dyn Write, style: Style, report: &Report<'_>) -> io::Result<()> {
    let Some(skipped) = report.analysis.skipped.as_ref() else {
        return Ok(());
    };
    if skipped.processes.is_empty() {
        return Ok(());
    }
    writeln!(out)?;
    writeln!(
        out,
        "{} {} whose fd table or network namespace could not be read",
        style.bold("SKIPPED"),
        count(skipped.processes.len() as u64, "process", "processes")
    )?;
    for p in skipped.processes.iter().take(super::MAX_SKIPPED) {
        let what = format!("pid {} ({}): {}", p.process.pid, p.process.comm, p.reason());
        style.wrapped(out, "  ", "    ", &what)?;
        let indent = " ".repeat(11);
        style.wrapped(out, "    cause  ", &indent, &p.diagnosis.cause())?;
        style.wrapped(out, "    remedy ", &indent, &p.diagnosis.remedy())?;
    }
    let more = skipped.processes.len().saturating_sub(super::MAX_SKIPPED);
    if more > 0 {
        writeln!(
            out,
            "  … and {more} more (`--pid PID` names any one of them)"
        )?;
    }
    if skipped.vanished > 0 {
        writeln!(
            out,
            "  ({} before {} could be examined)",
            count(skipped.vanished, "more exited", "more exited"),
            if skipped.vanished == 1 { "it" } else { "they" }
        )?;
    }
    Ok(())
}

/// A block for each process with a finding (every listed one with `--pid`).
fn details(
    out: &mut dyn Write,
    style: Style,
    report: &Report<'_>,
    listed: &[usize],
) -> io::Result<()> {
    let snap = report.snapshot;
    for &i in listed {
        let p = &report.analysis.processes[i];
        if p.findings.is_empty() && report.settings.only_pids.is_none() {
            continue;
        }
        let d = report.details.get(i).and_then(Option::as_ref);
        if let Some(info) = snap.processes.get(p.index) {
            process(out, style, p, info, d, report.settings, &snap.processes)?;
        }
    }
    Ok(())
}

/// One process: who it is, its fds and growth, its findings, its peers.
fn process(
    out: &mut dyn Write,
    style: Style,
    p: &ProcessAnalysis,
    info: &ProcessInfo,
    d: Option<&ProcessDetails>,
    settings: &crate::analyse::Settings,
    processes: &[ProcessInfo],
) -> io::Result<()> {
    heading(out, style, p, info, d)?;
    fd_lines(out, style, p, info)?;
    lifecycle_lines(out, style, p, settings)?;
    for f in &p.findings {
        finding(out, style, f)?;
    }
    peers(out, style, &p.peer_groups, processes)
}

/// Severity, pid, comm and unit; the command line (or the executable).
fn heading(
    out: &mut dyn Write,
    style: Style,
    p: &ProcessAnalysis,
    info: &ProcessInfo,
    d: Option<&ProcessDetails>,
) -> io::Result<()> {
    let sev = p.severity();
    let unit = match d {
        Some(ProcessDetails {
            unit_error: Some(e),
            ..
        }) => format!(" (unit unknown: {e})"),
        Some(ProcessDetails { unit: Some(u), .. }) => format!(" ({u})"),
        _ => String::new(),
    };
    writeln!(out)?;
    writeln!(
        out,
        "{} {} {}{}",
        style.severity(sev, upper(sev)),
        style.bold(&info.key.pid.to_string()),
        style.bold(&info.comm),
        unit
    )?;
    if let Some(d) = d {
        if !d.cmdline.is_empty() {
            // On a TTY a long command line is cut; piped, it is wrapped.
            let cmd = fit(&d.cmdline, 200);
            style.wrapped(out, "  cmd    ", &" ".repeat(9), &cmd)?;
        } else if let Some(exe) = &d.exe {
            writeln!(out, "  exe    {exe}")?;
        }
    }
    Ok(())
}

/// The fd breakdown, and the growth when there is one.
fn fd_lines(
    out: &mut dyn Write,
    style: Style,
    p: &ProcessAnalysis,
    info: &ProcessInfo,
) -> io::Result<()> {
    let fds = format!(
        "{} ({}, {}, {}, {}, {}{})",
        fds_cell(info, p.growth.is_some()),
        count(info.fds.sockets, "socket", "sockets"),
        count(info.fds.files, "file", "files"),
        count(info.fds.pipes, "pipe", "pipes"),
        count(info.fds.anon_inodes, "anon inode", "anon inodes"),
        count(info.fds.deleted_files, "deleted file", "deleted files"),
        if info.fds_walked {
            ""
        } else {
            "; fd table not readable"
        },
    );
    style.wrapped(out, "  fds    ", DETAIL, &fds)?;
    if let Some(g) = &p.growth {
        let eta = p
            .fd_exhaustion
            .map_or_else(String::new, |d| format!(", limit in {}", human(d)));
        let growth = format!(
            "+{} fds in {} ({:.1}/min){eta}",
            g.grew_by,
            human(g.over),
            g.per_second * 60.0
        );
        style.wrapped(out, "  growth ", DETAIL, &growth)?;
    }
    Ok(())
}

/// Idle connections, UNIX and dead sockets, full listeners: one line each
/// the process has any of.
fn lifecycle_lines(
    out: &mut dyn Write,
    style: Style,
    p: &ProcessAnalysis,
    settings: &crate::analyse::Settings,
) -> io::Result<()> {
    let s = &p.sockets;
    if s.idle_established > 0 {
        let gone = match s.idle_peer_gone {
            0 => String::new(),
            n => format!(" ({n} to a local peer that is gone)"),
        };
        let idle = format!(
            "{} silent ≥ {}, no keepalive{gone}, longest {}",
            count(
                s.idle_established,
                "ESTABLISHED connection",
                "ESTABLISHED connections"
            ),
            human(settings.idle_age),
            human(s.oldest_idle.unwrap_or_default()),
        );
        style.wrapped(out, "  idle   ", DETAIL, &idle)?;
    }
    let held = |what: String, stale: u64, oldest: Option<Duration>| {
        format!(
            "{what}, {stale} held ≥ {}, oldest {}",
            human(settings.dead_socket_age),
            human(oldest.unwrap_or_default())
        )
    };
    if s.unix_close_wait > 0 {
        let what = count(
            s.unix_close_wait,
            "UNIX stream socket",
            "UNIX stream sockets",
        ) + " whose peer closed";
        let line = held(what, s.unix_close_wait_stale, s.oldest_unix_close_wait);
        style.wrapped(out, "  unix   ", DETAIL, &line)?;
    }
    if s.dead > 0 {
        let what = count(s.dead, "TCP socket", "TCP sockets")
            + " in no TCP table (reset or never connected)";
        let line = held(what, s.dead_stale, s.oldest_dead);
        style.wrapped(out, "  dead   ", DETAIL, &line)?;
    }
    for q in &p.listeners {
        writeln!(
            out,
            "  listen {} queue {} of backlog {}",
            q.local, q.queue, q.backlog
        )?;
    }
    Ok(())
}

/// The top peers (and their other end when it is on this host), and how
/// many more there are.
fn peers(
    out: &mut dyn Write,
    style: Style,
    groups: &[PeerGroup],
    processes: &[ProcessInfo],
) -> io::Result<()> {
    const SHOWN: usize = 5;
    for g in groups.iter().take(SHOWN) {
        let mut queued = String::new();
        if g.fin_unread > 0 {
            queued.push_str(&format!(", FIN not read ×{}", g.fin_unread));
        }
        if g.unread_bytes > 0 {
            queued.push_str(&format!(", {} B unread", g.unread_bytes));
        }
        let (label, addr) = match g.side {
            Side::Server { local } => ("server", local),
            Side::Client { remote } => ("peer  ", remote),
        };
        let other = match g.side {
            Side::Server { .. } => clients(g),
            Side::Client { .. } => local_end(g.local, processes),
        };
        let line = format!(
            "{addr} {} ×{}, oldest {}{queued}{other}",
            g.state,
            g.count,
            human(g.oldest),
        );
        style.wrapped(out, &format!("  {label} "), DETAIL, &line)?;
    }
    if groups.len() > SHOWN {
        writeln!(out, "  peer   … and {} more", groups.len() - SHOWN)?;
    }
    Ok(())
}

/// ` ← from 10.0.0.1 ×4, 10.0.0.2 ×3 and 5 more hosts`: a server group's
/// client hosts.
fn clients(g: &PeerGroup) -> String {
    let hosts: Vec<String> = g
        .hosts
        .iter()
        .map(|(ip, n, _)| format!("{ip} ×{n}"))
        .collect();
    let more = match g.hosts_omitted {
        0 => String::new(),
        n => format!(" and {}", count(n as u64, "more host", "more hosts")),
    };
    format!(" ← from {}{more}", hosts.join(", "))
}

/// ` ← pid N (comm) in STATE`: a client group's other end on this host.
fn local_end(end: Option<PeerEnd>, processes: &[ProcessInfo]) -> String {
    match end {
        Some(PeerEnd::Owned { process, state }) => processes
            .get(process)
            .map(|o| format!(" ← pid {} ({}) in {state}", o.key.pid, o.comm))
            .unwrap_or_default(),
        Some(PeerEnd::Orphan { state }) => format!(" ← the peer closed ({state}, no owner)"),
        Some(PeerEnd::Unowned { state }) => format!(" ← {state}, owner not readable"),
        Some(PeerEnd::Gone) => " ← the peer is gone".to_string(),
        None => String::new(),
    }
}

/// Indent of a process's detail lines after the first.
const DETAIL: &str = "         ";

/// One finding: severity, check and message, then the hint.
fn finding(out: &mut dyn Write, style: Style, f: &Finding) -> io::Result<()> {
    let head = format!("{} {}: {}", f.severity.name(), f.check, f.message);
    for (i, line) in wrap(&head, style.width, "  ", "    ")
        .into_iter()
        .enumerate()
    {
        let line = match line.strip_prefix("  ").filter(|_| i == 0) {
            // The severity word, painted.
            Some(rest) => format!(
                "  {}{}",
                style.severity(Some(f.severity), f.severity.name()),
                &rest[f.severity.name().len()..]
            ),
            None => line,
        };
        writeln!(out, "{line}")?;
    }
    let hint = format!("hint: {}", f.hint);
    for line in wrap(&hint, style.width, "    ", "          ") {
        writeln!(out, "{}", style.dim(&line))?;
    }
    Ok(())
}

/// What the report says when the analysis kept no process: never that no
/// process holds a socket whose owner is merely unknown.
fn nobody(report: &Report<'_>) -> String {
    let u = &report.analysis.unattributed;
    let unknown = u.close_wait_unknown_owner + u.fin_wait2_unknown_owner;
    if unknown == 0 {
        return "No process holds CLOSE_WAIT or FIN_WAIT_2 sockets and none is near its fd \
                limit."
            .to_string();
    }
    let snap = report.snapshot;
    let unreadable = snap.skipped.permission_denied;
    let why = if snap.owners_unknown() {
        "no owner was looked up (see the errors above)".to_string()
    } else if unreadable > 0 {
        format!(
            "{} could not be read (see \"skipped\" above)",
            count(unreadable, "process", "processes")
        )
    } else {
        "they were closed between the socket dump and the /proc walk".to_string()
    };
    format!(
        "No readable process holds CLOSE_WAIT or FIN_WAIT_2 sockets; {} {} no known owner: {why}.",
        count(unknown, "socket", "sockets"),
        if unknown == 1 { "has" } else { "have" },
    )
}

/// One line for the processes the table leaves out: those with findings
/// past `--top`, and those without a finding (`--all` lists them).
fn unlisted(report: &Report<'_>, listed: &[usize]) -> Vec<String> {
    let a = report.analysis;
    let shown: std::collections::HashSet<usize> = listed.iter().copied().collect();
    let rest: Vec<&ProcessAnalysis> = (0..a.processes.len())
        .filter(|i| !shown.contains(i))
        .map(|i| &a.processes[i])
        .collect();
    let (found, quiet): (Vec<&ProcessAnalysis>, Vec<&ProcessAnalysis>) =
        rest.into_iter().partition(|p| !p.findings.is_empty());
    let mut lines = Vec::new();
    if !found.is_empty() {
        lines.push(format!(
            "… {} with findings past --top (a larger --top lists them)",
            count(found.len() as u64, "more process", "more processes")
        ));
    }
    if !quiet.is_empty() {
        let close_wait: u64 = quiet.iter().map(|p| p.sockets.close_wait).sum();
        let fin_wait2: u64 = quiet.iter().map(|p| p.sockets.fin_wait2).sum();
        let oldest = quiet
            .iter()
            .flat_map(|p| [p.sockets.oldest_close_wait, p.sockets.oldest_fin_wait2])
            .flatten()
            .max();
        let what = match (close_wait + fin_wait2, oldest) {
            (0, _) => String::new(),
            (_, Some(age)) => format!(
                " hold {close_wait} CLOSE_WAIT and {fin_wait2} FIN_WAIT_2 sockets (oldest {}),",
                human(age)
            ),
            (_, None) => {
                format!(" hold {close_wait} CLOSE_WAIT and {fin_wait2} FIN_WAIT_2 sockets,")
            }
        };
        let verb = if what.is_empty() { " have" } else { "" };
        let (lead, one, many) = if listed.is_empty() {
            ("", "process", "processes")
        } else {
            ("… ", "more process", "more processes")
        };
        lines.push(format!(
            "{lead}{}{what}{verb} no finding — --all lists them",
            count(quiet.len() as u64, one, many),
        ));
    }
    lines
}

/// Writes the text report laid out as `layout` says.
pub fn write(report: &Report<'_>, out: &mut dyn Write, layout: Layout) -> io::Result<()> {
    let style = Style {
        on: layout.color,
        width: layout.width,
    };
    summary(out, style, report)?;
    let a = report.analysis;
    for f in &a.host_findings {
        finding(out, style, f)?;
    }
    writeln!(out)?;
    if a.processes.is_empty() {
        style.wrapped(out, "", "", &nobody(report))?;
    } else {
        let listed = report.listed();
        let rows: Vec<Row> = listed
            .iter()
            .filter_map(|&i| {
                let p = &a.processes[i];
                let d = report.details.get(i).and_then(Option::as_ref);
                Some(row(p, report.snapshot.processes.get(p.index)?, d))
            })
            .collect();
        if !rows.is_empty() {
            table(out, style, &rows)?;
        }
        for line in unlisted(report, &listed) {
            style.wrapped(out, "", "  ", &line)?;
        }
        details(out, style, report, &listed)?;
    }
    skipped_details(out, style, report)?;
    for e in report.errors {
        writeln!(out)?;
        let error = format!("{}: {}", e.stage.name(), e.message);
        let first = format!("{} ", style.severity(Some(Severity::Critical), "ERROR"));
        style.wrapped(out, &first, "  ", &error)?;
    }
    Ok(())
}
