//! The git commit a source tree is, for `closewatch_build_info{revision}` and
//! `--version`; shared by build.rs and its test (tests/build_info.rs), which
//! include this file by path.
//!
//! Only a tree that is itself a git checkout has a revision: its root must
//! hold `.git` (a directory, or in a worktree a file naming the real git
//! directory). A tarball (`git archive`, `cargo package`) has none, even when
//! unpacked inside another repository (cargo verifies a package under
//! `target/package/`, inside ours): its revision is [`UNKNOWN`]. git itself
//! answers, so worktrees, packed refs and `GIT_DIR` quirks are its business.
//!
//! The answer comes with the files to watch (`cargo:rerun-if-changed`) so
//! that the build script reruns when a commit or checkout moves HEAD, and not
//! at every build: HEAD, the branch's ref file, and packed-refs. Only files
//! that exist: cargo treats a missing one as changed at every build.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The revision of a tree that is not a git checkout.
pub const UNKNOWN: &str = "unknown";

/// A tree's revision and what to watch to know when it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The full commit hash (as node_exporter's build_info has it), or
    /// [`UNKNOWN`].
    pub commit: String,
    /// Files whose change may change `commit`.
    pub watch: Vec<PathBuf>,
}

impl Revision {
    fn unknown() -> Revision {
        Revision {
            commit: UNKNOWN.to_string(),
            watch: Vec::new(),
        }
    }
}

/// Runs `git -C root ARGS` with the caller's GIT_* locations removed (a build
/// run from a git hook inherits GIT_DIR, which would override `root`); its
/// trimmed stdout on success.
fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_COMMON_DIR")
        .env_remove("GIT_INDEX_FILE")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_string())
}

/// Whether `s` is a full hexadecimal object name (SHA-1 or SHA-256).
pub fn is_commit_hash(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The path git uses for `name` in the repository of `root` (`--git-path`
/// resolves worktrees: HEAD is the worktree's, refs are the common dir's).
fn git_path(root: &Path, name: &str) -> Option<PathBuf> {
    let p = PathBuf::from(git(root, &["rev-parse", "--git-path", name])?);
    Some(if p.is_absolute() { p } else { root.join(p) })
}

/// The revision of the tree at `root` (the crate's manifest directory).
pub fn of_tree(root: &Path) -> Revision {
    if !root.join(".git").exists() {
        return Revision::unknown();
    }
    let Some(commit) = git(root, &["rev-parse", "--verify", "HEAD"]).filter(|c| is_commit_hash(c))
    else {
        return Revision::unknown();
    };
    let mut watch = Vec::new();
    watch.extend(git_path(root, "HEAD"));
    // On a branch, a commit rewrites the branch's ref, not HEAD. A packed
    // ref has no file of its own; the first commit after packing writes it,
    // so then the directory it will appear in is watched.
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        if let Some(file) = git_path(root, &branch) {
            let existing = file.ancestors().find(|p| p.exists()).map(Path::to_path_buf);
            watch.extend(existing);
        }
    }
    watch.extend(git_path(root, "packed-refs"));
    watch.retain(|p| p.exists());
    watch.dedup();
    Revision { commit, watch }
}
