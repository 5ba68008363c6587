//! The one error type of the crate.

use std::path::PathBuf;

use crate::GgmlType;

/// Everything that can go wrong reading or writing a GGUF file.
///
/// Every variant carries the facts needed to act on it: which field, at which byte offset of the
/// file, what was expected and what was found. Byte offsets are absolute (from the start of the
/// file). Messages end with what the user can do about it. Errors returned by [`crate::GgufWriter`]
/// concern data not yet written, so their byte offsets are 0.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened, inspected or memory-mapped.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file ends (or a declared length runs past its end) before `field` is complete.
    #[error(
        "{field} at byte {offset} needs {needed} bytes but the file has only {available} left \
         (file size {file_size}); the file is truncated or not a GGUF file: re-download it"
    )]
    Truncated {
        field: String,
        offset: u64,
        needed: u64,
        available: u64,
        file_size: u64,
    },

    /// The first four bytes are not `GGUF`.
    #[error(
        "not a GGUF file: it starts with bytes {got:02x?} instead of \"GGUF\" (47 47 55 46); \
         check that the path points at a .gguf model file"
    )]
    BadMagic { got: [u8; 4] },

    /// A version other than 2 or 3.
    #[error(
        "GGUF version {version} is not supported (this reader handles versions 2 and 3){}",
        version_hint(*version)
    )]
    UnsupportedVersion { version: u32 },

    /// The version field reads as 2 or 3 only when byte-swapped: a big-endian file.
    #[error(
        "this is a big-endian GGUF file (version field {version:#010x}); only little-endian \
         files are supported: download the little-endian variant of the model"
    )]
    BigEndian { version: u32 },

    /// A metadata value (or array element) type id outside 0..=12.
    #[error(
        "metadata key `{key}` has unknown value type id {id} at byte {offset} (known: 0..=12); \
         the file is corrupt or was written by a newer tool"
    )]
    UnknownValueType { key: String, offset: u64, id: u32 },

    /// A tensor type id that ggml does not define (or has removed).
    #[error(
        "tensor `{tensor}` has unknown ggml type id {id} at byte {offset}; the file is corrupt or \
         uses a quantization type this version of Hearth does not know: update Hearth or use \
         another quantization of the model"
    )]
    UnknownTensorType {
        tensor: String,
        offset: u64,
        id: u32,
    },

    /// A key, string value or tensor name is not valid UTF-8.
    #[error("{field} at byte {offset} is not valid UTF-8; the file is corrupt: re-download it")]
    InvalidUtf8 { field: String, offset: u64 },

    /// A count, length or size exceeds what this reader accepts (or what fits in 64 bits).
    #[error(
        "{field} at byte {offset} is {value}, more than the limit of {limit}; the file is corrupt \
         or crafted: re-download it from a trusted source"
    )]
    TooLarge {
        field: String,
        offset: u64,
        value: u64,
        limit: u64,
    },

    /// A metadata key of length zero.
    #[error("metadata key #{index} at byte {offset} is empty; the file is corrupt")]
    EmptyKey { index: u64, offset: u64 },

    /// Two metadata entries with the same key.
    #[error(
        "metadata key `{key}` appears twice (second time at byte {offset}); the file is corrupt"
    )]
    DuplicateKey { key: String, offset: u64 },

    /// Two tensors with the same name.
    #[error("tensor `{tensor}` appears twice (second time at byte {offset}); the file is corrupt")]
    DuplicateTensor { tensor: String, offset: u64 },

    /// Arrays nested deeper than [`crate::MAX_ARRAY_NESTING`].
    #[error(
        "metadata key `{key}` nests arrays deeper than {limit} levels (at byte {offset}); the \
         file is corrupt or crafted"
    )]
    NestingTooDeep {
        key: String,
        offset: u64,
        limit: u32,
    },

    /// `general.alignment` is not an unsigned integer that is a nonzero power of two.
    #[error(
        "`general.alignment` must be a nonzero power of two stored as u32, but it is {got}; the \
         file is corrupt"
    )]
    BadAlignment { got: String },

    /// More than [`crate::MAX_DIMS`] dimensions.
    #[error(
        "tensor `{tensor}` has {n_dims} dimensions at byte {offset} (at most {limit} are \
         allowed); the file is corrupt"
    )]
    TooManyDims {
        tensor: String,
        offset: u64,
        n_dims: u32,
        limit: u32,
    },

    /// The number of elements (product of the dims) does not fit in an `i64`, or a dim does not.
    #[error(
        "tensor `{tensor}` has shape {dims:?} (at byte {offset}) whose element count overflows \
         64 bits; the file is corrupt"
    )]
    ElementCountOverflow {
        tensor: String,
        offset: u64,
        dims: Vec<u64>,
    },

    /// `ne[0]` is not a multiple of the type's block size (or the byte size overflows).
    #[error(
        "tensor `{tensor}` of type {ty} has {ne0} elements per row, not a multiple of the block \
         size {block_size} (shape {dims:?}); the file is corrupt"
    )]
    NotWholeBlocks {
        tensor: String,
        ty: GgmlType,
        ne0: u64,
        block_size: u64,
        dims: Vec<u64>,
    },

    /// A tensor's data offset is not a multiple of the file's alignment.
    #[error(
        "tensor `{tensor}` starts at data offset {offset}, which is not a multiple of the \
         alignment {alignment}; the file is corrupt"
    )]
    MisalignedTensor {
        tensor: String,
        offset: u64,
        alignment: u64,
    },

    /// A tensor's bytes (absolute `offset .. offset + size`) are not inside the file.
    #[error(
        "tensor `{tensor}` occupies bytes {offset}..{offset}+{size} but the file is only \
         {file_size} bytes; the file is truncated: re-download it"
    )]
    TensorOutOfBounds {
        tensor: String,
        offset: u64,
        size: u64,
        file_size: u64,
    },

    /// Two tensors' byte ranges overlap.
    #[error(
        "tensors `{first}` (bytes {first_offset}..{first_end}) and `{second}` (from byte \
         {second_offset}) overlap; the file is corrupt or crafted"
    )]
    OverlappingTensors {
        first: String,
        first_offset: u64,
        first_end: u64,
        second: String,
        second_offset: u64,
    },

    /// Writer: the data given for a tensor is not the size its shape and type require.
    #[error("tensor `{tensor}` needs {expected} bytes of data for its shape and type, got {got}")]
    DataSizeMismatch {
        tensor: String,
        expected: u64,
        got: u64,
    },

    /// Writer: a tensor name of [`crate::MAX_TENSOR_NAME`] bytes or more (llama.cpp rejects them).
    #[error("tensor name `{tensor}` is {len} bytes; llama.cpp accepts at most {limit}")]
    NameTooLong {
        tensor: String,
        len: u64,
        limit: u64,
    },
}

fn version_hint(version: u32) -> &'static str {
    match version {
        1 => {
            "; GGUF v1 files (mid-2023) are obsolete: download a current conversion of the model \
             or re-convert it with a recent llama.cpp"
        }
        0 => "; the file is corrupt",
        _ => "; the file was written by a newer tool: update Hearth",
    }
}
