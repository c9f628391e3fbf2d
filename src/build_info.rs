//! What this binary is: its version, the git commit and the compiler it was
//! built from (set by build.rs), for `closewatch_build_info` and `--version`.

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The full commit hash, or "unknown" when built outside a git checkout.
pub const REVISION: &str = env!("CLOSEWATCH_REVISION");
/// The compiler's version, as `rustc -V` gives it ("1.95.0").
pub const RUSTC: &str = env!("CLOSEWATCH_RUSTC");
/// What `--version` prints after the program's name.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("CLOSEWATCH_REVISION"),
    ", rustc ",
    env!("CLOSEWATCH_RUSTC"),
    ")"
);
