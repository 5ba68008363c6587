//! Integrity on load: a model's GGUF blob is hashed on first use and again only after its size or
//! modification time changed; what was verified is remembered in `verified.json` at the root of
//! the Hearth store (never in the Ollama store, which Hearth does not write).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{io_err, Result, StoreError};
use crate::fsx::{write_atomic, FileLock};
use crate::store::{ResolvedModel, Store};

/// The cache file's name under the store root.
const CACHE_FILE: &str = "verified.json";

/// What was true of a blob file when its content was last found to match its digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: u128,
}

/// Blob paths to the digest they were verified against and the file's stamp at that moment.
#[derive(Default, Serialize, Deserialize)]
struct Cache {
    blobs: BTreeMap<String, (String, Stamp)>,
}

fn stamp(path: &Path) -> Result<Stamp> {
    let meta = fs::metadata(path).map_err(io_err("read", path))?;
    let mtime = meta
        .modified()
        .map_err(io_err("read the modification time of", path))?;
    // A time before 1970 is not something a downloaded blob has; treat it as 0.
    let mtime_ns = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    Ok(Stamp {
        size: meta.len(),
        mtime_ns,
    })
}

impl Store {
    fn cache_path(&self) -> std::path::PathBuf {
        self.root().join(CACHE_FILE)
    }

    /// The cache as on disk; a missing or unreadable cache is empty (it only saves work).
    fn read_cache(&self) -> Cache {
        fs::read(self.cache_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Remembers that `path` (as it is now) holds the content `digest` names.
    pub(crate) fn record_verified(&self, path: &Path, digest: &Digest) -> Result<()> {
        let now = stamp(path)?;
        let _lock = FileLock::exclusive(&self.lock_path("verified"))?;
        let mut cache = self.read_cache();
        cache.blobs.insert(
            path.to_string_lossy().into_owned(),
            (digest.to_string(), now),
        );
        write_atomic(
            &self.cache_path(),
            &serde_json::to_vec(&cache).expect("the cache always serializes"),
        )
    }

    /// Checks a resolved model before loading: the GGUF blob's size against the manifest, its
    /// sha256 against the digest (skipped when this exact file — same size and modification time —
    /// was verified before), then the GGUF header and tensor table with the `gguf` reader. Returns
    /// the opened file, ready for the engine.
    pub fn verify(&self, model: &ResolvedModel) -> Result<gguf::Gguf> {
        let path = &model.model_path;
        let name = model.name.to_string();
        let now = stamp(path)?;
        if now.size != model.model.size {
            return Err(StoreError::BlobSize {
                name,
                path: path.clone(),
                expected: model.model.size,
                got: now.size,
            });
        }
        if !self.is_verified(path, &model.model.digest) {
            let (got, _) = Digest::of_file(path)?;
            if got != model.model.digest {
                let expected = model.model.digest.to_string();
                return Err(StoreError::BlobCorrupt {
                    name,
                    path: path.clone(),
                    expected,
                    got: got.to_string(),
                });
            }
            self.record_verified(path, &got)?;
        }
        gguf::Gguf::open(path).map_err(|source| StoreError::Gguf {
            path: path.clone(),
            source,
        })
    }

    /// Whether `path` was verified to hold `digest` and has not changed since.
    pub fn is_verified(&self, path: &Path, digest: &Digest) -> bool {
        let Ok(now) = stamp(path) else { return false };
        self.read_cache()
            .blobs
            .get(path.to_string_lossy().as_ref())
            .is_some_and(|(d, s)| *d == digest.to_string() && *s == now)
    }
}
