//! Each branch of the access rules, on /proc/PID/status text captured on
//! this machine (Linux 6.18, tests/fixtures/status/): what the kernel did
//! with each pair is noted beside it (measured with setpriv and readlink).

use super::*;
use crate::collect::procfs::parse::credentials;
use crate::model::access::Refusal;

/// pid 1 of this sandbox (process_api): uid 0, CapPrm 000001ffffffffff.
const PID1: &str = include_str!("../../tests/fixtures/status/pid1-process_api.txt");
/// A root shell here: uid 0, CapPrm/CapEff/CapBnd 000001fffeffffff (no
/// CAP_SYS_RESOURCE).
const ROOT: &str = include_str!("../../tests/fixtures/status/root.txt");
/// `setpriv --inh-caps=-sys_ptrace --bounding-set=-sys_ptrace`: uid 0,
/// 000001fffef7ffff everywhere.
const ROOT_WITHOUT_PTRACE: &str =
    include_str!("../../tests/fixtures/status/root-without-sys_ptrace.txt");
/// `setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all`.
const NOBODY: &str = include_str!("../../tests/fixtures/status/nobody.txt");
/// nobody with the ambient CAP_SYS_PTRACE (CapEff 0000000000080000).
const NOBODY_WITH_PTRACE: &str =
    include_str!("../../tests/fixtures/status/nobody-with-sys_ptrace.txt");
/// uid 1000 with no capabilities.
const UID1000: &str = include_str!("../../tests/fixtures/status/uid1000.txt");
/// `unshare --user --map-root-user sleep`, read from outside: uid 0, every
/// capability (in its own namespace), uid_map `0 0 1`.
const USERNS_ROOT: &str = include_str!("../../tests/fixtures/status/userns-root.txt");

fn creds(text: &str) -> Credentials {
    credentials(text.as_bytes()).expect("captured status parses")
}

fn refused(reads: &[Read], errno: i32) -> Vec<Refusal> {
    reads.iter().map(|&read| Refusal { read, errno }).collect()
}

/// A process whose `reads` were refused with `errno`.
fn target(status: &str, owner: u32, user_ns: UserNs, reads: &[Read], errno: i32) -> Unreadable {
    Unreadable {
        pid: 4242,
        comm: "target".into(),
        kernel_thread: false,
        fds: reads.iter().any(|r| *r != Read::Netns),
        netns: reads.contains(&Read::Netns),
        refused: refused(reads, errno),
        target: Ok(creds(status)),
        owner_uid: Some(owner),
        user_ns,
    }
}

const SYS_PTRACE: &str = "CAP_SYS_PTRACE";
const DAC_READ_SEARCH: &str = "CAP_DAC_READ_SEARCH";

