//! Helpers shared by the `hearth` binary's end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A synthetic model (or its reference file) in the repository's test data.
pub fn synthetic(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference/synthetic")
        .join(name)
}

/// Runs the built `hearth` binary with `args`.
pub fn hearth(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .output()
        .unwrap()
}
