//! Why a process could not be read, and what would let closewatch read it,
//! from facts only (no I/O): the kernel's rules for another process's
//! /proc/PID/fd and /proc/PID/ns entries, applied to the credentials the
//! collector read.
//!
//! The rules (Linux 6.18; `__ptrace_may_access` in kernel/ptrace.c and
//! `cap_ptrace_access_check` in security/commoncap.c, PTRACE_MODE_READ
//! with our filesystem uid and effective capabilities; procfs answers
//! EACCES whenever they refuse):
//! 1. our fsuid equals its real, effective and saved uid (and our fsgid its
//!    gids), or we hold CAP_SYS_PTRACE in its user namespace;
//! 2. it is dumpable, or we hold CAP_SYS_PTRACE there;
//! 3. in the same user namespace its permitted capabilities are a subset of
//!    our effective ones, or we hold CAP_SYS_PTRACE there;
//! 4. then every security module (Landlock, SELinux, AppArmor, a BPF LSM)
//!    may still refuse. Yama restricts only PTRACE_MODE_ATTACH, not these
//!    reads.
//!
//! Opening /proc/PID/fd first takes file permissions: mode 0500, owned by
//! its euid (root when it is not dumpable), so another uid needs
//! CAP_DAC_READ_SEARCH (or CAP_DAC_OVERRIDE).
//!
//! A capability held in the initial user namespace counts in every other.
//! So CAP_SYS_PTRACE alone answers rules 1–3; when we hold it (there) and
//! are still refused, no capability will do: rule 4 refused. What the
//! rules ask for is *needed*; whether it is *enough* no fact says, since a
//! security module may refuse as well.

use crate::analyse::hints::count;
use crate::model::access::{
    CapSet, Capability, Credentials, Read, Unreadable, UnreadableProcesses, UserNs,
};

const EPERM: i32 = 1;
const EACCES: i32 = 13;

/// What refuses the read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cause {
    /// Rules 1–3 or the file permissions refuse; `Diagnosis::needs` says
    /// what would satisfy them.
    Rules(Vec<Rule>),
    /// Rules 1–3 and the file permissions allow the read, yet it was
    /// refused: a security module or another policy did. `other_user_ns`:
    /// or it is in another user namespace, which we cannot tell (its
    /// ns/user is refused too) and where our capabilities might not count.
    Policy { other_user_ns: bool },
    /// The read failed with an errno that is not a refusal.
    NotPermission,
    /// Read again after the scan, nothing was refused (its credentials
    /// changed, it exec'd, or its pid was reused).
    ReadableAgain,
    /// What the rules compare is unknown.
    Unknown(String),
}

/// A rule that refuses the read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Rule 1: it runs as another uid (or gid).
    OtherUid { ours: u32, theirs: u32 },
    /// Rule 2: it is not dumpable (its /proc/PID belongs to root while its
    /// euid is not root).
    NotDumpable,
    /// Rule 3: it holds capabilities we lack.
    HoldsCapabilities,
    /// Rule 3 does not apply across user namespaces: it is in another one.
    OtherUserNs,
    /// File permissions: /proc/PID/fd belongs to another uid.
    FdDirectoryOwner { owner: u32 },
}

/// Why one process could not be read, and the remedy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    pub cause: Cause,
    /// The capabilities the refusing rules need (`Cause::Rules`).
    pub needs: CapSet,
    /// Of `needs`, those our bounding set excludes: neither this process
    /// nor any root it starts can gain them.
    pub unattainable: CapSet,
    /// Its permitted capabilities that our effective set lacks (compared
    /// only within one user namespace; empty when unknown).
    pub missing: CapSet,
    /// Whether we hold CAP_SYS_PTRACE where it counts for this process.
    pub ptrace_reaches: bool,
    /// Whether we run as root (euid 0).
    pub we_are_root: bool,
    /// Whether we are in the initial user namespace (unknown: `None`).
    pub initial_user_ns: Option<bool>,
    /// Its CapPrm and our CapEff, as /proc prints them.
    pub theirs: Option<CapSet>,
    pub ours: Option<CapSet>,
    /// The errno of the first refused read.
    pub errno: Option<i32>,
}

