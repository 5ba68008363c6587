//! What the engine's end-to-end tests share.

use std::path::PathBuf;

/// A real test model, fetched by `scripts/fetch-test-models.sh` into `$HEARTH_TEST_MODELS`
/// (default `~/.cache/hearth/test-models`); a missing one fails the test with how to fetch it.
pub fn real_model(file: &str) -> PathBuf {
    let dir = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/hearth/test-models")
        });
    let p = dir.join(file);
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch-test-models.sh",
        p.display()
    );
    p
}
