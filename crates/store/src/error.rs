//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in the model store.
///
/// Each variant carries the facts needed to act on it (which name, path, digest or URL; what was
/// expected and what was found), and each message ends with what the user can do. Strings that
/// came from the network or a file are shown through `{:?}` so that control characters in hostile
/// input cannot rewrite the terminal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A model name that is not `[host/][namespace/]model[:tag]` with valid parts.
    #[error(
        "invalid model name {name:?}: {reason}; names look like [host/][namespace/]model[:tag], \
         e.g. llama3.2:1b or hf.co/user/repo:Q4_K_M"
    )]
    InvalidName { name: String, reason: String },

    /// A digest that is not `sha256:` followed by 64 lowercase hex digits.
    #[error(
        "invalid digest {digest:?} in {context}: {reason} (a digest is \"sha256:\" followed by 64 \
         lowercase hex digits); the data is malformed or malicious, nothing was written"
    )]
    InvalidDigest {
        digest: String,
        context: String,
        reason: String,
    },

    /// A pull source that looks like a URL but is not an `http(s)://…/file.gguf` address.
    #[error("invalid model URL {url:?}: {reason}; give an https:// address of a .gguf file")]
    InvalidUrl { url: String, reason: String },

    /// Plain http without the insecure opt-in.
    #[error(
        "refusing to fetch {url} over plain http: the bytes could be altered in transit; use \
         https, or pass --insecure for a self-hosted registry you trust"
    )]
    InsecureScheme { url: String },

    /// No connection could be made to the registry or download host.
    #[error(
        "cannot reach {host}: {reason}; check the network connection and the host name (models \
         already in the store still work offline)"
    )]
    Unreachable { host: String, reason: String },

    /// The registry does not know the model or tag.
    #[error(
        "model {name} was not found on {registry}: check the spelling and the tag (the default \
         tag is \"latest\")"
    )]
    ModelNotFound { name: String, registry: String },

    /// The registry answered 401 or 403.
    #[error(
        "{url} answered HTTP {status} (not authorized): the model is private or needs a login, \
         which Hearth does not support yet; pull a public model or import the .gguf file"
    )]
    Unauthorized { url: String, status: u16 },

    /// An HTTP status the protocol does not expect.
    #[error("{url} answered HTTP {status}; try again later, or check the registry's address")]
    HttpStatus { url: String, status: u16 },

    /// A blob transfer that kept failing after the bounded retries.
    #[error(
        "downloading {what} from {url} failed {attempts} times in a row ({reason}); the partial \
         download is kept: run the same pull again to resume it"
    )]
    TransferFailed {
        what: String,
        url: String,
        attempts: u32,
        reason: String,
    },

    /// A server sent more bytes than the manifest or its own headers declared.
    #[error(
        "{url} sent more than the {expected} bytes declared for {what}; the server is broken or \
         hostile, the download was discarded"
    )]
    Oversized {
        what: String,
        url: String,
        expected: u64,
    },

    /// Not enough free disk space for what a pull must download.
    #[error(
        "{} has {} free but the download needs {} more; free some space (e.g. hearth rm a model \
         you no longer use) or point HEARTH_MODELS at a larger disk",
        path.display(),
        human_bytes(*available),
        human_bytes(*needed)
    )]
    NoSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },

    /// Downloaded or stored bytes whose sha256 is not the digest they are filed under.
    #[error(
        "the bytes of {what} hash to {got}, not {expected}: the data is corrupt or was tampered \
         with; it was discarded and nothing was installed, try again later"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        got: String,
    },

    /// A blob of a model in the store whose content no longer matches its digest.
    #[error(
        "{} is corrupt: its sha256 is {got}, the manifest says {expected}; remove the model \
         (hearth rm {name}) and pull or create it again",
        path.display()
    )]
    BlobCorrupt {
        name: String,
        path: PathBuf,
        expected: String,
        got: String,
    },

    /// A blob whose size differs from the size its manifest records.
    #[error(
        "{} has {got} bytes but the manifest of {name} says {expected}; remove the model \
         (hearth rm {name}) and pull or create it again",
        path.display()
    )]
    BlobSize {
        name: String,
        path: PathBuf,
        expected: u64,
        got: u64,
    },

    /// A manifest refers to a blob that is not on disk.
    #[error(
        "model {name} needs blob {digest}, which is missing from {}; pull the model again \
         (hearth pull {name})",
        path.display()
    )]
    BlobMissing {
        name: String,
        digest: String,
        path: PathBuf,
    },

    /// A manifest that is not valid JSON, too large, or otherwise not a model manifest.
    #[error("the manifest of {name} is invalid: {reason}; pull or create the model again")]
    ManifestInvalid { name: String, reason: String },

    /// A manifest that is valid but describes something Hearth cannot run.
    #[error("{name} cannot be used by Hearth: {reason}")]
    Unsupported { name: String, reason: String },

    /// [`crate::Store::create_converted`]'s conversion failed; nothing was installed.
    #[error("cannot create {name}: converting its model file failed: {source}")]
    Convert {
        name: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// The name is in neither the Hearth store nor the Ollama store.
    #[error("model {name} is not in the store: pull it first (hearth pull {name})")]
    NotInStore { name: String },

    /// A write was asked of a model that lives in Ollama's store.
    #[error(
        "{name} is in Ollama's store ({}), which Hearth only reads: use `ollama rm {name}`, or \
         `hearth cp` it into Hearth's store first",
        path.display()
    )]
    ReadOnly { name: String, path: PathBuf },

    /// An exclusive store operation found a pull or create in progress.
    #[error(
        "the store {} is in use by another pull or create; try again when it has finished",
        root.display()
    )]
    Busy { root: PathBuf },

    /// A file being imported changed while it was hashed.
    #[error(
        "{} changed while it was being imported; import it again once nothing writes to it",
        path.display()
    )]
    ChangedDuringImport { path: PathBuf },

    /// A Modelfile that does not parse, or uses an instruction or parameter Hearth lacks.
    #[error("Modelfile line {line}: {message}")]
    Modelfile { line: usize, message: String },

    /// A file that is not a valid GGUF model.
    #[error("{} is not a usable GGUF model: {source}", path.display())]
    Gguf {
        path: PathBuf,
        #[source]
        source: gguf::GgufError,
    },

    /// The home directory is unknown, so the default store location is too.
    #[error(
        "cannot find the home directory (HOME is not set): set HEARTH_MODELS to the store path"
    )]
    NoHome,

    /// A file-system operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A byte count for people: `512 B`, `3.2 MB`, `4.1 GB` (decimal units, as download sizes are
/// usually shown).
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Shorthand for the crate's results.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Builds the [`StoreError::Io`] for `op` on `path`, for use in `map_err`.
pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.into();
    move |source| StoreError::Io { op, path, source }
}
