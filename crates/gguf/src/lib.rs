//! Reading and writing GGUF files, the self-contained model format of llama.cpp.
//!
//! [`Gguf`] opens a file (memory-mapped, zero-copy) and exposes its metadata as [`Value`]s and its
//! tensors as [`TensorInfo`]s whose bytes [`Gguf::tensor_data`] borrows straight from the map. Every
//! count, length, offset and type id is treated as hostile and checked before use: a malformed file
//! yields a [`GgufError`] naming the field and byte offset, never a panic or a huge allocation.
//! [`GgufWriter`] produces files the reader accepts (for tests, import and quantization).
//! [`GgmlType`] lists the tensor element types with their block geometry.
//!
//! The limits the reader enforces are public constants: [`MAX_DIMS`], [`MAX_ARRAY_NESTING`],
//! [`MAX_METADATA_VALUES`], [`MAX_TENSORS`]; [`DEFAULT_ALIGNMENT`] applies when a file has no
//! `general.alignment` key.
//!
//! ```
//! use gguf::{GgmlType, Gguf, GgufWriter, Value};
//!
//! let mut w = GgufWriter::new();
//! w.add_metadata("general.architecture", Value::from("llama"));
//! w.add_metadata("llama.context_length", Value::U32(4096));
//! w.add_tensor("token_embd.weight", &[32, 2], GgmlType::Q8_0, vec![0; 2 * 34]).unwrap();
//!
//! let file = Gguf::from_bytes(w.to_bytes()).unwrap();
//! assert_eq!(file.get_u64("llama.context_length"), Some(4096));
//! let t = file.tensor("token_embd.weight").unwrap();
//! assert_eq!((t.n_elements(), t.n_bytes), (64, 68));
//! assert_eq!(file.tensor_data(t).len(), 68);
//! assert_eq!(t.offset % file.alignment(), 0);
//! ```

mod error;
mod reader;
mod types;
mod value;
mod writer;

pub use error::GgufError;
pub use reader::{
    Gguf, TensorInfo, DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_NESTING, MAX_DIMS, MAX_METADATA_VALUES,
    MAX_TENSORS, MAX_TENSOR_NAME,
};
pub use types::GgmlType;
pub use value::Value;
pub use writer::GgufWriter;
