//! Property tests of the config loader: no text makes `parse_str` or
//! `merge` panic; an error points inside the text; settings that pass are
//! valid and survive `render` (what `--check-config` prints) unchanged; and a
//! generated config is read back value for value.

use crate::export::http::address::ListenAddr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::*;

const PATH: &str = "/etc/closewatch/closewatch.toml";

use super::tests::FULL;

/// Reads `text` as the file at PATH would be, checking everything the
/// loader promises about the outcome. Returns the settings, if valid.
fn check_config(text: &str) -> Result<Option<Settings>, TestCaseError> {
    let path = Path::new(PATH);
    let file = match parse_str(text, path) {
        Ok(file) => file,
        Err(ConfigError::Syntax {
            path: p,
            line,
            column,
            ..
        }) => {
            prop_assert_eq!(p, path);
            // The position is inside the text (or just past its end).
            let lines: Vec<&str> = text.split('\n').collect();
            prop_assert!(
                line >= 1 && line <= lines.len(),
                "line {} of {}",
                line,
                lines.len()
            );
            let width = lines[line - 1].chars().count();
            prop_assert!(
                column >= 1 && column <= width + 1,
                "column {} of {}",
                column,
                width
            );
            return Ok(None);
        }
        Err(e) => {
            return Err(TestCaseError::fail(format!(
                "parsing text failed with {e:?}"
            )))
        }
    };
    let settings = match merge(file, Some(path.to_path_buf()), &Cli::default()) {
        Ok(s) => s,
        Err(ConfigError::Invalid { origin, .. }) => {
            prop_assert_eq!(origin, PATH);
            return Ok(None);
        }
        Err(e) => return Err(TestCaseError::fail(format!("merging failed with {e:?}"))),
    };
    check_settings(&settings)?;
    Ok(Some(settings))
}

/// Settings that passed validation are valid, and render to a config file
/// that loads back to the very same settings.
fn check_settings(s: &Settings) -> Result<(), TestCaseError> {
    prop_assert_eq!(s.config_path.as_deref(), Some(Path::new(PATH)));
    prop_assert!(s.interval >= Duration::from_millis(100));
    prop_assert!(s.fd_growth_window >= Duration::from_secs(10));
    prop_assert!(s.max_processes >= 1);
    prop_assert!(s.thresholds.validate().is_ok());
    let text = render(s);
    let again = parse_str(&text, Path::new(PATH))
        .and_then(|file| merge(file, Some(PathBuf::from(PATH)), &Cli::default()));
    match again {
        Ok(again) => prop_assert_eq!(&again, s, "{}", text),
        Err(e) => prop_assert!(false, "rendered settings do not load: {:?}\n{}", e, text),
    }
    Ok(())
}

/// TOML-ish pieces, to get past the first syntax error now and then.
const TOKENS: [&str; 32] = [
    "\n",
    " ",
    "=",
    "[",
    "]",
    "[[",
    "{",
    "}",
    ",",
    ".",
    "\"",
    "'",
    "\"\"\"",
    "#",
    "0",
    "-1",
    "1e400",
    "nan",
    "inf",
    "18446744073709551616",
    "\"1s\"",
    "\"0s\"",
    "\"99999999999999999999y\"",
    "\"1 GiB\"",
    "\"16 EiB\"",
    "interval",
    "max_processes",
    "[thresholds]",
    "fd_utilization",
    "deleted_open_files",
    "warning",
    "\u{fffd}é\u{1f600}",
];

#[derive(Clone, Debug)]
enum Edit {
    Truncate(Index),
    Delete(Index, usize),
    Insert(Index, String),
}

/// Applies an edit at character boundaries (the text stays a `str`).
fn apply(text: &mut String, edit: &Edit) {
    let boundaries: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let at = |i: &Index| boundaries[i.index(boundaries.len())];
    match edit {
        Edit::Truncate(i) => text.truncate(at(i)),
        Edit::Delete(i, n) => {
            let start = i.index(boundaries.len());
            let end = (start + n).min(boundaries.len() - 1);
            text.replace_range(boundaries[start]..boundaries[end], "");
        }
        Edit::Insert(i, s) => text.insert_str(at(i), s),
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), 1usize..30).prop_map(|(i, n)| Edit::Delete(i, n)),
        (
            any::<Index>(),
            prop_oneof![select(TOKENS.to_vec()).prop_map(str::to_string), ".{1,8}"]
        )
            .prop_map(|(i, s)| Edit::Insert(i, s)),
    ]
}

