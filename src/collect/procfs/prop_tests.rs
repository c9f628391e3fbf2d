//! Property tests: no text a process can put in /proc (its comm, its
//! cmdline, its cgroup path) or a kernel can write there (netstat's
//! counters too) makes the /proc parsers panic, and what they return is
//! what the format says the bytes hold.
//!
//! Each parser is checked against an oracle written from the format (field
//! numbers, prefixes) rather than from the code, on arbitrary bytes, on
//! generated well-formed text, and on the samples captured in parse_tests.rs
//! cut at every length and edited at random.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};

use super::*;
use crate::byte_edits::{self, Edit};

// Samples captured on Linux 6.18, shared with the unit tests.
use super::tests::{
    CGROUP_HYBRID_ROOT, LIMITS, NETSTAT_OVERFLOWED, SOCKSTAT6_NS, SOCKSTAT_HOST, SOCKSTAT_NS,
    STATUS_PID1, STAT_CAT, STAT_KTHREAD, STAT_NON_UTF8_COMM, STAT_WEIRD_COMM,
};
const SOCKSTATS: [&[u8]; 3] = [SOCKSTAT_HOST, SOCKSTAT_NS, SOCKSTAT6_NS];
const STATS: [&[u8]; 4] = [STAT_CAT, STAT_WEIRD_COMM, STAT_KTHREAD, STAT_NON_UTF8_COMM];
const CGROUP_DOCKER_V1: &[u8] = b"12:pids:/docker/7d4bd3e0c7e1a4f5b2d3c9e8a1f0b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9\n1:name=systemd:/docker/7d4bd3e0c7e1a4f5b2d3c9e8a1f0b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9\n0::/system.slice/containerd.service\n";
const CGROUP_KUBEPODS: &[u8] = b"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f1c2b7a_9e4d_4c1b_8a2e_5d6f7a8b9c0d.slice/cri-containerd-7d4bd3e0c7e1a4f5b2d3c9e8a1f0b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9.scope\n";
const CGROUP_USER: &[u8] =
    b"0::/user.slice/user-1000.slice/user@1000.service/app.slice/pipewire.service\n";
const CGROUPS: [&[u8]; 4] = [
    CGROUP_HYBRID_ROOT,
    CGROUP_DOCKER_V1,
    CGROUP_KUBEPODS,
    CGROUP_USER,
];

const LINKS: [&[u8]; 5] = [
    b"socket:[9765]",
    b"/tmp/big.log (deleted)",
    b"pipe:[1234]",
    b"anon_inode:[eventpoll]",
    b"net:[4026531833]",
];
const FILE_NR: &[u8] = b"342\t0\t2466170\n";
const CMDLINE: &[u8] = b"python3\0-m\0http.server\08080\0";

/// Pieces /proc text is made of, and a few that make parsers stumble.
const TOKENS: [&[u8]; 30] = [
    b" ",
    b"\t",
    b"\n",
    b"(",
    b")",
    b":",
    b"::",
    b"/",
    b"\0",
    b"0",
    b"-1",
    b"18446744073709551615",
    b"18446744073709551616",
    b"unlimited",
    b"Max open files",
    b"socket:[",
    b"net:[",
    b"]",
    b" (deleted)",
    b".scope",
    b".service",
    b"docker-",
    b"-pod",
    b"\xe2\x80\xa6",
    b"\xff",
    b"\xc3",
    b"TcpExt:",
    b"TcpExt: ",
    b"ListenOverflows",
    b"ListenDrops",
];

fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        select(TOKENS.to_vec()).prop_map(<[u8]>::to_vec),
        vec(any::<u8>(), 1..16),
    ]
}

/// Edits of /proc text: cut, overwrite, delete, or insert a token it is
/// made of (or arbitrary bytes).
fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<Index>().prop_map(Edit::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Byte(i, b)),
        (any::<Index>(), 1usize..40).prop_map(|(i, n)| Edit::Delete(i, n)),
        (any::<Index>(), token()).prop_map(|(i, t)| Edit::Insert(i, t)),
    ]
}

