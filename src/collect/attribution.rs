//! Which backend maps sockets to their processes, scan by scan: the BPF
//! iterators when they can be used ([`bpf`]), else the /proc walk.
//!
//! `auto` loads the iterators at the first scan that wants them (on a
//! thread of their own, while that scan dumps the sockets) and keeps them; when they cannot be loaded, or a read fails, the scan walks /proc
//! instead and the reason is logged once. Loading costs about 100 ms (aya
//! parses the kernel's BTF for the object's relocations), what the /proc
//! walk spends on some 30,000 fds: a lone scan (`--report`) of a host with
//! fewer open files than [`ONE_SHOT_FLOOR`] walks /proc; scans that share a
//! collector (the agent, `--duration`) load once. `bpf` fails the attribution of a
//! scan rather than fall back; `procfs` never tries BPF.

use std::sync::{Mutex, MutexGuard};

use super::bpf::{BpfError, Iterators};
use super::procfs::ProcRoot;
use crate::sync::lock;

/// Open files on the host (file-nr) from which a lone scan loads the
/// iterators under `auto`.
pub const ONE_SHOT_FLOOR: u64 = 20_000;

/// The `--attribution` choice.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// BPF when it loads and this process sees the host's pids, else /proc.
    #[default]
    Auto,
    /// Only BPF: a scan that cannot use it has its attribution fail.
    Bpf,
    /// Only the /proc walk.
    Procfs,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Bpf => "bpf",
            Mode::Procfs => "procfs",
        }
    }
}

enum State {
    Untried,
    /// Being loaded on a thread of its own, while the scan dumps.
    Loading(std::thread::JoinHandle<Result<Iterators, BpfError>>),
    Loaded(Box<Iterators>),
    /// Could not be loaded (or this process is in another pid namespace
    /// than /proc's): the reason, logged once.
    Unavailable(BpfError),
}

/// This process as /proc names it: its pid and start time (clock ticks).
#[derive(Clone, Copy, Debug)]
pub struct Me {
    pub pid: u32,
    pub start_time: u64,
    pub ticks_per_second: u64,
}

/// The backend of one collector, shared by its clones.
pub struct Attributor {
    mode: Mode,
    state: Mutex<State>,
    /// Reasons already logged (a read that fails every scan is logged once).
    logged: Mutex<Vec<String>>,
}

impl std::fmt::Debug for Attributor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Attributor({})", self.mode.name())
    }
}

/// What a scan may use: the iterators, or a reason to walk /proc.
pub enum Backend<'a> {
    Bpf(BpfScan<'a>),
    /// The iterators are being loaded: ask again (with `wait`) once the
    /// dumps are done.
    Loading,
    Procfs,
    /// `--attribution bpf`, and BPF cannot be used: the scan's attribution
    /// fails with this.
    Failed(BpfError),
}

/// The iterators, held for one scan.
pub struct BpfScan<'a> {
    guard: MutexGuard<'a, State>,
    pub me: Me,
}

impl BpfScan<'_> {
    pub fn iterators(&mut self) -> &mut Iterators {
        match &mut *self.guard {
            State::Loaded(it) => it,
            // Only made from a loaded state.
            _ => unreachable!("a BpfScan holds loaded iterators"),
        }
    }
}

impl Attributor {
    pub fn new(mode: Mode) -> Attributor {
        Attributor {
            mode,
            state: Mutex::new(State::Untried),
            logged: Mutex::new(Vec::new()),
        }
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The backend for a scan of `root`. The first time, the iterators are
    /// loaded on a thread of their own: without `wait` this returns
    /// [`Backend::Loading`] at once, and the scan asks again when it needs
    /// them. `lone` is the host's open files when the scan is a lone one
    /// (nothing keeps the iterators for a next scan).
    pub fn backend(&self, root: &ProcRoot, lone: Option<Option<u64>>, wait: bool) -> Backend<'_> {
        let small = matches!(lone, Some(Some(files)) if files < ONE_SHOT_FLOOR);
        if self.mode == Mode::Procfs || (self.mode == Mode::Auto && small) {
            return Backend::Procfs;
        }
        let mut guard = lock(&self.state);
        if matches!(*guard, State::Untried) {
            *guard = match whoami(root) {
                Ok(_) => State::Loading(std::thread::spawn(load)),
                Err(e) => State::Unavailable(e),
            };
        }
        if matches!(*guard, State::Loading(_)) {
            if !wait {
                return Backend::Loading;
            }
            if let State::Loading(handle) = std::mem::replace(&mut *guard, State::Untried) {
                *guard = match handle.join() {
                    Ok(Ok(it)) => State::Loaded(Box::new(it)),
                    Ok(Err(e)) => State::Unavailable(e),
                    Err(_) => State::Unavailable(BpfError {
                        what: "loading the BPF object",
                        why: "the loading thread panicked".into(),
                    }),
                };
            }
        }
        let me = match &*guard {
            State::Loaded(_) => whoami(root),
            State::Unavailable(e) => Err(e.clone()),
            State::Untried | State::Loading(_) => return Backend::Procfs,
        };
        let me = match me {
            Ok(me) => me,
            Err(e) => {
                drop(guard);
                return self.unavailable(e);
            }
        };
        Backend::Bpf(BpfScan { guard, me })
    }

    /// A scan that cannot use BPF: it walks /proc (logged once per
    /// reason), or under `--attribution bpf` its attribution fails.
    pub fn unavailable(&self, e: BpfError) -> Backend<'_> {
        if self.mode == Mode::Bpf {
            return Backend::Failed(e);
        }
        let text = e.to_string();
        let mut logged = lock(&self.logged);
        if !logged.contains(&text) {
            log::warn!("BPF attribution unavailable, reading /proc instead: {text}");
            logged.push(text);
        }
        Backend::Procfs
    }
}

/// Loads the iterators.
fn load() -> Result<Iterators, BpfError> {
    let started = std::time::Instant::now();
    let it = Iterators::load();
    // Parsing the kernel's BTF takes some 40 MB, all freed by now, in this
    // thread's malloc arena: give it back rather than keep it for the
    // agent's lifetime.
    crate::malloc::trim();
    let it = it?;
    log::debug!("BPF iterators loaded in {:?}", started.elapsed());
    Ok(it)
}

/// This process as `root` names it; an error when `root` is not the procfs
/// of this process's pid namespace (a fixture tree, or another namespace's
/// /proc), whose pids the iterators would not match.
fn whoami(root: &ProcRoot) -> Result<Me, BpfError> {
    let pid = rustix::process::getpid().as_raw_nonzero().get() as u32;
    let wrong = |why: String| BpfError {
        what: "matching /proc's pids",
        why,
    };
    let own = std::fs::read_link(root.path().join("self"))
        .map_err(|e| wrong(format!("{}/self: {e}", root.path().display())))?;
    if own.as_os_str().as_encoded_bytes() != pid.to_string().as_bytes() {
        return Err(wrong(format!(
            "{} is the /proc of another pid namespace",
            root.path().display()
        )));
    }
    let stat = std::fs::read(root.path().join("self/stat"))
        .map_err(|e| wrong(format!("{}/self/stat: {e}", root.path().display())))?;
    let start_time = super::procfs::parse::stat(&stat)
        .map_err(|e| wrong(e.to_string()))?
        .start_time;
    Ok(Me {
        pid,
        start_time,
        ticks_per_second: rustix::param::clock_ticks_per_second(),
    })
}
