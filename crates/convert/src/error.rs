//! The one error type of the crate.

use std::path::PathBuf;

use gguf::GgufError;
use quantize::QuantizeError;

/// Everything that can go wrong converting a Hugging Face model directory. Each variant names
/// the file, key or tensor concerned, and the message says what to do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// A file the conversion needs is not in the directory.
    #[error(
        "{} is missing: a Hugging Face model directory needs config.json, model.safetensors \
         (or model.safetensors.index.json and its shards) and tokenizer.json; download the \
         repository's complete file set",
        path.display()
    )]
    MissingFile { path: PathBuf },

    /// Reading or writing a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A JSON file that does not parse.
    #[error("{} is not valid JSON ({source}); download it again", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    /// A key of config.json (or another JSON file) that is missing or of the wrong kind.
    #[error(
        "{} has no usable `{key}` (expected {expected}); the file is incomplete or not a \
         transformers config",
        path.display()
    )]
    BadKey {
        path: PathBuf,
        key: String,
        expected: &'static str,
    },

    /// config.json's `architectures` names no model class this crate converts.
    #[error(
        "{}: architectures {got:?} are not supported; this version converts {supported}",
        path.display()
    )]
    UnsupportedArchitecture {
        path: PathBuf,
        got: Vec<String>,
        supported: String,
    },

    /// A safetensors file whose header or layout is malformed.
    #[error("{} is not a valid safetensors file: {reason}; download it again", path.display())]
    Safetensors { path: PathBuf, reason: String },

    /// A tensor stored in an element type the conversion cannot read.
    #[error(
        "tensor `{tensor}` in {} is {dtype}: only F32, F16 and BF16 weights can be converted",
        path.display()
    )]
    UnsupportedDtype {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },

    /// A tensor the architecture's table does not know.
    #[error(
        "tensor `{tensor}` is not part of a {arch} model as this converter knows it; the \
         checkpoint may be a task model (with extra heads) or a variant that is not supported"
    )]
    UnknownTensor { tensor: String, arch: &'static str },

    /// A tensor whose shape disagrees with config.json.
    #[error(
        "tensor `{tensor}` has shape {got:?}, but config.json implies {expected:?}; the \
         weights and config.json do not belong together"
    )]
    WrongShape {
        tensor: String,
        expected: Vec<u64>,
        got: Vec<u64>,
    },

    /// A tensor the model needs is not in the checkpoint.
    #[error(
        "tensor `{tensor}` (GGUF `{gguf}`) is missing from the checkpoint; the safetensors \
         files are incomplete or do not match config.json"
    )]
    MissingTensor { tensor: String, gguf: String },

    /// A checkpoint without its output matrix whose config.json does not tie it to the token
    /// embeddings.
    #[error(
        "tensor `{tensor}` is missing from the checkpoint and {} does not set \
         `tie_word_embeddings: true`; without one of them the model has no output layer (the \
         safetensors files are incomplete, or config.json belongs to another model)",
        path.display()
    )]
    UntiedOutputMissing { tensor: String, path: PathBuf },

    /// Two checkpoint tensors that map to the same GGUF tensor.
    #[error("tensors `{first}` and `{second}` both become `{gguf}`; keep only one of them")]
    DuplicateTensor {
        first: String,
        second: String,
        gguf: String,
    },

    /// tokenizer.json that cannot give the GGUF vocabulary.
    #[error("{}: {reason}", path.display())]
    Tokenizer { path: PathBuf, reason: String },

    /// An output type name that is none of the supported ones.
    #[error("unknown output type `{given}`: choose f32, f16 or q8_0 (case does not matter)")]
    UnknownFileType { given: String },

    /// The written file does not read back (a bug, never a user error).
    #[error("the written file {} does not read back: {source}", path.display())]
    Gguf {
        path: PathBuf,
        #[source]
        source: GgufError,
    },

    /// Quantizing the converted weights failed.
    #[error(transparent)]
    Quantize(#[from] QuantizeError),
}

/// A closure mapping an I/O error to [`ConvertError::Io`] for `path`.
pub(crate) fn io_err(
    action: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> ConvertError {
    let path = path.into();
    move |source| ConvertError::Io {
        action,
        path,
        source,
    }
}