struct Case {
    name: &'static str,
    ours: &'static str,
    initial_user_ns: Option<bool>,
    target: Unreadable,
    code: &'static str,
    rules: Vec<Rule>,
    needs: &'static [&'static str],
    unattainable: &'static [&'static str],
    missing: &'static [&'static str],
    /// Words the cause and the remedy must hold, and must not.
    says: &'static [&'static str],
    never: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    use Read::{FdDirectory, FdLinks, Netns};
    vec![
        Case {
            // Measured: EACCES for root here, and for root without
            // CAP_NET_ADMIN, which still reads every other root process.
            name: "pid 1 refused to root holding CAP_SYS_PTRACE is a security policy",
            ours: ROOT,
            initial_user_ns: Some(true),
            target: target(PID1, 0, UserNs::Unknown, &[FdLinks, Netns], EACCES),
            code: "security_policy",
            rules: vec![],
            needs: &[],
            unattainable: &[],
            missing: &["CAP_SYS_RESOURCE"],
            says: &[
                "CAP_SYS_RESOURCE",
                "000001ffffffffff vs our CapEff 000001fffeffffff",
                "security module",
                "none from capabilities or uid",
            ],
            never: &["needs CAP_SYS_PTRACE", "run as root", "grant"],
        },
        Case {
            // Measured: a root process without CAP_SYS_PTRACE cannot read
            // a root process that holds it (EACCES).
            name: "a root process holding CAP_SYS_PTRACE refused to root without it needs it",
            ours: ROOT_WITHOUT_PTRACE,
            initial_user_ns: Some(true),
            target: target(ROOT, 0, UserNs::Unknown, &[FdLinks, Netns], EACCES),
            code: "uid_or_capabilities",
            rules: vec![Rule::HoldsCapabilities],
            needs: &[SYS_PTRACE],
            unattainable: &[SYS_PTRACE],
            missing: &[SYS_PTRACE],
            says: &[
                "it holds CAP_SYS_PTRACE that this process lacks",
                "bounding set excludes CAP_SYS_PTRACE",
            ],
            never: &["run as root"],
        },
        Case {
            // Measured: nobody needs both (each alone: EACCES).
            name: "root processes refused to nobody need CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH",
            ours: NOBODY,
            initial_user_ns: Some(true),
            target: target(ROOT, 0, UserNs::Unknown, &[FdDirectory, Netns], EACCES),
            code: "uid_or_capabilities",
            rules: vec![
                Rule::OtherUid {
                    ours: 65534,
                    theirs: 0,
                },
                Rule::HoldsCapabilities,
                Rule::FdDirectoryOwner { owner: 0 },
            ],
            needs: &[DAC_READ_SEARCH, SYS_PTRACE],
            unattainable: &[],
            missing: &["CAP_CHOWN"],
            says: &[
                "runs as uid 0, this process as uid 65534",
                "and 34 more",
                "belongs to uid 0 (mode 0500)",
                "needs CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE: run as root",
            ],
            never: &["security module"],
        },
        Case {
            // Measured: nobody with CAP_SYS_PTRACE alone cannot open the
            // directory (EACCES).
            name: "nobody holding CAP_SYS_PTRACE needs only CAP_DAC_READ_SEARCH",
            ours: NOBODY_WITH_PTRACE,
            initial_user_ns: Some(true),
            target: target(ROOT, 0, UserNs::Unknown, &[FdDirectory], EACCES),
            code: "uid_or_capabilities",
            rules: vec![Rule::FdDirectoryOwner { owner: 0 }],
            needs: &[DAC_READ_SEARCH],
            unattainable: &[],
            missing: &["CAP_CHOWN"],
            says: &["needs CAP_DAC_READ_SEARCH: run as root, or grant it"],
            never: &["needs CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH and"],
        },
        Case {
            name: "another uid without capabilities needs CAP_SYS_PTRACE, not theirs",
            ours: NOBODY,
            initial_user_ns: Some(true),
            target: target(UID1000, 1000, UserNs::Same, &[FdDirectory, Netns], EACCES),
            code: "uid_or_capabilities",
            rules: vec![
                Rule::OtherUid {
                    ours: 65534,
                    theirs: 1000,
                },
                Rule::FdDirectoryOwner { owner: 1000 },
            ],
            needs: &[DAC_READ_SEARCH, SYS_PTRACE],
            unattainable: &[],
            missing: &[],
            says: &["runs as uid 1000"],
            never: &["lacks", "security module"],
        },
        Case {
            name: "a process that is not dumpable needs CAP_SYS_PTRACE even from its own uid",
            ours: UID1000,
            initial_user_ns: Some(true),
            target: target(UID1000, 0, UserNs::Same, &[FdDirectory], EACCES),
            code: "uid_or_capabilities",
            rules: vec![Rule::NotDumpable, Rule::FdDirectoryOwner { owner: 0 }],
            needs: &[DAC_READ_SEARCH, SYS_PTRACE],
            unattainable: &[],
            missing: &[],
            says: &["not dumpable", "run as root"],
            never: &["runs as uid"],
        },
        Case {
            name: "in another user namespace capability sets are not compared",
            ours: NOBODY,
            initial_user_ns: Some(true),
            target: target(USERNS_ROOT, 0, UserNs::Other, &[FdLinks], EACCES),
            code: "uid_or_capabilities",
            rules: vec![
                Rule::OtherUid {
                    ours: 65534,
                    theirs: 0,
                },
                Rule::OtherUserNs,
            ],
            needs: &[SYS_PTRACE],
            unattainable: &[],
            missing: &[],
            says: &[
                "another user namespace",
                "needs CAP_SYS_PTRACE: run as root",
            ],
            never: &["ancestor", "lacks"],
        },
        Case {
            name: "outside the initial user namespace CAP_SYS_PTRACE must be held above it",
            ours: ROOT,
            initial_user_ns: Some(false),
            target: target(USERNS_ROOT, 0, UserNs::Other, &[FdLinks], EACCES),
            code: "uid_or_capabilities",
            rules: vec![Rule::OtherUserNs],
            needs: &[SYS_PTRACE],
            unattainable: &[],
            missing: &[],
            says: &[
                "an ancestor of it",
                "run closewatch in the initial user namespace",
            ],
            never: &["run as root"],
        },
        Case {
            // Same uid, dumpable, its capabilities a subset of ours: the
            // rules allow it (measured: root without CAP_SYS_PTRACE reads
            // a root process without it too).
            name: "refused although the rules allow it is a policy, or another user namespace",
            ours: ROOT_WITHOUT_PTRACE,
            initial_user_ns: Some(true),
            target: target(ROOT_WITHOUT_PTRACE, 0, UserNs::Unknown, &[FdLinks], EPERM),
            code: "security_policy",
            rules: vec![],
            needs: &[],
            unattainable: &[],
            missing: &[],
            says: &["same uid, dumpable", "another user namespace"],
            never: &["lacks", "run as root"],
        },
        Case {
            name: "refused within the same user namespace is a policy alone",
            ours: ROOT_WITHOUT_PTRACE,
            initial_user_ns: Some(true),
            target: target(ROOT_WITHOUT_PTRACE, 0, UserNs::Same, &[FdLinks], EACCES),
            code: "security_policy",
            rules: vec![],
            needs: &[],
            unattainable: &[],
            missing: &[],
            says: &["only the policy that refuses it"],
            never: &["another user namespace", "CAP_SYS_PTRACE held"],
        },
        Case {
            name: "an errno that is not a refusal names no remedy",
            ours: ROOT,
            initial_user_ns: Some(true),
            target: target(PID1, 0, UserNs::Unknown, &[FdLinks], 5),
            code: "not_permission",
            rules: vec![],
            needs: &[],
            unattainable: &[],
            missing: &[],
            says: &["errno 5", "not a permission problem"],
            never: &["CAP_"],
        },
        Case {
            name: "nothing refused when tried again",
            ours: ROOT,
            initial_user_ns: Some(true),
            target: target(PID1, 0, UserNs::Unknown, &[], EACCES),
            code: "readable_again",
            rules: vec![],
            needs: &[],
            unattainable: &[],
            missing: &[],
            says: &["readable when tried again"],
            never: &["CAP_"],
        },
    ]
}

