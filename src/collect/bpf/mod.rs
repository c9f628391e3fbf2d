//! Attribution in the kernel: two BPF iterators (bpf/attribution.bpf.c)
//! read every thread-group leader and every open fd of every fd table in
//! one pass each, where the /proc walk reads one link per fd. A third one
//! lists the TCP sockets processes hold, with their namespace and
//! addresses: where every socket of a namespace is held, its table can be
//! read by lookups instead of a dump (see `collect::tables`).
//!
//! The object is built from its C source by bpf/build.sh and embedded; it
//! is loaded once ([`Iterators::load`]: the kernel's BTF is parsed for the
//! object's CO-RE relocations) and read at every scan. Loading needs
//! CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN). An iterator sees every
//! task's fds with no ptrace access check.
//!
//! The iterators see the tasks of the reader's pid namespace and name them
//! by their pid in the initial one: [`Iterators::tasks`] checks that this
//! process finds itself under its own pid, so the pids match /proc.

pub mod btf;
mod records;
mod walk;

use std::fs::File;
use std::io::{ErrorKind, Read};

use aya::programs::Iter;
use aya::{Ebpf, EbpfLoader};

pub use records::{
    fd, task, tcp, tgid, Decoder, FdKind, FdRecord, RecordError, TaskRecord, TcpRecord, FD_RECORD,
    TASK_RECORD, TCP_RECORD,
};
pub use walk::Builder;

/// The compiled object (bpf/build.sh), aligned for the ELF parser.
static OBJECT: &[u8] = aya::include_bytes_aligned!("../../../bpf/attribution.bpf.o");

const TASK: &str = "closewatch_task";
const TASK_FILE: &str = "closewatch_task_file";
const TCP: &str = "closewatch_tcp";

/// Why the BPF backend could not be used: what failed, and the kernel's
/// answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {why}")]
pub struct BpfError {
    pub what: &'static str,
    pub why: String,
}

impl BpfError {
    fn new(what: &'static str, why: impl std::fmt::Display) -> BpfError {
        let why = why.to_string();
        // aya nests the errno under its own words; say what to do about it.
        let hint = if why.contains("Operation not permitted") || why.contains("EPERM") {
            " (needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN)"
        } else {
            ""
        };
        BpfError {
            what,
            why: format!("{why}{hint}"),
        }
    }
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// The iterator programs, loaded.
pub struct Iterators {
    ebpf: Ebpf,
}

impl std::fmt::Debug for Iterators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Iterators")
    }
}

impl Iterators {
    /// Parses the kernel's BTF, loads and verifies the programs.
    ///
    /// The loader parses the kernel's BTF for the CO-RE relocations; the
    /// ids `Iter::load` needs of it are read on a second thread meanwhile,
    /// without a second parse (see [`btf`]).
    pub fn load() -> Result<Iterators, BpfError> {
        let targets = std::thread::spawn(|| btf::targets(&["task", "task_file"]));
        let mut loader = EbpfLoader::new();
        let targets = targets
            .join()
            .map_err(|_| BpfError::new("reading the kernel's BTF", "the reading thread panicked"))?
            .map_err(|e| BpfError::new("reading the kernel's BTF", e))?;
        let mut ebpf = loader
            .load(OBJECT)
            .map_err(|e| BpfError::new("loading the BPF object", chain(&e)))?;
        for (name, target) in [(TASK, "task"), (TASK_FILE, "task_file"), (TCP, "task_file")] {
            let program: &mut Iter = ebpf
                .program_mut(name)
                .ok_or_else(|| {
                    BpfError::new("loading the BPF object", format!("no program {name}"))
                })?
                .try_into()
                .map_err(|e: aya::programs::ProgramError| {
                    BpfError::new("loading the BPF object", chain(&e))
                })?;
            program
                .load(target, &targets)
                .map_err(|e| BpfError::new("loading the iterator", chain(&e)))?;
        }
        Ok(Iterators { ebpf })
    }

