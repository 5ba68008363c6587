//! [`Store`]: where manifests and blobs live, and the operations on installed models.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Digest;
use crate::error::{io_err, Result, StoreError};
use crate::fsx::{is_temp_name, sync_dir, temp_sibling, write_atomic, FileLock};
use crate::manifest::{media_type, Layer, Manifest, MAX_MANIFEST_BYTES, MAX_TEXT_LAYER_BYTES};
use crate::name::ModelName;

/// Which store a model was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// Hearth's own store (read and written).
    Hearth,
    /// An existing Ollama store (only ever read).
    Ollama,
}

/// One installed model, as `list` shows it.
#[derive(Clone, Debug)]
pub struct ModelEntry {
    /// The name, spelled as stored.
    pub name: ModelName,
    /// The digest of the manifest bytes (`list` shows [`Digest::short`], as Ollama does).
    pub digest: Digest,
    /// Total bytes of the model's blobs (0 when the manifest is invalid).
    pub size: u64,
    /// When the manifest was last written.
    pub modified: SystemTime,
    /// Which store holds it.
    pub source: Source,
    /// Why the manifest cannot be used, if it cannot (the model is listed so the user sees it).
    pub problem: Option<String>,
}

/// A few-shot message baked into a model (`MESSAGE` in a Modelfile).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

/// Everything needed to load and run a model: the GGUF blob's path and the text layers.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// The name, spelled as stored.
    pub name: ModelName,
    /// Which store holds it.
    pub source: Source,
    /// The digest of the manifest bytes.
    pub digest: Digest,
    /// The manifest.
    pub manifest: Manifest,
    /// The GGUF weights' layer.
    pub model: Layer,
    /// The GGUF weights' path (check it with [`Store::verify`] before loading).
    pub model_path: PathBuf,
    /// A vision projector's path, if the model has one.
    pub projector_path: Option<PathBuf>,
    /// The prompt template layer, if any.
    pub template: Option<String>,
    /// The default system message, if any.
    pub system: Option<String>,
    /// Default options (`PARAMETER` lines), as JSON values by option name.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// License texts.
    pub license: Vec<String>,
    /// Few-shot messages.
    pub messages: Vec<Message>,
}

/// What [`Store::gc`] and [`Store::remove`] deleted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The blobs deleted.
    pub removed: Vec<Digest>,
    /// Their total size.
    pub freed_bytes: u64,
}

/// A manifest file found on disk.
pub(crate) struct Found {
    pub(crate) name: ModelName,
    pub(crate) path: PathBuf,
    pub(crate) source: Source,
}

/// A content-addressed model store in Ollama's layout, with an optional read-only Ollama store
/// behind it.
///
/// Layout under the root: `manifests/<host>/<namespace>/<model>/<tag>` (manifest JSON) and
/// `blobs/sha256-<hex>` (content named by its digest), exactly as Ollama lays it out; Hearth adds
/// `locks/` (advisory lock files) and `verified.json` (see [`Store::verify`]). Lookups try the
/// Hearth store first, then the Ollama store; writes only ever go to the Hearth store.
///
/// Consistency: blobs become visible only complete and verified (rename of a checked temporary
/// file), and a manifest is written last and atomically, so a model is listed only once all its
/// blobs are in place. Pulls and creates hold the store lock shared; `gc` and `remove` take it
/// exclusively, so they never delete a blob that an unfinished pull is about to reference.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
    ollama: Option<PathBuf>,
}

impl Store {
    /// A store rooted at `root`, with no Ollama fallback. Nothing is created until a write.
    pub fn new(root: impl Into<PathBuf>) -> Store {
        Store {
            root: root.into(),
            ollama: None,
        }
    }

    /// The store the environment asks for: [`Store::default_root`] with
    /// [`Store::default_ollama_root`] as the read-only fallback.
    pub fn from_env() -> Result<Store> {
        Ok(Store::new(Store::default_root()?).with_ollama(Store::default_ollama_root()))
    }

    /// `$HEARTH_MODELS`, else `~/.hearth/models`.
    pub fn default_root() -> Result<PathBuf> {
        match std::env::var_os("HEARTH_MODELS").filter(|v| !v.is_empty()) {
            Some(dir) => Ok(PathBuf::from(dir)),
            None => Ok(home_dir()
                .ok_or(StoreError::NoHome)?
                .join(".hearth")
                .join("models")),
        }
    }

