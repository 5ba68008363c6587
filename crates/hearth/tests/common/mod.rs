//! Helpers shared by the `hearth` binary's end-to-end tests.

// Every test binary compiles this module and uses only some of it.
#![allow(dead_code)]

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

/// The number in `--verbose`'s "prompt eval: N tokens" line.
pub fn prompt_tokens(stderr: &[u8]) -> usize {
    let err = String::from_utf8_lossy(stderr);
    let at = err.find("prompt eval: ").expect("a prompt eval line") + "prompt eval: ".len();
    err[at..]
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A model store of its own for one test: `HEARTH_MODELS` points at a fresh temporary directory
/// and `OLLAMA_MODELS` at an empty one, so nothing touches `~/.hearth` or `~/.ollama`.
pub struct TestStore {
    pub models: tempfile::TempDir,
    ollama: tempfile::TempDir,
}

impl TestStore {
    pub fn new() -> TestStore {
        TestStore {
            models: tempfile::tempdir().unwrap(),
            ollama: tempfile::tempdir().unwrap(),
        }
    }

    /// The `hearth` command with this store in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hearth"));
        cmd.args(args)
            .env("HEARTH_MODELS", self.models.path())
            .env("OLLAMA_MODELS", self.ollama.path())
            // No server (port 9 on loopback is closed): `list`, `pull` and `run` would use one
            // that answers at HEARTH_HOST or 127.0.0.1:11434 instead of this store.
            .env("HEARTH_HOST", "127.0.0.1:9")
            .env_remove("HEARTH_KV_CACHE_TYPE");
        cmd
    }

    /// Runs `hearth` with this store.
    pub fn hearth(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    /// Runs `hearth` with this store and fails the test unless it succeeds; returns its
    /// standard output and standard error.
    pub fn ok(&self, args: &[&str]) -> (String, String) {
        let out = self.hearth(args);
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        assert!(
            out.status.success(),
            "hearth {args:?} failed:\n{}",
            text(&out.stderr)
        );
        (text(&out.stdout), text(&out.stderr))
    }
}
