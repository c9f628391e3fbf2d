//! The revision build.rs gives the binary (`closewatch_build_info{revision}`,
//! `--version`): the full commit in a git checkout, worktrees and packed
//! refs included, and "unknown" in a tarball, even one unpacked inside
//! another repository. The lookup is build.rs's own code (build/revision.rs,
//! included here by path), run on real repositories made by git in temp
//! dirs: building the crate from a `git archive` would take minutes.

#[path = "../build/revision.rs"]
mod revision;

use std::path::Path;
use std::process::Command;

/// `git ARGS` in `dir`, with a fixed identity and no user config; its
/// trimmed stdout. Panics on failure.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=closewatch test",
            "-c",
            "user.email=t@example.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .args(args)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

/// A repository with one commit; its commit hash.
fn repo_with_a_commit(dir: &Path) -> String {
    git(dir, &["init", "-q"]);
    std::fs::write(dir.join("Cargo.toml"), "[package]\n").expect("write");
    git(dir, &["add", "Cargo.toml"]);
    git(dir, &["commit", "-q", "-m", "first"]);
    git(dir, &["rev-parse", "HEAD"])
}

fn commit_again(dir: &Path, what: &str) -> String {
    std::fs::write(dir.join("Cargo.toml"), format!("[package]\n# {what}\n")).expect("write");
    git(dir, &["commit", "-q", "-a", "-m", what]);
    git(dir, &["rev-parse", "HEAD"])
}

#[test]
fn a_tree_without_git_is_unknown_and_watches_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let rev = revision::of_tree(dir.path());
    assert_eq!(rev.commit, "unknown");
    assert!(rev.watch.is_empty(), "{:?}", rev.watch);
}

#[test]
fn a_checkout_is_its_full_commit_and_watches_head_and_the_branch() {
    let dir = tempfile::tempdir().expect("temp dir");
    let commit = repo_with_a_commit(dir.path());
    let rev = revision::of_tree(dir.path());
    assert_eq!(rev.commit, commit);
    assert!(revision::is_commit_hash(&rev.commit), "{}", rev.commit);
    let git_dir = dir.path().join(".git");
    assert!(rev.watch.contains(&git_dir.join("HEAD")), "{:?}", rev.watch);
    assert!(
        rev.watch.contains(&git_dir.join("refs/heads/main")),
        "{:?}",
        rev.watch
    );
    // The watched ref is what a commit rewrites, and the lookup follows it.
    let before = std::fs::read(git_dir.join("refs/heads/main")).expect("ref");
    let next = commit_again(dir.path(), "second");
    assert_ne!(
        std::fs::read(git_dir.join("refs/heads/main")).expect("ref"),
        before
    );
    assert_eq!(revision::of_tree(dir.path()).commit, next);
}

#[test]
fn a_worktree_follows_its_own_head_through_the_gitdir_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let main = dir.path().join("main");
    std::fs::create_dir(&main).expect("mkdir");
    repo_with_a_commit(&main);
    let wt = dir.path().join("wt");
    git(
        &main,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "feature",
            wt.to_str().expect("UTF-8"),
        ],
    );
    assert!(wt.join(".git").is_file(), "a worktree's .git is a file");
    let in_wt = commit_again(&wt, "on the feature branch");
    let rev = revision::of_tree(&wt);
    assert_eq!(rev.commit, in_wt);
    assert_ne!(revision::of_tree(&main).commit, in_wt, "main did not move");
    let common = main.join(".git");
    assert!(
        rev.watch.contains(&common.join("worktrees/wt/HEAD")),
        "the worktree's HEAD: {:?}",
        rev.watch
    );
    assert!(
        rev.watch.contains(&common.join("refs/heads/feature")),
        "the branch's ref in the common dir: {:?}",
        rev.watch
    );
}

#[test]
fn packed_refs_are_watched_and_only_files_that_exist() {
    let dir = tempfile::tempdir().expect("temp dir");
    let commit = repo_with_a_commit(dir.path());
    git(dir.path(), &["pack-refs", "--all"]);
    let git_dir = dir.path().join(".git");
    assert!(
        !git_dir.join("refs/heads/main").exists(),
        "the ref is packed"
    );
    let rev = revision::of_tree(dir.path());
    assert_eq!(rev.commit, commit);
    assert!(
        rev.watch.contains(&git_dir.join("packed-refs")),
        "{:?}",
        rev.watch
    );
    // The next commit writes a loose ref file where none is now: the
    // directory it appears in is watched instead of a missing file (which
    // cargo would take as changed at every build).
    assert!(
        rev.watch.contains(&git_dir.join("refs/heads")),
        "{:?}",
        rev.watch
    );
    for p in &rev.watch {
        assert!(p.exists(), "{} does not exist", p.display());
    }
}

#[test]
fn a_tarball_unpacked_inside_a_repository_is_unknown() {
    // As `cargo package` verifies the crate under target/package/, inside
    // the repository it was made from: git would find the outer repository.
    let dir = tempfile::tempdir().expect("temp dir");
    repo_with_a_commit(dir.path());
    let unpacked = dir.path().join("target/package/crate-0.1.0");
    std::fs::create_dir_all(&unpacked).expect("mkdir");
    let tar = dir.path().join("crate.tar");
    git(
        dir.path(),
        &["archive", "-o", tar.to_str().expect("UTF-8"), "HEAD"],
    );
    let status = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("run tar");
    assert!(status.success());
    assert!(unpacked.join("Cargo.toml").exists(), "the archive unpacked");
    assert!(
        Command::new("git")
            .arg("-C")
            .arg(&unpacked)
            .args(["rev-parse", "HEAD"])
            .output()
            .expect("git")
            .status
            .success(),
        "git itself would answer with the outer repository's commit"
    );
    assert_eq!(revision::of_tree(&unpacked).commit, "unknown");
}

/// This very build: the binary and the library carry the revision of the
/// source tree they were built from.
#[test]
fn the_binary_reports_the_revision_of_its_source_tree() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let expected = revision::of_tree(root).commit;
    if root.join(".git").exists() {
        assert!(revision::is_commit_hash(&expected), "{expected}");
    } else {
        assert_eq!(expected, "unknown");
    }
    assert_eq!(closewatch::build_info::REVISION, expected);
    let out = Command::new(env!("CARGO_BIN_EXE_closewatch"))
        .arg("--version")
        .output()
        .expect("run closewatch --version");
    assert!(out.status.success());
    let version = String::from_utf8(out.stdout).expect("UTF-8");
    let rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-V")
        .output()
        .expect("rustc -V");
    let rustc = String::from_utf8(rustc.stdout).expect("UTF-8");
    let rustc = rustc.split_whitespace().nth(1).expect("a version");
    assert_eq!(
        version.trim(),
        format!(
            "closewatch {} (revision {expected}, rustc {rustc})",
            env!("CARGO_PKG_VERSION")
        )
    );
}