#[test]
fn each_branch_of_the_rules_gives_its_cause_and_remedy() {
    for case in cases() {
        let ours = creds(case.ours);
        let d = diagnose(Ok(&ours), case.initial_user_ns, &case.target);
        let ctx = format!("{}: {d:#?}", case.name);
        assert_eq!(d.code(), case.code, "{ctx}");
        match &d.cause {
            Cause::Rules(rules) => assert_eq!(rules, &case.rules, "{ctx}"),
            _ => assert!(case.rules.is_empty(), "{ctx}"),
        }
        assert_eq!(d.needs.names(), case.needs, "{ctx}");
        assert_eq!(d.unattainable.names(), case.unattainable, "{ctx}");
        // The first names are enough for the sets that lack everything.
        let missing = d.missing.names();
        assert!(
            missing.starts_with(
                &case
                    .missing
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
            ),
            "{ctx}"
        );
        assert_eq!(missing.is_empty(), case.missing.is_empty(), "{ctx}");
        let text = format!("{} / {}", d.cause(), d.remedy());
        for word in case.says {
            assert!(text.contains(word), "{ctx}\nmissing {word:?} in: {text}");
        }
        for word in case.never {
            assert!(!text.contains(word), "{ctx}\nmust not say {word:?}: {text}");
        }
    }
}