fn toml_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        vec(select(TOKENS.to_vec()), 0..40).prop_map(|t| t.concat()),
        (Just(FULL.to_string()), vec(edit(), 1..6)).prop_map(|(mut text, edits)| {
            for e in &edits {
                apply(&mut text, e);
            }
            text
        }),
    ]
}

#[test]
fn the_full_sample_passes_the_checks() {
    let s = check_config(FULL).expect("checks").expect("valid");
    assert_eq!(s.max_processes, 20);
    assert!(check_config("max_processes = 0").expect("checks").is_none());
    assert!(check_config("interval = ").expect("checks").is_none());
}

#[test]
fn every_truncation_of_the_full_sample() {
    for (at, _) in FULL.char_indices() {
        if let Err(e) = check_config(&FULL[..at]) {
            panic!("cut at {at}: {e}");
        }
    }
}

/// A config generated value by value.
#[derive(Clone, Debug)]
struct Generated {
    format: &'static str,
    listen: std::net::SocketAddr,
    interval: Duration,
    ages: (Duration, Duration),
    max_processes: usize,
    window: Duration,
    proc_root: String,
    log_level: &'static str,
    counts: [(u64, u64); 3],
    fractions: [(f64, f64); 2],
    exhaustion: (Duration, Duration),
    /// Bytes, and whether to write them as a string with a unit.
    deleted: ((u64, u64), bool),
}

