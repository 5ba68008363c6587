//! `hearth create NAME --from DIR`: a Hugging Face model directory (all-MiniLM-L6-v2, fetched by
//! `scripts/fetch-test-models.sh minilm`) converted and imported into a store of its own.

mod common;

use std::path::{Path, PathBuf};

use common::TestStore;

/// The Hugging Face form of all-MiniLM-L6-v2, if it has been fetched.
fn minilm() -> Option<PathBuf> {
    let root = std::env::var_os("HEARTH_TEST_MODELS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/hearth/test-models"))
        })?;
    let dir = root.join("all-minilm-l6-v2");
    if dir.join("model.safetensors").exists() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: {} is missing (scripts/fetch-test-models.sh minilm)",
            dir.display()
        );
        None
    }
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn create_from_a_hugging_face_directory() {
    let Some(dir) = minilm() else { return };
    let store = TestStore::new();
    let (_, err) = store.ok(&[
        "create",
        "minilm",
        "--from",
        path(&dir),
        "--quantize",
        "q8_0",
    ]);
    assert!(err.contains("converted bert: 101 tensors"), "{err}");
    let (out, _) = store.ok(&["show", "minilm"]);
    let arch = out
        .lines()
        .find(|l| l.trim_start().starts_with("architecture"))
        .unwrap_or_else(|| panic!("no architecture line in:\n{out}"));
    assert_eq!(arch.split_whitespace().last(), Some("bert"), "{out}");
    assert!(out.contains("Q8_0"), "{out}");
    let (list, _) = store.ok(&["list"]);
    assert!(list.contains("minilm"), "{list}");
    // Only the model's blobs and manifest: the temporary file is gone.
    let leftovers: Vec<_> = std::fs::read_dir(store.models.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn create_from_a_bad_directory_names_what_is_wrong() {
    let store = TestStore::new();
    let empty = tempfile::tempdir().unwrap();
    let out = store.hearth(&["create", "broken", "--from", path(empty.path())]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("config.json is missing"), "{err}");
    let (list, _) = store.ok(&["list"]);
    assert!(!list.contains("broken"), "{list}");

    let out = store.hearth(&[
        "create",
        "x",
        "--from",
        path(empty.path()),
        "-f",
        "Modelfile",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cannot be used with"), "{err}");

    let out = store.hearth(&["create", "x", "--from", path(empty.path()), "-q", "q4_K_M"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("f32, f16 or q8_0"), "{err}");
}
