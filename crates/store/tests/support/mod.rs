//! Test fixtures of the store's acceptance tests: the synthetic models, store snapshots and
//! polling. The loopback registry itself is the `test-registry` crate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use store::Digest;

/// A synthetic model from the shared reference data.
pub fn synthetic(file: &str) -> Vec<u8> {
    std::fs::read(synthetic_path(file)).unwrap()
}

pub fn synthetic_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/reference/synthetic")
        .join(file)
}

/// Every file under `dir` with its content digest: equal snapshots mean nothing was touched.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.insert(path.clone(), "dir".into());
            out.extend(snapshot(&path));
        } else {
            out.insert(path.clone(), Digest::of_file(&path).unwrap().0.to_string());
        }
    }
    out
}

/// Polls `check` every 10 ms until it holds, failing after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < limit, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