impl Diagnosis {
    /// What is known before any rule is applied: nothing refused yet.
    fn of(ours: Result<&Credentials, &str>, initial_user_ns: Option<bool>, u: &Unreadable) -> Self {
        Diagnosis {
            cause: Cause::ReadableAgain,
            needs: CapSet::EMPTY,
            unattainable: CapSet::EMPTY,
            missing: CapSet::EMPTY,
            ptrace_reaches: false,
            we_are_root: ours.is_ok_and(|o| o.euid() == 0),
            initial_user_ns,
            theirs: u.target.as_ref().ok().map(|t| t.permitted),
            ours: ours.ok().map(|o| o.effective),
            errno: u.refused.first().map(|r| r.errno),
        }
    }
}

/// Applies the rules to one process the scan could not read.
pub fn diagnose(
    ours: Result<&Credentials, &str>,
    initial_user_ns: Option<bool>,
    u: &Unreadable,
) -> Diagnosis {
    let mut d = Diagnosis::of(ours, initial_user_ns, u);
    if u.refused.is_empty() {
        return d;
    }
    if let Some(r) = u
        .refused
        .iter()
        .find(|r| !matches!(r.errno, EACCES | EPERM))
    {
        d.errno = Some(r.errno);
        d.cause = Cause::NotPermission;
        return d;
    }
    let (ours, target) = match (ours, &u.target) {
        (Ok(o), Ok(t)) => (o, t),
        (o, t) => {
            let whose = if o.is_err() { "our own" } else { "its" };
            let e = o
                .err()
                .or(t.as_ref().err().map(String::as_str))
                .unwrap_or_default();
            d.cause = Cause::Unknown(format!("{whose} credentials could not be read ({e})"));
            return d;
        }
    };
    let has_ptrace = ours.effective.has(Capability::SYS_PTRACE);
    d.ptrace_reaches = match u.user_ns {
        UserNs::Same => has_ptrace,
        UserNs::Other | UserNs::Unknown => has_ptrace && initial_user_ns == Some(true),
    };
    if u.user_ns != UserNs::Other {
        d.missing = target.permitted.minus(ours.effective);
    }
    let mut rules = if d.ptrace_reaches {
        Vec::new()
    } else {
        ptrace_rules(ours, target, u, d.missing)
    };
    if !rules.is_empty() {
        d.needs = CapSet::of(&[Capability::SYS_PTRACE]);
    }
    if let Some(owner) = fd_directory_owner(ours, u) {
        rules.push(Rule::FdDirectoryOwner { owner });
        d.needs = d.needs.union(CapSet::of(&[Capability::DAC_READ_SEARCH]));
    }
    if let Some(bounding) = ours.bounding {
        d.unattainable = d.needs.minus(bounding);
    }
    d.cause = if rules.is_empty() {
        Cause::Policy {
            other_user_ns: u.user_ns == UserNs::Unknown && !d.ptrace_reaches,
        }
    } else {
        Cause::Rules(rules)
    };
    d
}

/// The owner of the refused fd directory (mode 0500) when its permission
/// bits are what refused us: another uid, and no DAC override.
fn fd_directory_owner(ours: &Credentials, u: &Unreadable) -> Option<u32> {
    let dir_refused = u.refused.iter().any(|r| r.read == Read::FdDirectory);
    let dac = ours.effective.has(Capability::DAC_READ_SEARCH)
        || ours.effective.has(Capability::DAC_OVERRIDE);
    if !dir_refused || dac {
        return None;
    }
    u.owner_uid.filter(|&o| o != ours.fsuid())
}

/// The ptrace access check's rules that refuse `target` to a reader
/// without CAP_SYS_PTRACE over it (`missing`: its permitted capabilities
/// we lack).
fn ptrace_rules(
    ours: &Credentials,
    target: &Credentials,
    u: &Unreadable,
    missing: CapSet,
) -> Vec<Rule> {
    let mut rules = Vec::new();
    let same_ids = target.uid[..3].iter().all(|&id| id == ours.fsuid())
        && target.gid[..3].iter().all(|&id| id == ours.fsgid());
    if !same_ids {
        rules.push(Rule::OtherUid {
            ours: ours.fsuid(),
            theirs: target.euid(),
        });
    }
    if u.owner_uid == Some(0) && target.euid() != 0 {
        rules.push(Rule::NotDumpable);
    }
    match u.user_ns {
        UserNs::Other => rules.push(Rule::OtherUserNs),
        _ if !missing.is_empty() => rules.push(Rule::HoldsCapabilities),
        _ => {}
    }
    rules
}

/// `CAP_A, CAP_B and 3 more`: at most `max` names.
fn names(set: CapSet, max: usize) -> String {
    let names = set.names();
    if names.len() <= max {
        return join_and(&names);
    }
    format!("{} and {} more", names[..max].join(", "), names.len() - max)
}