/// One of `samples` with a stack of edits.
fn edited(samples: &'static [&'static [u8]]) -> impl Strategy<Value = Vec<u8>> {
    byte_edits::edited(samples, edit())
}

/// Arbitrary bytes, or ASCII text (which gets past the UTF-8 checks).
fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        vec(any::<u8>(), 0..300),
        "[ -~\t\n]{0,300}".prop_map(String::into_bytes),
    ]
}

/// /proc/PID/stat as proc(5) describes it: the pid, comm from the first '('
/// to the last ')', then space-separated fields from 3 (state) on, of which
/// 9 (flags) and 22 (starttime) are numbers.
fn stat_oracle(b: &[u8]) -> Option<Stat> {
    let open = b.iter().position(|&c| c == b'(')?;
    let close = b.iter().rposition(|&c| c == b')')?;
    if close <= open {
        return None;
    }
    let pid = std::str::from_utf8(&b[..open]).ok()?.trim().parse().ok()?;
    let fields: Vec<&str> = std::str::from_utf8(&b[close + 1..])
        .ok()?
        .split_ascii_whitespace()
        .collect();
    let field = |n: usize| fields.get(n - 3).copied();
    let flags: u64 = field(9)?.parse().ok()?;
    Some(Stat {
        pid,
        comm: String::from_utf8_lossy(&b[open + 1..close]).into_owned(),
        state: field(3)?.chars().next()?,
        start_time: field(22)?.parse().ok()?,
        kernel_thread: flags & 0x0020_0000 != 0,
    })
}

fn check_stat(b: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(stat(b).ok(), stat_oracle(b));
    Ok(())
}

/// The first line starting "Max open files", its first word after that.
fn limits_oracle(b: &[u8]) -> Option<Option<u64>> {
    let text = std::str::from_utf8(b).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    match line["Max open files".len()..]
        .split_ascii_whitespace()
        .next()?
    {
        "unlimited" => Some(None),
        n => n.parse().ok().map(Some),
    }
}

fn check_limits(b: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(max_open_files(b).ok(), limits_oracle(b));
    Ok(())
}