    /// `$OLLAMA_MODELS`, else `~/.ollama/models`, if that directory exists.
    pub fn default_ollama_root() -> Option<PathBuf> {
        let dir = match std::env::var_os("OLLAMA_MODELS").filter(|v| !v.is_empty()) {
            Some(dir) => PathBuf::from(dir),
            None => home_dir()?.join(".ollama").join("models"),
        };
        dir.is_dir().then_some(dir)
    }

    /// Uses `ollama` (an Ollama models directory) as a read-only fallback for lookups. A
    /// fallback that is the store's own root is ignored: that store is then simply written.
    pub fn with_ollama(mut self, ollama: Option<PathBuf>) -> Store {
        let same = |dir: &PathBuf| match (fs::canonicalize(dir), fs::canonicalize(&self.root)) {
            (Ok(a), Ok(b)) => a == b,
            _ => *dir == self.root,
        };
        self.ollama = ollama.filter(|dir| !same(dir));
        self
    }

    /// The Hearth store's root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The read-only Ollama store, if one is used.
    pub fn ollama_root(&self) -> Option<&Path> {
        self.ollama.as_deref()
    }

    /// Where the Hearth store keeps (or would keep) a blob.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blob_path_in(&self.root, digest)
    }

    fn root_of(&self, source: Source) -> &Path {
        match source {
            Source::Hearth => &self.root,
            Source::Ollama => self
                .ollama
                .as_deref()
                .expect("an Ollama source implies an Ollama root"),
        }
    }

    fn roots(&self) -> impl Iterator<Item = (&Path, Source)> {
        std::iter::once((self.root.as_path(), Source::Hearth))
            .chain(self.ollama.as_deref().map(|o| (o, Source::Ollama)))
    }

    pub(crate) fn lock_path(&self, name: &str) -> PathBuf {
        self.root.join("locks").join(format!("{name}.lock"))
    }

    /// Held shared by every operation that adds blobs before writing the manifest that keeps
    /// them alive (pull, create, copy, import).
    pub(crate) fn lock_shared(&self) -> Result<FileLock> {
        FileLock::shared(&self.lock_path("store"))
    }

    /// The store lock, exclusively, if no pull or create holds it.
    pub(crate) fn try_lock_exclusive(&self) -> Result<Option<FileLock>> {
        FileLock::try_exclusive(&self.lock_path("store"))
    }

    /// The store lock, exclusively, or [`StoreError::Busy`].
    fn lock_exclusive(&self) -> Result<FileLock> {
        self.try_lock_exclusive()?.ok_or_else(|| StoreError::Busy {
            root: self.root.clone(),
        })
    }

    /// Every installed model: the Hearth store's, then the Ollama store's that Hearth does not
    /// shadow; sorted by name within each store.
    pub fn list(&self) -> Result<Vec<ModelEntry>> {
        let mut entries: Vec<ModelEntry> = Vec::new();
        for (root, source) in self.roots() {
            let mut found = manifest_files(root)?;
            found.sort_by_cached_key(|(name, _)| name.to_string());
            for (name, path) in found {
                if entries.iter().any(|e| e.name.eq_ignore_case(&name)) {
                    continue;
                }
                let modified = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .map_err(io_err("read", &path))?;
                let bytes = read_manifest_bytes(&path)?;
                let digest = Digest::of_bytes(&bytes);
                let (size, problem) = match Manifest::parse(&bytes, &name.to_string()) {
                    Ok(m) => (m.total_size(), None),
                    Err(e) => (0, Some(e.to_string())),
                };
                entries.push(ModelEntry {
                    name,
                    digest,
                    size,
                    modified,
                    source,
                    problem,
                });
            }
        }
        Ok(entries)
    }

    /// Finds a model's manifest: the exact path first, then a name that differs only in case
    /// (registries treat names case-insensitively); the Hearth store before the Ollama store.
    pub(crate) fn find(&self, name: &ModelName) -> Result<Option<Found>> {
        for (root, source) in self.roots() {
            let path = name.manifest_path(root);
            if path.is_file() {
                return Ok(Some(Found {
                    name: name.clone(),
                    path,
                    source,
                }));
            }
        }
        for (root, source) in self.roots() {
            if let Some((name, path)) = manifest_files(root)?
                .into_iter()
                .find(|(n, _)| n.eq_ignore_case(name))
            {
                return Ok(Some(Found { name, path, source }));
            }
        }
        Ok(None)
    }

    /// Reads and validates the manifest of a found model.
    pub(crate) fn read_manifest(&self, found: &Found) -> Result<(Manifest, Vec<u8>)> {
        let bytes = read_manifest_bytes(&found.path)?;
        let manifest = Manifest::parse(&bytes, &found.name.to_string())?;
        Ok((manifest, bytes))
    }

    /// Whether a model is installed (in either store).
    pub fn contains(&self, name: &ModelName) -> Result<bool> {
        Ok(self.find(name)?.is_some())
    }

    /// Looks a model up and reads everything needed to run it. Text layers (template, system,
    /// params, license, messages) are small: they are checked against their digests here, on
    /// every call. The GGUF blob is only located; [`Store::verify`] checks it.
    pub fn resolve(&self, name: &ModelName) -> Result<ResolvedModel> {
        let found = self.find(name)?.ok_or_else(|| StoreError::NotInStore {
            name: name.to_string(),
        })?;
        let (manifest, bytes) = self.read_manifest(&found)?;
        let shown = found.name.to_string();
        let root = self.root_of(found.source);
        let model = manifest.layer(media_type::MODEL).cloned().ok_or_else(|| StoreError::Unsupported {
            name: shown.clone(),
            reason: format!(
                "it has no GGUF model layer (its layers are {}); it may be a safetensors model, which \
                 Hearth does not run",
                manifest.layers.iter().map(|l| l.media_type.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?;
        let existing = |layer: &Layer| -> Result<PathBuf> {
            let path = blob_path_in(root, &layer.digest);
            if !path.is_file() {
                return Err(StoreError::BlobMissing {
                    name: shown.clone(),
                    digest: layer.digest.to_string(),
                    path,
                });
            }
            Ok(path)
        };
        let model_path = existing(&model)?;
        let projector_path = manifest
            .layer(media_type::PROJECTOR)
            .map(existing)
            .transpose()?;
        let text = |layer: &Layer| read_text_blob(root, layer, &shown);
        let template = manifest.layer(media_type::TEMPLATE).map(text).transpose()?;
        let system = manifest.layer(media_type::SYSTEM).map(text).transpose()?;
        let license = manifest
            .layers
            .iter()
            .filter(|l| l.media_type == media_type::LICENSE)
            .map(text)
            .collect::<Result<_>>()?;
        let invalid = |what: &str, e: serde_json::Error| StoreError::ManifestInvalid {
            name: shown.clone(),
            reason: format!("its {what} layer is not valid: {e}"),
        };
        let params = match manifest.layer(media_type::PARAMS) {
            Some(layer) => serde_json::from_str(&text(layer)?).map_err(|e| invalid("params", e))?,
            None => serde_json::Map::new(),
        };
        let messages = match manifest.layer(media_type::MESSAGES) {
            Some(layer) => {
                serde_json::from_str(&text(layer)?).map_err(|e| invalid("messages", e))?
            }
            None => Vec::new(),
        };
        Ok(ResolvedModel {
            name: found.name,
            source: found.source,
            digest: Digest::of_bytes(&bytes),
            manifest,
            model,
            model_path,
            projector_path,
            template,
            system,
            params,
            license,
            messages,
        })
    }

    /// Removes a model from the Hearth store, then deletes the blobs no other model references.
    pub fn remove(&self, name: &ModelName) -> Result<GcReport> {
        let found = self.find(name)?.ok_or_else(|| StoreError::NotInStore {
            name: name.to_string(),
        })?;
        if found.source == Source::Ollama {
            return Err(StoreError::ReadOnly {
                name: found.name.to_string(),
                path: found.path,
            });
        }
        let _lock = self.lock_exclusive()?;
        // An unreadable manifest is still removed; it just frees nothing until the next `gc`.
        let candidates: Vec<Digest> = self
            .read_manifest(&found)
            .map(|(m, _)| m.blobs().map(|l| l.digest.clone()).collect())
            .unwrap_or_default();
        fs::remove_file(&found.path).map_err(io_err("remove", &found.path))?;
        remove_empty_parents(&found.path, &self.root.join("manifests"));
        self.prune(candidates)
    }

    /// Copies a model under a new name (the blobs are shared). A model from the Ollama store has
    /// its blobs brought into the Hearth store first (see `adopt_blobs`).
    pub fn copy(&self, from: &ModelName, to: &ModelName) -> Result<()> {
        let found = self.find(from)?.ok_or_else(|| StoreError::NotInStore {
            name: from.to_string(),
        })?;
        let (manifest, bytes) = self.read_manifest(&found)?;
        let _lock = self.lock_shared()?;
        self.adopt_blobs(&found, &manifest)?;
        self.write_manifest(to, &bytes)
    }

    /// Makes the blobs of a found model present in the Hearth store: those of a model in the
    /// Ollama store are hard-linked (or copied) in, each checked against its digest, so that a
    /// Hearth model never depends on Ollama keeping them. The caller holds the shared store lock.
    pub(crate) fn adopt_blobs(&self, found: &Found, manifest: &Manifest) -> Result<()> {
        if found.source == Source::Hearth {
            return Ok(());
        }
        for layer in manifest.blobs() {
            let what = format!("blob {} of {}", layer.digest, found.name);
            let src = blob_path_in(self.root_of(Source::Ollama), &layer.digest);
            self.install_file(&src, Some(&layer.digest), &what)?;
        }
        Ok(())
    }

    /// Deletes every blob of the Hearth store that no manifest references, and temporary files
    /// a crash left behind. Partial downloads (`*-partial`) are kept: the next pull resumes them.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock_exclusive()?;
        let blobs = self.root.join("blobs");
        let mut candidates = Vec::new();
        for entry in read_dir_if_exists(&blobs)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(digest) = Digest::from_file_name(&name) {
                candidates.push(digest);
            } else if is_temp_name(&name) {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
            }
        }
        remove_temp_manifests(&self.root.join("manifests"), 4)?;
        self.prune(candidates)
    }

    /// Deletes those of `candidates` that no manifest of the Hearth store references. The caller
    /// holds the exclusive store lock.
    pub(crate) fn prune(&self, candidates: impl IntoIterator<Item = Digest>) -> Result<GcReport> {
        let mut referenced = HashSet::new();
        for (name, path) in manifest_files(&self.root)? {
            // A manifest that cannot be read could reference anything: delete nothing.
            let manifest = Manifest::parse(&read_manifest_bytes(&path)?, &name.to_string())?;
            referenced.extend(manifest.blobs().map(|l| l.digest.clone()));
        }
        let mut report = GcReport::default();
        for digest in candidates {
            let path = self.blob_path(&digest);
            if referenced.contains(&digest) || report.removed.contains(&digest) {
                continue;
            }
            let Ok(meta) = fs::metadata(&path) else {
                continue;
            };
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
            report.freed_bytes += meta.len();
            report.removed.push(digest);
        }
        Ok(report)
    }

    /// Puts a file into the blob store under its sha256: a hard link when `src` is on the same
    /// file system (no copy, no extra space), else a verified copy. With `expected`, the file
    /// must hash to it. The caller holds the shared store lock.
    pub(crate) fn install_file(
        &self,
        src: &Path,
        expected: Option<&Digest>,
        what: &str,
    ) -> Result<(Digest, u64)> {
        let stamp = |p: &Path| {
            fs::metadata(p)
                .and_then(|m| Ok((m.len(), m.modified()?)))
                .map_err(io_err("read", p))
        };
        let before = stamp(src)?;
        let (digest, len) = Digest::of_file(src)?;
        if let Some(expected) = expected.filter(|e| **e != digest) {
            return Err(StoreError::DigestMismatch {
                what: what.to_string(),
                expected: expected.to_string(),
                got: digest.to_string(),
            });
        }
        let dest = self.blob_path(&digest);
        if fs::metadata(&dest).is_ok_and(|m| m.len() == len) {
            return Ok((digest, len));
        }
        let blobs = dest.parent().expect("blob paths have a parent");
        fs::create_dir_all(blobs).map_err(io_err("create the directory", blobs))?;
        match fs::hard_link(src, &dest) {
            Ok(()) => {
                if stamp(src)? != before {
                    fs::remove_file(&dest).map_err(io_err("remove", &dest))?;
                    return Err(StoreError::ChangedDuringImport {
                        path: src.to_path_buf(),
                    });
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            // Another file system, or links not allowed: copy, hashing again what is copied.
            Err(_) => copy_verified(src, &dest, &digest, what)?,
        }
        sync_dir(blobs)?;
        self.record_verified(&dest, &digest)?;
        Ok((digest, len))
    }

    /// Writes a small blob (template, params…) and returns its layer.
    pub(crate) fn write_blob(&self, media_type: &str, bytes: &[u8]) -> Result<Layer> {
        let digest = Digest::of_bytes(bytes);
        let path = self.blob_path(&digest);
        if !fs::metadata(&path).is_ok_and(|m| m.len() == bytes.len() as u64) {
            write_atomic(&path, bytes)?;
        }
        Ok(Layer {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
        })
    }

    /// Writes a manifest for `name`, atomically.
    pub(crate) fn write_manifest(&self, name: &ModelName, bytes: &[u8]) -> Result<()> {
        write_atomic(&name.manifest_path(&self.root), bytes)
    }
}

/// The home directory, from the environment.
pub(crate) fn home_dir() -> Option<PathBuf> {
    let var = if cfg!(windows) { "USERPROFILE" } else { "HOME" };
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

pub(crate) fn blob_path_in(root: &Path, digest: &Digest) -> PathBuf {
    root.join("blobs").join(digest.file_name())
}

/// The entries of a directory, none if it does not exist.
fn read_dir_if_exists(dir: &Path) -> Result<Vec<fs::DirEntry>> {
    match fs::read_dir(dir) {
        Ok(entries) => entries
            .collect::<std::io::Result<_>>()
            .map_err(io_err("list", dir)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err("list", dir)(e)),
    }
}

/// Every manifest file of a store whose four path components form a valid name. Anything else
/// there (temporary files, stray files) is not a model.
fn manifest_files(root: &Path) -> Result<Vec<(ModelName, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![(root.join("manifests"), Vec::<String>::new())];
    while let Some((dir, parts)) = stack.pop() {
        for entry in read_dir_if_exists(&dir)? {
            let mut parts = parts.clone();
            parts.push(entry.file_name().to_string_lossy().into_owned());
            let path = entry.path();
            match parts.as_slice() {
                [host, ns, model, tag] if path.is_file() => {
                    if let Ok(name) = ModelName::from_parts(host, ns, model, tag) {
                        out.push((name, path));
                    }
                }
                short if short.len() < 4 && path.is_dir() => stack.push((path, parts)),
                _ => {}
            }
        }
    }
    Ok(out)
}

fn read_manifest_bytes(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut bytes))
        .map_err(io_err("read", path))?;
    Ok(bytes)
}

/// Reads a small layer, checking its size and digest.
pub(crate) fn read_text_blob(root: &Path, layer: &Layer, name: &str) -> Result<String> {
    let path = blob_path_in(root, &layer.digest);
    let mut bytes = Vec::new();
    match File::open(&path) {
        Ok(f) => f
            .take(MAX_TEXT_LAYER_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err("read", &path))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(StoreError::BlobMissing {
                name: name.to_string(),
                digest: layer.digest.to_string(),
                path,
            });
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    if bytes.len() as u64 != layer.size {
        return Err(StoreError::BlobSize {
            name: name.to_string(),
            path,
            expected: layer.size,
            got: bytes.len() as u64,
        });
    }
    let got = Digest::of_bytes(&bytes);
    if got != layer.digest {
        return Err(StoreError::BlobCorrupt {
            name: name.to_string(),
            path,
            expected: layer.digest.to_string(),
            got: got.to_string(),
        });
    }
    String::from_utf8(bytes).map_err(|_| StoreError::Unsupported {
        name: name.to_string(),
        reason: format!("its {} layer is not UTF-8 text", layer.media_type),
    })
}

/// Copies `src` to `dest` through a temporary file, checking the copied bytes hash to `digest`.
fn copy_verified(src: &Path, dest: &Path, digest: &Digest, what: &str) -> Result<()> {
    let tmp = temp_sibling(dest);
    let copy = || -> Result<Digest> {
        let mut from = File::open(src).map_err(io_err("open", src))?;
        let mut to = File::create(&tmp).map_err(io_err("create", &tmp))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = from.read(&mut buf).map_err(io_err("read", src))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            to.write_all(&buf[..n]).map_err(io_err("write", &tmp))?;
        }
        to.sync_all().map_err(io_err("write", &tmp))?;
        Ok(Digest::from_hasher(hasher))
    };
    let result = copy().and_then(|got| {
        if got != *digest {
            return Err(StoreError::DigestMismatch {
                what: what.to_string(),
                expected: digest.to_string(),
                got: got.to_string(),
            });
        }
        fs::rename(&tmp, dest).map_err(io_err("rename into place", dest))
    });
    if result.is_err() {
        // Best effort: `gc` removes a temporary file left behind.
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes the now-empty directories between a removed manifest and `manifests/`.
fn remove_empty_parents(path: &Path, stop: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir.filter(|d| *d != stop && d.starts_with(stop)) {
        // Fails (and stops) at the first directory that is not empty, as intended.
        if fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Deletes [`write_atomic`]'s leftovers in the manifests tree (`depth` levels deep).
fn remove_temp_manifests(dir: &Path, depth: usize) -> Result<()> {
    for entry in read_dir_if_exists(dir)? {
        let path = entry.path();
        if depth > 1 && path.is_dir() {
            remove_temp_manifests(&path, depth - 1)?;
        } else if is_temp_name(&entry.file_name().to_string_lossy()) {
            fs::remove_file(&path).map_err(io_err("remove", &path))?;
        }
    }
    Ok(())
}
