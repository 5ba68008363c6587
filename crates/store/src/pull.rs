//! Pulling models: the registry protocol Ollama and Hugging Face serve, and single .gguf URLs.
//!
//! A model pull fetches `GET /v2/<namespace>/<model>/manifests/<tag>`, validates every digest in
//! it before anything touches the disk, then fetches each blob from
//! `GET /v2/<namespace>/<model>/blobs/<digest>` into `blobs/sha256-<hex>-partial`. An interrupted
//! transfer resumes with an HTTP `Range` request (in the same pull after a bounded number of
//! retries with backoff, or in the next pull after a crash); the finished file is hashed and
//! renamed into place only if it matches its digest; the manifest is written last, atomically.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest as _, Sha256};
use ureq::http::HeaderMap;

use crate::digest::{hash_reader, Digest};
use crate::error::{io_err, Result, StoreError};
use crate::fsx::{sync_dir, FileLock};
use crate::manifest::{media_type, Layer, Manifest, MAX_MANIFEST_BYTES};
use crate::name::{GgufUrl, ModelName, PullSource};
use crate::store::{Source, Store};

/// The manifest types a pull accepts, in the `Accept` header.
const ACCEPT_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json";
/// Longest wait between two retries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// How a pull talks to the network.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// Use plain http for registries and allow http URLs (a self-hosted registry, or tests).
    pub insecure: bool,
    /// Consecutive failed attempts (none of which received a byte) before a transfer gives up.
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles after each failure, up to 30 s.
    pub retry_delay: Duration,
    /// A transfer that receives nothing for this long is treated as stalled and retried.
    pub stall_timeout: Duration,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
}

impl Default for PullOptions {
    fn default() -> PullOptions {
        PullOptions {
            insecure: false,
            max_attempts: 6,
            retry_delay: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
        }
    }
}