/// Durations from zero to centuries, with sub-second parts.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (0u64..100_000, 0u32..1000)
            .prop_map(|(s, ms)| Duration::from_secs(s) + Duration::from_millis(u64::from(ms))),
        (0u64..10_000_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn fraction() -> impl Strategy<Value = f64> {
    prop_oneof![
        4 => 0.0f64..1.5,
        1 => any::<f64>(),
    ]
}

fn generated() -> impl Strategy<Value = Generated> {
    let count = || prop_oneof![0u64..200, 0u64..=i64::MAX as u64];
    (
        (
            select(vec!["text", "json"]),
            (
                prop_oneof![
                    any::<Ipv4Addr>().prop_map(IpAddr::V4),
                    any::<Ipv6Addr>().prop_map(IpAddr::V6),
                ],
                any::<u16>(),
            )
                .prop_map(|(ip, port)| std::net::SocketAddr::new(ip, port)),
            duration(),
            (duration(), duration()),
            prop_oneof![0usize..3, 0usize..=i64::MAX as usize],
            duration(),
        ),
        (
            "[ -~]{0,30}",
            select(vec![
                "error", "warn", "info", "debug", "trace", "off", "INFO", "loud",
            ]),
            [(count(), count()), (count(), count()), (count(), count())],
            [(fraction(), fraction()), (fraction(), fraction())],
            (duration(), duration()),
            (
                (0u64..=i64::MAX as u64, 0u64..=i64::MAX as u64),
                any::<bool>(),
            ),
        ),
    )
        .prop_map(
            |(
                (format, listen, interval, ages, max_processes, window),
                (proc_root, log_level, counts, fractions, exhaustion, deleted),
            )| Generated {
                format,
                listen,
                interval,
                ages,
                max_processes,
                window,
                proc_root,
                log_level,
                counts,
                fractions,
                exhaustion,
                deleted,
            },
        )
}

/// A TOML string literal (escaped by the toml crate itself).
fn quoted(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn float(x: f64) -> String {
    toml::Value::Float(x).to_string()
}

impl Generated {
    fn text(&self) -> String {
        let d = |d: Duration| quoted(&humantime::format_duration(d).to_string());
        let bytes = |b: u64| {
            if self.deleted.1 {
                quoted(&format!("{b} B"))
            } else {
                b.to_string()
            }
        };
        let [stale, fin, unaccepted] = self.counts;
        let [fd, host] = self.fractions;
        format!(
            "format = {}\nlisten = {}\ninterval = {}\nclose_wait_age = {}\n\
             fin_wait2_age = {}\nmax_processes = {}\nfd_growth_window = {}\n\
             proc_root = {}\nlog_level = {}\n\n[thresholds]\n\
             close_wait_stale = {{ warning = {}, critical = {} }}\n\
             fin_wait2_stale = {{ warning = {}, critical = {} }}\n\
             close_wait_unaccepted = {{ warning = {}, critical = {} }}\n\
             fd_utilization = {{ warning = {}, critical = {} }}\n\
             host_fd_utilization = {{ warning = {}, critical = {} }}\n\
             fd_exhaustion = {{ warning = {}, critical = {} }}\n\
             deleted_open_files = {{ warning = {}, critical = {} }}\n",
            quoted(self.format),
            quoted(&self.listen.to_string()),
            d(self.interval),
            d(self.ages.0),
            d(self.ages.1),
            self.max_processes,
            d(self.window),
            quoted(&self.proc_root),
            quoted(self.log_level),
            stale.0,
            stale.1,
            fin.0,
            fin.1,
            unaccepted.0,
            unaccepted.1,
            float(fd.0),
            float(fd.1),
            float(host.0),
            float(host.1),
            d(self.exhaustion.0),
            d(self.exhaustion.1),
            bytes(self.deleted.0 .0),
            bytes(self.deleted.0 .1),
        )
    }

    /// The rules of the config's documentation, from the values.
    fn valid(&self) -> bool {
        let fraction_ok = |(w, c): (f64, f64)| w > 0.0 && w <= c;
        self.interval >= Duration::from_millis(100)
            && self.window >= Duration::from_secs(10)
            && self.max_processes >= 1
            && self.log_level != "loud"
            && self.counts.iter().all(|(w, c)| w <= c)
            && self.deleted.0 .0 <= self.deleted.0 .1
            && self.fractions.iter().all(|&l| fraction_ok(l))
            && self.exhaustion.1 <= self.exhaustion.0
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn any_text_loads_or_is_rejected_with_a_position(text in toml_text()) {
        check_config(&text)?;
    }

    /// Every value written is the value read; the settings are valid exactly
    /// when the documented rules hold.
    #[test]
    fn generated_configs_read_back_value_for_value(g in generated()) {
        let text = g.text();
        let file = parse_str(&text, Path::new(PATH));
        prop_assert!(file.is_ok(), "{:?}\n{}", file, text);
        let settings = check_config(&text)?;
        prop_assert_eq!(settings.is_some(), g.valid(), "{}", text);
        if let Some(s) = settings {
            prop_assert_eq!(s.format, if g.format == "json" { Format::Json } else { Format::Text });
            prop_assert_eq!(s.listen, vec![ListenAddr::Socket(g.listen)]);
            prop_assert_eq!(s.interval, g.interval);
            prop_assert_eq!((s.close_wait_age, s.fin_wait2_age), g.ages);
            prop_assert_eq!(s.max_processes, g.max_processes);
            prop_assert_eq!(s.fd_growth_window, g.window);
            prop_assert_eq!(s.proc_root, PathBuf::from(&g.proc_root));
            prop_assert_eq!(s.log_level, g.log_level);
            let t = s.thresholds;
            let pair = |check, amount: fn(&Amount) -> Option<u64>| {
                let l: Levels<Amount> = t.get(check);
                (amount(&l.warning), amount(&l.critical))
            };
            let count = |a: &Amount| match a { Amount::Count(n) => Some(*n), _ => None };
            let counts = [Check::CloseWaitStale, Check::FinWait2Stale, Check::CloseWaitUnaccepted]
                .map(|c| pair(c, count));
            prop_assert_eq!(counts, g.counts.map(|(w, c)| (Some(w), Some(c))));
            let ratio = |check| match t.get(check) {
                Levels { warning: Amount::Ratio(w), critical: Amount::Ratio(c) } => Some((w, c)),
                _ => None,
            };
            let fractions = [Check::FdUtilization, Check::HostFdUtilization].map(ratio);
            prop_assert_eq!(fractions, g.fractions.map(Some));
            let time = |a: Amount| match a { Amount::TimeLeft(d) => Some(d), _ => None };
            let exhaustion = t.get(Check::FdExhaustion);
            prop_assert_eq!(
                (time(exhaustion.warning), time(exhaustion.critical)),
                (Some(g.exhaustion.0), Some(g.exhaustion.1))
            );
            let bytes = |a: &Amount| match a { Amount::Bytes(n) => Some(*n), _ => None };
            prop_assert_eq!(
                pair(Check::DeletedOpenFiles, bytes),
                (Some(g.deleted.0 .0), Some(g.deleted.0 .1))
            );
        }
    }
}