/// `a`, `a and b`, `a, b and c`.
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `EACCES`, `EPERM`, or the number.
pub fn errno_name(errno: i32) -> String {
    match errno {
        EACCES => "EACCES".to_string(),
        EPERM => "EPERM".to_string(),
        2 => "ENOENT".to_string(),
        3 => "ESRCH".to_string(),
        n => format!("errno {n}"),
    }
}

impl Diagnosis {
    /// A short code for scripts.
    pub fn code(&self) -> &'static str {
        match self.cause {
            Cause::Rules(_) => "uid_or_capabilities",
            Cause::Policy { .. } => "security_policy",
            Cause::NotPermission => "not_permission",
            Cause::ReadableAgain => "readable_again",
            Cause::Unknown(_) => "unknown",
        }
    }

    /// `its CapPrm 000001ffffffffff vs our CapEff 000001fffeffffff`.
    fn sets(&self) -> String {
        match (self.theirs, self.ours) {
            (Some(t), Some(o)) => format!(" (its CapPrm {t} vs our CapEff {o})"),
            _ => String::new(),
        }
    }

    /// What refuses the read, in a sentence.
    pub fn cause(&self) -> String {
        match &self.cause {
            Cause::Rules(rules) => {
                let parts: Vec<String> = rules.iter().map(|r| self.rule(r)).collect();
                format!(
                    "the kernel's uid and capability rules refuse it: {}",
                    parts.join("; ")
                )
            }
            Cause::Policy { other_user_ns } => {
                let allowed = if self.ptrace_reaches {
                    "this process holds CAP_SYS_PTRACE, which satisfies the kernel's uid and \
                     capability rules"
                        .to_string()
                } else {
                    "the kernel's uid and capability rules allow it (same uid, dumpable, its \
                     capabilities a subset of ours)"
                        .to_string()
                };
                let held = if self.missing.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; it holds {} that this process lacks{}, which CAP_SYS_PTRACE overrides",
                        names(self.missing, 6),
                        self.sets()
                    )
                };
                let ns = if *other_user_ns {
                    ", or it is in another user namespace where our capabilities do not count"
                } else {
                    ""
                };
                format!(
                    "refused although {allowed}{held}: a security module (Landlock, SELinux, \
                     AppArmor, a BPF LSM) or another policy refuses it{ns}"
                )
            }
            Cause::NotPermission => format!(
                "the read failed with {}, not a refusal",
                self.errno
                    .map_or_else(|| "an error".to_string(), errno_name)
            ),
            Cause::ReadableAgain => {
                "readable when tried again after the scan (its credentials changed, it exec'd, \
                 or its pid was reused)"
                    .to_string()
            }
            Cause::Unknown(why) => format!("unknown: {why}"),
        }
    }

    fn rule(&self, rule: &Rule) -> String {
        match rule {
            Rule::OtherUid { ours, theirs } => {
                format!("it runs as uid {theirs}, this process as uid {ours}")
            }
            Rule::NotDumpable => "it is not dumpable (its /proc entries belong to root)".into(),
            Rule::HoldsCapabilities => format!(
                "it holds {} that this process lacks{}",
                names(self.missing, 6),
                self.sets()
            ),
            Rule::OtherUserNs => {
                "it is in another user namespace, where capability sets are not compared".into()
            }
            Rule::FdDirectoryOwner { owner } => {
                format!("its /proc/PID/fd belongs to uid {owner} (mode 0500)")
            }
        }
    }

    /// What would let closewatch read it, in a sentence; only what the
    /// rules say is needed, never a promise a security module could break.
    pub fn remedy(&self) -> String {
        match &self.cause {
            Cause::Rules(rules) => {
                let needs = join_and(&self.needs.names());
                let them = if self.needs.len() == 1 { "it" } else { "them" };
                let mut s = if self.we_are_root {
                    format!("needs {needs}: grant {them} to closewatch")
                } else {
                    format!("needs {needs}: run as root, or grant {them} to closewatch")
                };
                if !self.unattainable.is_empty() {
                    s = format!(
                        "needs {needs}; this process's bounding set excludes {}, so neither it \
                         nor a root it starts can gain {them}: run closewatch from a context \
                         that has {them}",
                        join_and(&self.unattainable.names())
                    );
                }
                if rules.contains(&Rule::OtherUserNs) && self.initial_user_ns != Some(true) {
                    // Our capabilities count only in our namespace and
                    // those below it, which its may not be.
                    s = format!(
                        "needs {needs} held in its user namespace or an ancestor of it, which                          this process's may not be: run closewatch in the initial user namespace"
                    );
                }
                s
            }
            Cause::Policy {
                other_user_ns: true,
            } => "none from capabilities or uid, unless it is in another user namespace (then \
                  CAP_SYS_PTRACE held in an ancestor of it); otherwise only the policy that \
                  refuses it can allow it"
                .to_string(),
            Cause::Policy { .. } => {
                "none from capabilities or uid: only the policy that refuses it can allow it"
                    .to_string()
            }
            Cause::NotPermission => "none known: not a permission problem".to_string(),
            Cause::ReadableAgain => "none needed now".to_string(),
            Cause::Unknown(_) => "unknown".to_string(),
        }
    }
}