    /// A fresh read of one iterator (a link, then an iterator fd; both go
    /// when the file is dropped).
    fn open(&mut self, name: &str) -> Result<File, BpfError> {
        let program: &mut Iter = self
            .ebpf
            .program_mut(name)
            .ok_or_else(|| BpfError::new("attaching the iterator", format!("no program {name}")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| {
                BpfError::new("attaching the iterator", chain(&e))
            })?;
        let id = program
            .attach()
            .map_err(|e| BpfError::new("attaching the iterator", chain(&e)))?;
        let link = program
            .take_link(id)
            .map_err(|e| BpfError::new("attaching the iterator", chain(&e)))?;
        link.into_file()
            .map_err(|e| BpfError::new("opening the iterator", chain(&e)))
    }

    /// Reads the iterator `name` to its end, handing each chunk to `each`.
    fn read(&mut self, name: &str, mut each: impl FnMut(&[u8])) -> Result<(), BpfError> {
        let mut file = self.open(name)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match file.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => each(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(BpfError::new("reading the iterator", e)),
            }
        }
    }

    /// The raw output of the task iterator (`false`) or of the task_file
    /// one (`true`): for recording fixtures.
    pub fn raw(&mut self, task_file: bool) -> Result<Vec<u8>, BpfError> {
        let mut out = Vec::new();
        let name = if task_file { TASK_FILE } else { TASK };
        self.read(name, |chunk| out.extend_from_slice(chunk))?;
        Ok(out)
    }

    /// Every thread-group leader of this pid namespace. Fails when this
    /// process is not among them under its own pid and start time (the
    /// iterator's pids are not this pid namespace's).
    pub fn tasks(
        &mut self,
        me: (u32, u64),
        ticks_per_second: u64,
    ) -> Result<Vec<TaskRecord>, BpfError> {
        let mut tasks = Vec::with_capacity(1024);
        let mut decoder = Decoder::<TASK_RECORD>::default();
        self.read(TASK, |chunk| {
            decoder.feed(chunk, |r| tasks.push(records::task(r)))
        })?;
        decoder
            .finish()
            .map_err(|e| BpfError::new("reading the task iterator", e))?;
        let (pid, start) = me;
        let found = tasks
            .iter()
            .any(|t| t.tgid == pid && walk::ticks(t.start_boottime_ns, ticks_per_second) == start);
        if !found {
            return Err(BpfError::new(
                "matching the iterator's pids to /proc",
                format!("pid {pid} (this process) is not where the iterator sees it: another pid namespace"),
            ));
        }
        Ok(tasks)
    }

    /// Every open fd, to `each`; how many there were.
    pub fn fds(&mut self, mut each: impl FnMut(&FdRecord)) -> Result<u64, BpfError> {
        let mut decoder = Decoder::<FD_RECORD>::default();
        let mut count = 0u64;
        let mut bad = None;
        self.read(TASK_FILE, |chunk| {
            decoder.feed(chunk, |r| match records::fd(r) {
                Ok(r) => {
                    count += 1;
                    each(&r);
                }
                Err(e) => bad = Some(e),
            })
        })?;
        if let Some(e) = bad {
            return Err(BpfError::new("reading the task_file iterator", e));
        }
        decoder
            .finish()
            .map_err(|e| BpfError::new("reading the task_file iterator", e))?;
        Ok(count)
    }

    /// Every fd of a TCP socket in a TCP table, to `each` (a socket held
    /// by several fds comes once per fd).
    pub fn tcp_sockets(&mut self, mut each: impl FnMut(&TcpRecord)) -> Result<(), BpfError> {
        let mut decoder = Decoder::<TCP_RECORD>::default();
        self.read(TCP, |chunk| decoder.feed(chunk, |r| each(&records::tcp(r))))?;
        decoder
            .finish()
            .map_err(|e| BpfError::new("reading the TCP socket iterator", e))
    }
}

#[cfg(test)]
mod tests;
