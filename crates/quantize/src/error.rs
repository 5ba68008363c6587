//! The one error type of the crate.

use std::path::PathBuf;

use gguf::{GgmlType, GgufError};

use crate::Target;

/// Everything that can go wrong re-quantizing a model. Each variant names the file, tensor or
/// key concerned, and the message ends with what the user can do about it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuantizeError {
    /// A target name that is none of the supported mixes.
    #[error(
        "unknown quantization type `{given}`: choose one of q8_0, q5_K_M, q4_K_M or q4_0 \
         (case does not matter)"
    )]
    UnknownTarget { given: String },

    /// The source (or, should it ever happen, the freshly written output) is not a valid GGUF file.
    #[error("{}: {source}", path.display())]
    Gguf {
        path: PathBuf,
        #[source]
        source: GgufError,
    },

    /// A tensor of a type that cannot be re-quantized: only full-precision models and Q8_0 are
    /// accepted, since quantizing already-quantized weights again compounds the error.
    #[error(
        "tensor `{tensor}` is {ty}: only F32, F16, BF16 and Q8_0 models can be re-quantized; \
         start from the model's F16/BF16/F32 (or Q8_0) file instead"
    )]
    UnsupportedInput { tensor: String, ty: GgmlType },

    /// The file is one shard of a model split into several files.
    #[error(
        "the file is one of {count} shards of a split model; merge them first \
         (`llama-gguf-split --merge`) and quantize the merged file"
    )]
    SplitModel { count: u64 },

    /// Metadata the type rules depend on is missing.
    #[error(
        "the model has no `{key}` metadata, which the quantization rules need; it is not a model \
         llama.cpp could load"
    )]
    MissingMetadata { key: String },

    /// In a mixture-of-experts model, a tensor whose layer cannot be read from its name
    /// (`blk.N.`), or whose layer is out of range (llama.cpp refuses these too).
    #[error(
        "cannot tell which of the model's {n_layer} layers tensor `{tensor}` belongs to \
         (expected a name `blk.N.…` with N below {n_layer}); the file is malformed"
    )]
    BadLayer { tensor: String, n_layer: u64 },

    /// Rows too short for the target's block and with no smaller fallback type (llama.cpp
    /// refuses these too).
    #[error(
        "tensor `{tensor}` has rows of {ne0} elements, not a whole number of {ty} blocks \
         ({block} elements), and {target} has no fallback for it; choose q4_K_M or q5_K_M, \
         whose fallbacks handle any row length"
    )]
    RowNotWholeBlocks {
        tensor: String,
        ty: GgmlType,
        ne0: u64,
        block: usize,
        target: Target,
    },

    /// Reading, writing, syncing or renaming a file failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