fn is_hex12(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What any answer of the cgroup parser looks like: a runtime and a short
/// container id, a pod uid, or a unit that is one of `components`.
fn check_unit(components: &[&str], unit: &str) -> Result<(), TestCaseError> {
    let container = unit.split_once(':').is_some_and(|(runtime, id)| {
        ["docker", "containerd", "cri-o", "podman", "container"].contains(&runtime) && is_hex12(id)
    });
    let pod = unit.strip_prefix("pod:").is_some_and(|uid| {
        uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    });
    let named_unit = is_unit(unit) && components.contains(&unit);
    prop_assert!(
        container || pod || named_unit,
        "{:?} is no container, pod, or unit among {:?}",
        unit,
        components
    );
    Ok(())
}

/// The path components of a /proc/PID/cgroup text: of the third
/// ':'-separated field of each line.
fn cgroup_components(text: &str) -> Vec<&str> {
    text.lines()
        .filter_map(|l| l.splitn(3, ':').nth(2))
        .flat_map(|p| p.split('/'))
        .collect()
}

fn check_cgroup(b: &[u8]) -> Result<(), TestCaseError> {
    let text = String::from_utf8_lossy(b);
    if let Ok(Some(unit)) = unit_from_cgroup(b) {
        check_unit(&cgroup_components(&text), &unit)?;
    }
    // The path helpers on the raw text, as one path.
    let components: Vec<&str> = text.split('/').collect();
    for unit in [
        container_from_path(&text),
        pod_from_path(&text),
        systemd_unit_from_path(&text),
    ]
    .into_iter()
    .flatten()
    {
        check_unit(&components, &unit)?;
    }
    Ok(())
}

/// `prefix[digits]` with 1 to 20 digits that fit a u64.
fn bracketed_oracle(b: &[u8], prefix: &[u8]) -> Option<u64> {
    let digits = b.strip_prefix(prefix)?.strip_suffix(b"]")?;
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn check_link(b: &[u8]) -> Result<(), TestCaseError> {
    let expected = if let Some(inode) = bracketed_oracle(b, b"socket:[") {
        FdTarget::Socket(inode)
    } else if b.starts_with(b"/") && b.ends_with(b" (deleted)") {
        FdTarget::MaybeDeleted
    } else if b.starts_with(b"/") {
        FdTarget::File
    } else if b.starts_with(b"pipe:[") {
        FdTarget::Pipe
    } else if b.starts_with(b"anon_inode:") {
        FdTarget::AnonInode
    } else {
        FdTarget::Other
    };
    prop_assert_eq!(fd_target(b), expected);
    prop_assert_eq!(netns_link(b), bracketed_oracle(b, b"net:["));
    let path = deleted_path(b);
    prop_assert!(b.starts_with(path));
    if b.ends_with(b" (deleted)") {
        prop_assert_eq!(path.len(), b.len() - b" (deleted)".len());
    } else {
        prop_assert_eq!(path, b);
    }
    Ok(())
}

fn check_cmdline(b: &[u8], max_len: usize) -> Result<(), TestCaseError> {
    let s = cmdline(b, max_len);
    prop_assert!(!s.contains('\0'), "{:?}", s);
    prop_assert!(!s.chars().any(char::is_control), "{:?}", s);
    prop_assert!(!s.ends_with(char::is_whitespace), "{:?}", s);
    let end = b
        .iter()
        .rposition(|&c| c != 0 && !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let args = &b[..end];
    let cut = args.len() > max_len;
    let shown = if cut {
        let shown = s.strip_suffix('…');
        prop_assert!(shown.is_some(), "{:?} cut without a mark", s);
        shown.unwrap_or_default()
    } else {
        &s[..]
    };
    let expected: String = String::from_utf8_lossy(&args[..args.len().min(max_len)])
        .chars()
        .flat_map(|c| match c {
            '\0' => ' '.escape_default().collect::<Vec<_>>(),
            c if c.is_control() => c.escape_default().collect(),
            c => vec![c],
        })
        .collect();
    prop_assert_eq!(shown, expected);
    Ok(())
}

fn check_file_nr(b: &[u8]) -> Result<(), TestCaseError> {
    let expected = std::str::from_utf8(b).ok().and_then(|t| {
        let n: Vec<u64> = t
            .split_ascii_whitespace()
            .take(3)
            .map_while(|w| w.parse().ok())
            .collect();
        (n.len() == 3).then(|| FileNr {
            allocated: n[0],
            free: n[1],
            max: n[2],
        })
    });
    let got = file_nr(b).ok();
    prop_assert_eq!(got, expected);
    if let Some(nr) = got {
        prop_assert_eq!(nr.open(), nr.allocated.saturating_sub(nr.free));
    }
    Ok(())
}

/// /proc/net/netstat as the kernel writes it: the first line that starts
/// "TcpExt:" names the columns, the line right after it must start
/// "TcpExt:" too and hold as many space-separated values; each counter is
/// the value under the first column of its name, digits only, within u64.
fn netstat_oracle(b: &[u8]) -> Option<ListenCounters> {
    let lines: Vec<&[u8]> = b.split(|&c| c == b'\n').collect();
    let i = lines.iter().position(|l| l.starts_with(b"TcpExt:"))?;
    let next = lines.get(i + 1).filter(|l| l.starts_with(b"TcpExt:"))?;
    let cols = |l: &[u8]| -> Vec<Vec<u8>> {
        l[7..]
            .split(|c| c.is_ascii_whitespace())
            .filter(|w| !w.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    let (names, values) = (cols(lines[i]), cols(next));
    if names.len() != values.len() {
        return None;
    }
    let get = |name: &[u8]| -> Option<u64> {
        let v = &values[names.iter().position(|n| n == name)?];
        if !v.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(v).ok()?.parse().ok()
    };
    Some(ListenCounters {
        overflows: get(b"ListenOverflows")?,
        drops: get(b"ListenDrops")?,
    })
}

/// `PREFIX: key value ...`: the value of the first `key` in a key position
/// of the first line with `prefix`, if it is all digits and fits.
fn sockstat_field_oracle(b: &[u8], prefix: &[u8], key: &[u8]) -> Option<u64> {
    let line = b.split(|&c| c == b'\n').find(|l| l.starts_with(prefix))?;
    let words: Vec<&[u8]> = line[prefix.len()..]
        .split(|c| c.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    let at = (0..words.len()).step_by(2).find(|&i| words[i] == key)?;
    let v = words.get(at + 1)?;
    if v.is_empty() || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

/// sockstat as `sockstat`, sockstat6 as `v6` (both files are given).
fn check_sockstat(sockstat: &[u8], v6: &[u8]) -> Result<(), TestCaseError> {
    let oracle = (|| {
        Some(TcpSockstat {
            inuse: sockstat_field_oracle(sockstat, b"TCP:", b"inuse")?,
            tw: sockstat_field_oracle(sockstat, b"TCP:", b"tw")?,
            inuse6: sockstat_field_oracle(v6, b"TCP6:", b"inuse")?,
        })
    })();
    prop_assert_eq!(tcp_sockstat(sockstat, Some(v6)).ok(), oracle);
    Ok(())
}

fn check_netstat(b: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(listen_counters(b).ok(), netstat_oracle(b));
    Ok(())
}

#[test]
fn the_oracles_agree_with_the_samples() {
    // The oracles are not idle: each sample parses, to what parse_tests says.
    assert_eq!(stat_oracle(STAT_CAT).map(|s| s.start_time), Some(47821));
    assert_eq!(
        stat_oracle(STAT_WEIRD_COMM).map(|s| s.comm),
        Some("we) ird (x".into())
    );
    assert_eq!(
        stat_oracle(STAT_KTHREAD).map(|s| s.kernel_thread),
        Some(true)
    );
    assert_eq!(limits_oracle(LIMITS), Some(Some(20000)));
    for s in STATS {
        check_stat(s).expect("agrees");
    }
    check_limits(LIMITS).expect("agrees");
    assert_eq!(
        netstat_oracle(NETSTAT_OVERFLOWED),
        Some(ListenCounters {
            overflows: 54,
            drops: 54
        })
    );
    check_netstat(NETSTAT_OVERFLOWED).expect("agrees");
    assert_eq!(
        sockstat_field_oracle(SOCKSTAT_HOST, b"TCP:", b"tw"),
        Some(6490)
    );
    check_sockstat(SOCKSTAT_NS, SOCKSTAT6_NS).expect("agrees");
    check_file_nr(FILE_NR).expect("agrees");
    check_cmdline(CMDLINE, 4096).expect("agrees");
    check_cmdline(CMDLINE, 9).expect("agrees");
    for c in CGROUPS {
        check_cgroup(c).expect("agrees");
    }
    assert!(check_unit(&["a.service"], "b.service").is_err());
    assert!(check_unit(&["x"], "docker:xyz").is_err());
    assert!(check_unit(&[], "pod:3f1c2b7a").is_err());
}

#[test]
fn every_truncation_of_every_sample() {
    for s in STATS {
        for len in 0..=s.len() {
            check_stat(&s[..len]).unwrap_or_else(|e| panic!("stat cut to {len}: {e}"));
        }
    }
    for len in 0..=LIMITS.len() {
        check_limits(&LIMITS[..len]).unwrap_or_else(|e| panic!("limits cut to {len}: {e}"));
    }
    for c in CGROUPS {
        for len in 0..=c.len() {
            check_cgroup(&c[..len]).unwrap_or_else(|e| panic!("cgroup cut to {len}: {e}"));
        }
    }
    for len in 0..=FILE_NR.len() {
        check_file_nr(&FILE_NR[..len]).unwrap_or_else(|e| panic!("file-nr cut to {len}: {e}"));
    }
    for len in 0..=NETSTAT_OVERFLOWED.len() {
        check_netstat(&NETSTAT_OVERFLOWED[..len])
            .unwrap_or_else(|e| panic!("netstat cut to {len}: {e}"));
    }
    for len in 0..=SOCKSTAT_NS.len() {
        check_sockstat(&SOCKSTAT_NS[..len], SOCKSTAT6_NS)
            .unwrap_or_else(|e| panic!("sockstat cut to {len}: {e}"));
    }
    for len in 0..=SOCKSTAT6_NS.len() {
        check_sockstat(SOCKSTAT_NS, &SOCKSTAT6_NS[..len])
            .unwrap_or_else(|e| panic!("sockstat6 cut to {len}: {e}"));
    }
    for len in 0..=CMDLINE.len() {
        for max in 0..=CMDLINE.len() + 1 {
            check_cmdline(&CMDLINE[..len], max)
                .unwrap_or_else(|e| panic!("cmdline cut to {len}, max {max}: {e}"));
        }
    }
}

#[derive(Clone, Debug)]
struct StatLine {
    pid: u32,
    comm: String,
    state: char,
    /// Fields 4 to 52 (field 9 is the flags, 22 the start time).
    fields: Vec<u64>,
    pad: (String, String),
}

impl StatLine {
    fn text(&self) -> String {
        let fields: Vec<String> = self.fields.iter().map(u64::to_string).collect();
        format!(
            "{}{}({}) {}{}{}\n",
            self.pad.0,
            self.pid,
            self.comm,
            self.state,
            if fields.is_empty() { "" } else { " " },
            fields.join(&self.pad.1)
        )
    }
}

fn stat_line() -> impl Strategy<Value = StatLine> {
    (
        any::<u32>(),
        // comm: up to 16 characters of anything, brackets and spaces too.
        prop_oneof![".{0,16}", "[() a-z]{0,16}"],
        proptest::char::range('A', 'z').prop_filter("a letter", char::is_ascii_alphabetic),
        vec(any::<u64>(), 49..=49),
        (" {0,2}", prop_oneof![Just(" ".to_string()), " {1,3}"]),
    )
        .prop_map(|(pid, comm, state, fields, pad)| StatLine {
            pid,
            comm,
            state,
            fields,
            pad,
        })
}

/// A limits file: the captured lines in some order, the open-files line
/// with any soft limit and any padding.
fn limits_text() -> impl Strategy<Value = (String, Option<u64>)> {
    let others: Vec<String> = String::from_utf8_lossy(LIMITS)
        .lines()
        .filter(|l| !l.starts_with("Max open files"))
        .map(str::to_string)
        .collect();
    (
        Just(others).prop_shuffle(),
        any::<Index>(),
        proptest::option::of(any::<u64>()),
        " {1,30}",
        " {1,30}",
    )
        .prop_map(|(mut lines, at, soft, pad1, pad2)| {
            let value = soft.map_or_else(|| "unlimited".to_string(), |v| v.to_string());
            let line = format!("Max open files{pad1}{value}{pad2}4096                 files     ");
            lines.insert(at.index(lines.len() + 1), line);
            (lines.join("\n") + "\n", soft)
        })
}

/// A cgroup path component closewatch recognises, and what it names.
fn special_component() -> impl Strategy<Value = (String, Option<String>, u8)> {
    let id = "[0-9a-f]{64}";
    let uid = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
    prop_oneof![
        (
            id,
            select(vec![
                ("docker-", "docker"),
                ("cri-containerd-", "containerd"),
                ("crio-", "cri-o"),
                ("libpod-", "podman"),
            ])
        )
            .prop_map(|(id, (prefix, runtime))| (
                format!("{prefix}{id}.scope"),
                Some(format!("{runtime}:{}", &id[..12])),
                0u8
            )),
        id.prop_map(|id| (id.clone(), Some(format!("container:{}", &id[..12])), 0)),
        uid.prop_map(|u| (format!("pod{u}"), Some(format!("pod:{u}")), 1)),
        uid.prop_map(|u| (
            format!("kubepods-besteffort-pod{}.slice", u.replace('-', "_")),
            Some(format!("pod:{u}")),
            1
        )),
        "[a-z@-]{1,12}".prop_flat_map(|name| select(vec![".service", ".scope", ".socket"])
            .prop_map(move |s| {
                let unit = format!("{name}{s}");
                (unit.clone(), Some(unit), 2)
            })),
        // Not a unit, a container or a pod.
        select(vec![".service", "pod", "docker-x.slice", "system.slice"]).prop_map(|c| (
            c.to_string(),
            None,
            3
        )),
    ]
}

/// A netstat file: other sections around a TcpExt: pair whose columns are
/// the two counters among others, in any order, with any values.
fn netstat_text() -> impl Strategy<Value = (String, ListenCounters)> {
    let section = (
        "[A-Z][A-Za-z]{1,8}",
        vec(("[A-Z][A-Za-z0-9]{0,12}", any::<u64>()), 0..4),
    );
    (
        vec(section.clone(), 0..3),
        vec(("TCP[A-Za-z]{1,12}", any::<u64>()), 0..20),
        (any::<Index>(), any::<Index>()),
        (any::<u64>(), any::<u64>()),
        vec(section, 0..3),
    )
        .prop_map(|(before, mut cols, (at_o, at_d), (o, d), after)| {
            // A column of the same name earlier would win.
            cols.retain(|(n, _)| n != "ListenOverflows" && n != "ListenDrops");
            cols.insert(at_o.index(cols.len() + 1), ("ListenOverflows".into(), o));
            cols.insert(at_d.index(cols.len() + 1), ("ListenDrops".into(), d));
            let pair = |prefix: &str, cols: &[(String, u64)]| {
                let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
                let values: Vec<String> = cols.iter().map(|(_, v)| v.to_string()).collect();
                format!(
                    "{prefix}: {}\n{prefix}: {}\n",
                    names.join(" "),
                    values.join(" ")
                )
            };
            let mut text = String::new();
            for (prefix, cols) in before.iter().filter(|(p, _)| p != "TcpExt") {
                text.push_str(&pair(prefix, cols));
            }
            text.push_str(&pair("TcpExt", &cols));
            for (prefix, cols) in &after {
                text.push_str(&pair(prefix, cols));
            }
            (
                text,
                ListenCounters {
                    overflows: o,
                    drops: d,
                },
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn stat_of_arbitrary_bytes(b in bytes()) {
        check_stat(&b)?;
    }

    #[test]
    fn stat_of_edited_samples(b in edited(&STATS)) {
        check_stat(&b)?;
    }

    /// A generated stat line parses to exactly its pid, comm, state, flag
    /// and start time, whatever the comm holds.
    #[test]
    fn generated_stat_round_trips(line in stat_line()) {
        let parsed = stat(line.text().as_bytes());
        prop_assert_eq!(parsed, Ok(Stat {
            pid: line.pid,
            comm: line.comm.clone(),
            state: line.state,
            start_time: line.fields[22 - 4],
            kernel_thread: line.fields[9 - 4] & 0x0020_0000 != 0,
        }), "{:?}", line.text());
    }

    #[test]
    fn limits_of_arbitrary_and_edited_bytes(
        b in prop_oneof![bytes(), edited(&[LIMITS])],
    ) {
        check_limits(&b)?;
    }

    #[test]
    fn generated_limits_round_trip((text, soft) in limits_text()) {
        prop_assert_eq!(max_open_files(text.as_bytes()), Ok(soft), "{}", text);
    }

    #[test]
    fn netstat_of_arbitrary_and_edited_bytes(
        b in prop_oneof![bytes(), edited(&[NETSTAT_OVERFLOWED])],
    ) {
        check_netstat(&b)?;
    }

    #[test]
    fn sockstat_of_arbitrary_and_edited_bytes(
        v4 in prop_oneof![bytes(), edited(&SOCKSTATS)],
        v6 in prop_oneof![bytes(), edited(&SOCKSTATS)],
    ) {
        check_sockstat(&v4, &v6)?;
    }

    #[test]
    fn generated_netstat_round_trips((text, counters) in netstat_text()) {
        prop_assert_eq!(listen_counters(text.as_bytes()), Ok(counters), "{}", text);
    }

    #[test]
    fn file_nr_of_arbitrary_and_edited_bytes(
        b in prop_oneof![bytes(), edited(&[FILE_NR])],
    ) {
        check_file_nr(&b)?;
    }

    #[test]
    fn generated_file_nr_round_trips(
        n in any::<(u64, u64, u64)>(),
        seps in vec(prop_oneof![Just(" "), Just("\t"), Just("\n"), Just("  ")], 4),
    ) {
        let text = format!("{}{}{}{}{}{}", n.0, seps[0], n.1, seps[1], n.2, seps[2]);
        prop_assert_eq!(
            file_nr(text.as_bytes()),
            Ok(FileNr { allocated: n.0, free: n.1, max: n.2 })
        );
    }

    #[test]
    fn fd_links_of_arbitrary_and_edited_bytes(
        b in prop_oneof![
            bytes(),
            edited(&LINKS),
        ],
    ) {
        check_link(&b)?;
    }

    #[test]
    fn generated_fd_links_round_trip(n in any::<u64>(), path in "/[ -~]{0,40}") {
        prop_assert_eq!(fd_target(format!("socket:[{n}]").as_bytes()), FdTarget::Socket(n));
        prop_assert_eq!(netns_link(format!("net:[{n}]").as_bytes()), Some(n));
        let deleted = format!("{path} (deleted)");
        prop_assert_eq!(fd_target(deleted.as_bytes()), FdTarget::MaybeDeleted);
        prop_assert_eq!(deleted_path(deleted.as_bytes()), path.as_bytes());
    }

    #[test]
    fn cmdline_of_arbitrary_and_edited_bytes(
        b in prop_oneof![bytes(), edited(&[CMDLINE])],
        max_len in prop_oneof![0usize..64, Just(4096usize)],
    ) {
        check_cmdline(&b, max_len)?;
    }

    /// procfs's status parser, on anything: an error, never a panic; and
    /// whatever it accepts has the capability lines it was given.
    #[test]
    fn status_of_arbitrary_and_edited_bytes(
        b in prop_oneof![bytes(), edited(&[STATUS_PID1])],
    ) {
        if let Ok(c) = credentials(&b) {
            let text = String::from_utf8_lossy(&b);
            let line = |name: &str| text.lines().any(|l| l.starts_with(name));
            prop_assert!(line("CapPrm:") && line("CapEff:") && line("Uid:"), "{:?}", c);
        }
    }

    #[test]
    fn cgroup_of_arbitrary_and_edited_bytes(
        b in prop_oneof![bytes(), edited(&CGROUPS)],
    ) {
        check_cgroup(&b)?;
    }

    /// One special component among plain ones in a path, in a v2 line or a
    /// v1 line: it is what names the process.
    #[test]
    fn generated_cgroup_paths_name_their_container_pod_or_unit(
        before in vec("[a-z]{1,8}", 0..4),
        (special, named, _) in special_component(),
        after in vec("[a-z]{1,8}", 0..3),
        v1 in any::<bool>(),
    ) {
        let mut components = before.clone();
        components.push(special);
        components.extend(after);
        let path = components.join("/");
        let line = if v1 { format!("4:memory:/{path}\n") } else { format!("0::/{path}\n") };
        // A bare container id right under /docker is Docker's (cgroupfs
        // driver); anywhere else it is a generic container.
        let named = match (named, before.first().map(String::as_str)) {
            (Some(n), Some("docker")) if n.starts_with("container:") => {
                Some(n.replace("container:", "docker:"))
            }
            (n, _) => n,
        };
        prop_assert_eq!(unit_from_cgroup(line.as_bytes()), Ok(named), "{}", line);
    }

    /// Several v1 lines: a container anywhere wins over a pod anywhere,
    /// which wins over a unit.
    #[test]
    fn generated_cgroup_files_prefer_a_container_then_a_pod(
        specials in vec(special_component(), 1..5),
    ) {
        let text: String = specials
            .iter()
            .enumerate()
            .map(|(i, (c, _, _))| format!("{}:ctl{i}:/x/{c}\n", i + 1))
            .collect();
        // The first container in line order, else the first pod; a unit
        // only from the first line (the preferred hierarchy).
        let first = |rank: u8| specials.iter().find(|(_, _, r)| *r == rank);
        let expected = first(0)
            .or_else(|| first(1))
            .or_else(|| specials.first().filter(|(_, _, r)| *r == 2))
            .and_then(|(_, named, _)| named.clone());
        prop_assert_eq!(unit_from_cgroup(text.as_bytes()), Ok(expected), "{}", text);
    }
}