/// What could not be read of one process: `fd table and network namespace
/// not readable`.
pub fn what(u: &Unreadable) -> String {
    let what = match (u.fds, u.netns) {
        (true, true) => "fd table and network namespace not readable",
        (true, false) => "fd table not readable",
        (false, _) => "network namespace not readable",
    };
    if u.kernel_thread {
        format!("kernel thread, {what}")
    } else {
        what.to_string()
    }
}

/// One process the scan could not read, judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkippedProcess {
    pub process: Unreadable,
    pub diagnosis: Diagnosis,
}

impl SkippedProcess {
    /// `fd table not readable (EACCES)`.
    pub fn reason(&self) -> String {
        match self.diagnosis.errno {
            Some(e) => format!("{} ({})", what(&self.process), errno_name(e)),
            None => what(&self.process),
        }
    }
}

/// Every process the scan could not read, judged, by pid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Skipped {
    pub processes: Vec<SkippedProcess>,
    /// Unreadable processes gone before they could be examined.
    pub vanished: u64,
}

/// Judges what the report examined (only `only_pids`, when given): user
/// processes first, then kernel threads (whose namespace is the initial
/// one), each by pid.
pub fn judge(u: &UnreadableProcesses, only_pids: Option<&[u32]>) -> Skipped {
    let ours = u.ours.as_ref().map_err(String::as_str);
    let mut processes: Vec<SkippedProcess> = u
        .processes
        .iter()
        .filter(|p| only_pids.is_none_or(|pids| pids.contains(&p.pid)))
        .map(|p| SkippedProcess {
            process: p.clone(),
            diagnosis: diagnose(ours, u.initial_user_ns, p),
        })
        .collect();
    processes.sort_by_key(|p| (p.process.kernel_thread, p.process.pid));
    Skipped {
        processes,
        vanished: u.vanished,
    }
}

impl Skipped {
    /// One sentence for all of them: how many need what, how many no
    /// capability helps. `None` when there are none.
    pub fn summary(&self) -> Option<String> {
        let mut needs: Vec<(CapSet, CapSet, bool, u64)> = Vec::new();
        let mut policy = 0;
        let mut other = 0;
        for p in &self.processes {
            let d = &p.diagnosis;
            match d.cause {
                Cause::Rules(_) => match needs.iter_mut().find(|n| n.0 == d.needs) {
                    Some(n) => n.3 += 1,
                    None => needs.push((d.needs, d.unattainable, d.we_are_root, 1)),
                },
                Cause::Policy { .. } => policy += 1,
                _ => other += 1,
            }
        }
        let mut parts: Vec<String> = needs
            .iter()
            .map(|&(caps, unattainable, root, n)| {
                let verb = if n == 1 { "needs" } else { "need" };
                let names = join_and(&caps.names());
                let them = if caps.len() == 1 { "it" } else { "them" };
                let how = if !unattainable.is_empty() {
                    format!(
                        " (excluded by this process's bounding set: run closewatch from a \
                         context that has {})",
                        join_and(&unattainable.names())
                    )
                } else if root {
                    String::new()
                } else {
                    format!(" (run as root, or grant {them})")
                };
                format!("{n} {verb} {names}{how}")
            })
            .collect();
        if policy > 0 {
            parts.push(format!(
                "{} refused by a security policy whatever the capabilities",
                count(policy, "is", "are")
            ));
        }
        if other > 0 {
            parts.push(format!("{} for another reason", count(other, "is", "are")));
        }
        if parts.is_empty() {
            return None;
        }
        Some(format!("{} (see skipped)", parts.join("; ")))
    }
}

#[cfg(test)]
#[path = "access_tests.rs"]
mod tests;
