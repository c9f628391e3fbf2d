//! Build metadata for `closewatch_build_info` and `--version`: the git commit
//! of the source tree (`CLOSEWATCH_REVISION`, "unknown" outside a git
//! checkout) and the compiler's version (`CLOSEWATCH_RUSTC`). Reruns only
//! when HEAD or the branch it points to moves (build/revision.rs).

#[path = "build/revision.rs"]
mod revision;

use std::path::PathBuf;
use std::process::Command;

/// `rustc -V` of the compiler cargo builds with: "rustc 1.95.0 (59807616e
/// 2026-04-14)" → "1.95.0".
fn rustc_version() -> String {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_string))
        .unwrap_or_else(|| revision::UNKNOWN.to_string())
}

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| ".".into()));
    let rev = revision::of_tree(&root);
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build/revision.rs");
    for path in &rev.watch {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    println!("cargo:rustc-env=CLOSEWATCH_REVISION={}", rev.commit);
    println!("cargo:rustc-env=CLOSEWATCH_RUSTC={}", rustc_version());
}