#[test]
fn missing_capabilities_are_exactly_theirs_minus_ours() {
    let d = diagnose(
        Ok(&creds(NOBODY)),
        Some(true),
        &target(ROOT, 0, UserNs::Same, &[Read::FdLinks], EACCES),
    );
    assert_eq!(d.missing, CapSet(0x0000_01ff_feff_ffff));
    assert_eq!(d.missing.len(), 40);
}

#[test]
fn unknown_credentials_claim_no_remedy() {
    let mut t = target(PID1, 0, UserNs::Unknown, &[Read::FdLinks], EACCES);
    t.target = Err("/proc/4242/status: ESRCH".into());
    let d = diagnose(Ok(&creds(ROOT)), Some(true), &t);
    assert_eq!(d.code(), "unknown");
    assert_eq!(d.remedy(), "unknown");
    let d = diagnose(
        Err("no /proc/self"),
        Some(true),
        &target(PID1, 0, UserNs::Unknown, &[Read::FdLinks], EACCES),
    );
    assert!(d.cause().contains("our own credentials"), "{}", d.cause());
}

#[test]
fn the_summary_counts_processes_by_remedy() {
    let ours = creds(NOBODY);
    let u = UnreadableProcesses {
        ours: Ok(ours),
        initial_user_ns: Some(true),
        processes: vec![
            target(ROOT, 0, UserNs::Unknown, &[Read::FdDirectory], EACCES),
            target(ROOT, 0, UserNs::Unknown, &[Read::FdDirectory], EACCES),
            target(NOBODY, 65534, UserNs::Same, &[Read::FdLinks], EACCES),
        ],
        vanished: 0,
    };
    let skipped = judge(&u, None);
    assert_eq!(
        skipped.summary().as_deref(),
        Some(
            "2 need CAP_DAC_READ_SEARCH and CAP_SYS_PTRACE (run as root, or grant them); \
             1 is refused by a security policy whatever the capabilities (see skipped)"
        )
    );
    assert_eq!(
        skipped.processes[0].reason(),
        "fd table not readable (EACCES)"
    );
    assert_eq!(Skipped::default().summary(), None);
}

#[test]
fn kernel_threads_come_after_the_processes_they_would_hide() {
    let mut kthread = target(PID1, 0, UserNs::Unknown, &[Read::Netns], EACCES);
    kthread.pid = 2;
    kthread.kernel_thread = true;
    let mut user = target(ROOT, 0, UserNs::Unknown, &[Read::Netns], EACCES);
    user.pid = 900;
    let examined = UnreadableProcesses {
        ours: Ok(creds(NOBODY)),
        initial_user_ns: Some(true),
        processes: vec![kthread, user],
        vanished: 0,
    };
    let skipped = judge(&examined, None);
    let pids: Vec<u32> = skipped.processes.iter().map(|p| p.process.pid).collect();
    assert_eq!(pids, [900, 2]);
    // With --pid, only those.
    let only = judge(&examined, Some(&[2]));
    assert_eq!(only.processes.len(), 1);
    assert_eq!(only.processes[0].process.pid, 2);
    assert_eq!(
        skipped.processes[1].reason(),
        "kernel thread, network namespace not readable (EACCES)"
    );
}