/// What a pull reports while it works (a progress bar draws from these).
#[derive(Debug)]
#[non_exhaustive]
pub enum PullEvent<'a> {
    /// Fetching the manifest of a model.
    Manifest { name: &'a ModelName },
    /// Bytes of one blob: `completed` of `total` (unknown for a URL whose server does not say).
    /// `id` is the digest, or the file name of a URL download.
    Blob {
        id: &'a str,
        media_type: &'a str,
        completed: u64,
        total: Option<u64>,
    },
    /// A transfer failed and is retried after `delay`, resuming where it stopped.
    Retry {
        id: &'a str,
        attempt: u32,
        reason: &'a str,
        delay: Duration,
    },
    /// A blob is complete and being hashed.
    Verifying { id: &'a str },
    /// Every blob is in place; the manifest is being written (the model becomes visible).
    WritingManifest { name: &'a ModelName },
}

/// Receives [`PullEvent`]s. Any `FnMut(&PullEvent)` closure is one.
pub trait Progress {
    /// Called for each event, on the pulling thread.
    fn event(&mut self, event: &PullEvent<'_>);
}

impl<F: FnMut(&PullEvent<'_>)> Progress for F {
    fn event(&mut self, event: &PullEvent<'_>) {
        self(event)
    }
}

/// One file to fetch.
struct Transfer<'a> {
    url: &'a str,
    id: &'a str,
    media_type: &'a str,
    /// The exact length, when a manifest declares it.
    size: Option<u64>,
    /// For a URL (whose bytes could change), where the server's validator (ETag or
    /// Last-Modified) is kept so that a resume can send `If-Range`. Content-addressed blobs
    /// cannot change, so they have none.
    validator_path: Option<PathBuf>,
    /// Whether the host already answered in this pull (then a failure to connect is a glitch to
    /// retry, not an unreachable host).
    reached: bool,
}

/// Why one attempt of a transfer ended without the whole file.
enum AttemptError {
    /// Worth another attempt (after backoff): a network error, a stall, a 5xx.
    Retry(String),
    /// Final.
    Fatal(StoreError),
}

impl Store {
    /// Pulls a registry model or a .gguf URL (named by [`GgufUrl::default_name`]); returns the
    /// name it was installed under.
    pub fn pull(
        &self,
        source: &PullSource,
        options: &PullOptions,
        progress: &mut dyn Progress,
    ) -> Result<ModelName> {
        match source {
            PullSource::Registry(name) => self
                .pull_model(name, options, progress)
                .map(|()| name.clone()),
            PullSource::Url(url) => {
                let name = url.default_name()?;
                self.pull_url(url, &name, options, progress)?;
                Ok(name)
            }
        }
    }

    /// Pulls a model from its registry (`https://<host>`, or `http://` with `insecure`).
    /// Nothing is written before the manifest has been fetched and fully validated.
    pub fn pull_model(
        &self,
        name: &ModelName,
        options: &PullOptions,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let agent = agent(options);
        let scheme = if options.insecure { "http" } else { "https" };
        let base = format!(
            "{scheme}://{}/v2/{}/{}",
            name.host(),
            name.namespace(),
            name.model()
        );
        progress.event(&PullEvent::Manifest { name });
        let url = format!("{base}/manifests/{}", name.tag());
        let response = agent
            .get(&url)
            .header("Accept", ACCEPT_MANIFEST)
            .call()
            .map_err(|e| StoreError::Unreachable {
                host: name.host().to_string(),
                reason: e.to_string(),
            })?;
        match response.status().as_u16() {
            200 => {}
            404 => {
                return Err(StoreError::ModelNotFound {
                    name: name.to_string(),
                    registry: name.host().to_string(),
                })
            }
            status @ (401 | 403) => return Err(StoreError::Unauthorized { url, status }),
            status => return Err(StoreError::HttpStatus { url, status }),
        }
        let bytes = response
            .into_body()
            .with_config()
            .limit(MAX_MANIFEST_BYTES)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => StoreError::ManifestInvalid {
                    name: name.to_string(),
                    reason: format!("the registry sent more than {MAX_MANIFEST_BYTES} bytes"),
                },
                e => StoreError::TransferFailed {
                    what: "the manifest".into(),
                    url: url.clone(),
                    attempts: 1,
                    reason: e.to_string(),
                },
            })?;
        let manifest = Manifest::parse(&bytes, &name.to_string())?;
        if manifest.layer(media_type::MODEL).is_none() {
            return Err(StoreError::Unsupported {
                name: name.to_string(),
                reason: "its manifest has no GGUF model layer (it may be a safetensors model, which Hearth does not run)".into(),
            });
        }

        // From here on the store is written.
        let lock = self.lock_shared()?;
        // Re-pulling a name stored with other capitalisation updates that manifest.
        let existing = self.find(name)?.filter(|f| f.source == Source::Hearth);
        let old_blobs: Vec<Digest> = match &existing {
            Some(found) => self
                .read_manifest(found)
                .map(|(m, _)| m.blobs().map(|l| l.digest.clone()).collect())
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let target = existing.map_or_else(|| name.clone(), |f| f.name);
        let mut layers: Vec<&Layer> = Vec::new();
        for layer in manifest.blobs() {
            if !layers.iter().any(|l| l.digest == layer.digest) {
                layers.push(layer);
            }
        }
        // Refuse up front what cannot fit, rather than fail (or fill the disk) half-way.
        let blobs = self.root().join("blobs");
        fs::create_dir_all(&blobs).map_err(io_err("create the directory", &blobs))?;
        let remaining = |l: &Layer| {
            let present = fs::metadata(self.blob_path(&l.digest)).is_ok_and(|m| m.len() == l.size);
            let partial = fs::metadata(partial_path(&blobs, &l.digest)).map_or(0, |m| m.len());
            if present {
                0
            } else {
                l.size.saturating_sub(partial)
            }
        };
        let needed = layers.iter().map(|l| remaining(l)).sum();
        check_space(&blobs, needed)?;
        for layer in &layers {
            self.fetch_blob(&agent, &base, name, layer, options, progress)?;
        }
        let seen: Vec<&Digest> = layers.iter().map(|l| &l.digest).collect();
        progress.event(&PullEvent::WritingManifest { name: &target });
        self.write_manifest(&target, &bytes)?;
        drop(lock);

        // An updated model frees the blobs only its old version used; if another pull is
        // running, they stay until the next `gc`.
        let stale: Vec<Digest> = old_blobs
            .into_iter()
            .filter(|d| !seen.contains(&d))
            .collect();
        if !stale.is_empty() {
            if let Some(_lock) = self.try_lock_exclusive()? {
                self.prune(stale)?;
            }
        }
        Ok(())
    }

    /// Makes one blob of a registry model present and verified.
    fn fetch_blob(
        &self,
        agent: &ureq::Agent,
        base: &str,
        name: &ModelName,
        layer: &Layer,
        options: &PullOptions,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        let id = layer.digest.to_string();
        let dest = self.blob_path(&layer.digest);
        let present = |path: &Path| fs::metadata(path).is_ok_and(|m| m.len() == layer.size);
        let what = format!("blob {} of {name}", layer.digest);
        let done = |progress: &mut dyn Progress| {
            let event = PullEvent::Blob {
                id: &id,
                media_type: &layer.media_type,
                completed: layer.size,
                total: Some(layer.size),
            };
            progress.event(&event);
        };
        if present(&dest) {
            done(progress);
            return Ok(());
        }
        // A blob Ollama already downloaded is linked, not downloaded again (if it is intact).
        if let Some(ollama) = self
            .ollama_root()
            .map(|root| root.join("blobs").join(layer.digest.file_name()))
        {
            if present(&ollama) {
                match self.install_file(&ollama, Some(&layer.digest), &what) {
                    Ok(_) => {
                        done(progress);
                        return Ok(());
                    }
                    Err(StoreError::DigestMismatch { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        let _lock = FileLock::exclusive(&self.lock_path(&layer.digest.file_name()))?;
        // Another process may have finished it while this one waited for the lock.
        if present(&dest) {
            done(progress);
            return Ok(());
        }
        let partial = partial_path(
            dest.parent().expect("blob paths have a parent"),
            &layer.digest,
        );
        let url = format!("{base}/blobs/{}", layer.digest);
        let transfer = Transfer {
            url: &url,
            id: &id,
            media_type: &layer.media_type,
            size: Some(layer.size),
            validator_path: None,
            reached: true,
        };
        let (got, _) = download(agent, &transfer, &partial, options, progress)?;
        if got != layer.digest {
            fs::remove_file(&partial).map_err(io_err("remove", &partial))?;
            return Err(StoreError::DigestMismatch {
                what,
                expected: layer.digest.to_string(),
                got: got.to_string(),
            });
        }
        fs::rename(&partial, &dest).map_err(io_err("rename into place", &dest))?;
        sync_dir(dest.parent().expect("blob paths have a parent"))?;
        self.record_verified(&dest, &layer.digest)
    }

    /// Downloads one .gguf file by URL and installs it as `name`. Without a digest to check
    /// against, the file is validated as GGUF instead; a resume is only attempted when the
    /// server gave a validator (ETag or Last-Modified) to make sure the file did not change.
    pub fn pull_url(
        &self,
        url: &GgufUrl,
        name: &ModelName,
        options: &PullOptions,
        progress: &mut dyn Progress,
    ) -> Result<()> {
        if !url.is_https() && !options.insecure {
            return Err(StoreError::InsecureScheme {
                url: url.to_string(),
            });
        }
        let agent = agent(options);
        let _lock = self.lock_shared()?;
        let key = format!(
            "url-{}",
            &Digest::of_bytes(url.as_str().as_bytes()).hex()[..32]
        );
        let _url_lock = FileLock::exclusive(&self.lock_path(&key))?;
        let partial = self.root().join("blobs").join(format!("{key}-partial"));
        let validator_path = partial.with_file_name(format!("{key}-partial.validator"));
        let transfer = Transfer {
            url: url.as_str(),
            id: url.file_name(),
            media_type: media_type::MODEL,
            size: None,
            validator_path: Some(validator_path.clone()),
            reached: false,
        };
        let (digest, len) = download(&agent, &transfer, &partial, options, progress)?;
        let file = match gguf::Gguf::open(&partial) {
            Ok(file) => file,
            Err(e) => {
                fs::remove_file(&partial).map_err(io_err("remove", &partial))?;
                return Err(StoreError::Unsupported {
                    name: url.to_string(),
                    reason: format!("the download is not a usable GGUF file: {e}"),
                });
            }
        };
        let model = Layer {
            media_type: media_type::MODEL.to_string(),
            digest,
            size: len,
        };
        let config = self.write_config(&file, std::slice::from_ref(&model))?;
        // Unmapped before the rename (which a mapping would block on some systems).
        drop(file);
        let dest = self.blob_path(&model.digest);
        fs::rename(&partial, &dest).map_err(io_err("rename into place", &dest))?;
        sync_dir(dest.parent().expect("blob paths have a parent"))?;
        // Only needed for resuming; a leftover is harmless.
        let _ = fs::remove_file(&validator_path);
        self.record_verified(&dest, &model.digest)?;
        progress.event(&PullEvent::WritingManifest { name });
        self.write_manifest(name, &Manifest::new(config, vec![model]).to_json())
    }
}

/// Where a blob's download accumulates until it is verified.
fn partial_path(blobs: &Path, digest: &Digest) -> PathBuf {
    blobs.join(format!("{}-partial", digest.file_name()))
}

/// Fails when the file system holding `dir` has less than `needed` bytes free.
fn check_space(dir: &Path, needed: u64) -> Result<()> {
    let available = fs4::available_space(dir).map_err(io_err("measure the free space of", dir))?;
    if available < needed {
        return Err(StoreError::NoSpace {
            path: dir.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

/// The HTTP client for one pull: status codes are handled here, not turned into errors; https
/// only unless insecure; a read that waits longer than the stall timeout fails.
fn agent(options: &PullOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .https_only(!options.insecure)
        .timeout_connect(Some(options.connect_timeout))
        .timeout_per_read(Some(options.stall_timeout))
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Fetches `t.url` into `partial`, resuming what is already there, retrying failures with
/// backoff; returns the sha256 and length of the complete file (which stays at `partial`).
fn download(
    agent: &ureq::Agent,
    t: &Transfer<'_>,
    partial: &Path,
    options: &PullOptions,
    progress: &mut dyn Progress,
) -> Result<(Digest, u64)> {
    let dir = partial.parent().expect("blob paths have a parent");
    fs::create_dir_all(dir).map_err(io_err("create the directory", dir))?;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(partial)
        .map_err(io_err("open", partial))?;
    let mut len = file.metadata().map_err(io_err("read", partial))?.len();
    let mut validator = t
        .validator_path
        .as_ref()
        .and_then(|p| fs::read_to_string(p).ok());
    // What is there can be resumed only if it fits and, for a URL, if the server can confirm
    // the file did not change since.
    if t.size.is_some_and(|size| len > size) || (t.validator_path.is_some() && validator.is_none())
    {
        len = 0;
        file.set_len(0).map_err(io_err("truncate", partial))?;
    }
    let mut hasher = Sha256::new();
    if len > 0 {
        file.seek(SeekFrom::Start(0))
            .map_err(io_err("read", partial))?;
        hash_reader(&mut (&mut file).take(len), &mut hasher).map_err(io_err("read", partial))?;
    }
    file.seek(SeekFrom::Start(len))
        .map_err(io_err("seek", partial))?;

    let mut state = State {
        file,
        path: partial,
        len,
        total: t.size,
        hasher,
        reached: t.reached,
    };
    let mut failures = 0u32;
    loop {
        let before = state.len;
        match state.attempt(agent, t, &mut validator, progress) {
            Ok(()) => break,
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Retry(reason)) => {
                failures = if state.len > before { 1 } else { failures + 1 };
                if failures >= options.max_attempts {
                    return Err(StoreError::TransferFailed {
                        what: t.id.to_string(),
                        url: t.url.to_string(),
                        attempts: failures,
                        reason,
                    });
                }
                let delay = options
                    .retry_delay
                    .saturating_mul(1 << (failures - 1).min(16))
                    .min(MAX_RETRY_DELAY);
                progress.event(&PullEvent::Retry {
                    id: t.id,
                    attempt: failures,
                    reason: &reason,
                    delay,
                });
                std::thread::sleep(delay);
            }
        }
    }
    state.file.sync_all().map_err(io_err("write", partial))?;
    progress.event(&PullEvent::Verifying { id: t.id });
    Ok((Digest::from_hasher(state.hasher), state.len))
}

/// A download in progress: the partial file, its length, and the hash of its bytes so far.
struct State<'a> {
    file: File,
    path: &'a Path,
    len: u64,
    total: Option<u64>,
    hasher: Sha256,
    reached: bool,
}

impl State<'_> {
    /// Starts over from byte 0.
    fn restart(&mut self) -> std::result::Result<(), AttemptError> {
        self.len = 0;
        self.hasher = Sha256::new();
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)))
            .map_err(|e| AttemptError::Fatal(io_err("truncate", self.path)(e)))?;
        Ok(())
    }

    /// One request: asks for the bytes from `len` on and appends what arrives.
    fn attempt(
        &mut self,
        agent: &ureq::Agent,
        t: &Transfer<'_>,
        validator: &mut Option<String>,
        progress: &mut dyn Progress,
    ) -> std::result::Result<(), AttemptError> {
        progress.event(&PullEvent::Blob {
            id: t.id,
            media_type: t.media_type,
            completed: self.len,
            total: self.total,
        });
        if self.total == Some(self.len) {
            return Ok(());
        }
        let mut request = agent.get(t.url);
        if self.len > 0 {
            request = request.header("Range", format!("bytes={}-", self.len));
            if let Some(v) = validator.as_deref() {
                request = request.header("If-Range", v);
            }
        }
        let response = match request.call() {
            Ok(r) => r,
            Err(e @ (ureq::Error::HostNotFound | ureq::Error::ConnectionFailed))
                if !self.reached =>
            {
                let host = t.url.split('/').nth(2).unwrap_or(t.url).to_string();
                return Err(AttemptError::Fatal(StoreError::Unreachable {
                    host,
                    reason: e.to_string(),
                }));
            }
            Err(e) => return Err(AttemptError::Retry(e.to_string())),
        };
        self.reached = true;
        let status = response.status().as_u16();
        match status {
            206 if content_range_start(response.headers()) == Some(self.len) => {}
            206 => {
                self.restart()?;
                return Err(AttemptError::Retry(
                    "the server sent a different byte range than asked for".into(),
                ));
            }
            200 => {
                if self.len > 0 {
                    // The server ignored the range (or the file changed): take the whole body.
                    self.restart()?;
                }
                if let Some(path) = &t.validator_path {
                    *validator = validator_of(response.headers());
                    match validator {
                        Some(v) => fs::write(path, v.as_bytes())
                            .map_err(|e| AttemptError::Fatal(io_err("write", path)(e)))?,
                        // Without one, a later resume could splice two different files.
                        None => drop(fs::remove_file(path)),
                    }
                }
                if t.size.is_none() {
                    self.total = response.body().content_length();
                    let dir = self.path.parent().expect("blob paths have a parent");
                    check_space(dir, self.total.unwrap_or(0)).map_err(AttemptError::Fatal)?;
                }
            }
            416 => {
                self.restart()?;
                return Err(AttemptError::Retry(
                    "the server refused the byte range".into(),
                ));
            }
            401 | 403 => {
                return Err(AttemptError::Fatal(StoreError::Unauthorized {
                    url: t.url.to_string(),
                    status,
                }))
            }
            408 | 429 | 500..=599 => return Err(AttemptError::Retry(format!("HTTP {status}"))),
            _ => {
                return Err(AttemptError::Fatal(StoreError::HttpStatus {
                    url: t.url.to_string(),
                    status,
                }))
            }
        }

        let mut body = response.into_body().into_reader();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(AttemptError::Retry(e.to_string())),
            };
            if let Some(total) = self.total.filter(|&total| self.len + n as u64 > total) {
                // Best effort: the error below is what matters.
                let _ = fs::remove_file(self.path);
                let oversized = StoreError::Oversized {
                    what: t.id.to_string(),
                    url: t.url.to_string(),
                    expected: total,
                };
                return Err(AttemptError::Fatal(oversized));
            }
            self.file
                .write_all(&buf[..n])
                .map_err(|e| AttemptError::Fatal(io_err("write", self.path)(e)))?;
            self.hasher.update(&buf[..n]);
            self.len += n as u64;
            progress.event(&PullEvent::Blob {
                id: t.id,
                media_type: t.media_type,
                completed: self.len,
                total: self.total,
            });
        }
        match self.total {
            Some(total) if self.len < total => Err(AttemptError::Retry(format!(
                "the connection closed after {} of {total} bytes",
                self.len
            ))),
            _ => Ok(()),
        }
    }
}

/// The first byte of a `Content-Range: bytes <first>-<last>/<total>` header.
fn content_range_start(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get("content-range")?.to_str().ok()?;
    value
        .strip_prefix("bytes ")?
        .split('-')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// A validator `If-Range` can use: a strong ETag, else Last-Modified.
fn validator_of(headers: &HeaderMap) -> Option<String> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    header("etag")
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| header("last-modified"))
}
