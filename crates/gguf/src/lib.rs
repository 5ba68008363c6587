//! Reading and writing GGUF files, the self-contained model format of llama.cpp.
//!
//! [`Gguf`] opens a file (memory-mapped, zero-copy) and exposes its metadata as [`Value`]s and its
//! tensors as [`TensorInfo`]s whose bytes [`Gguf::tensor_data`] borrows straight from the map. Every
//! count, length, offset and type id is treated as hostile and checked before use: a malformed file
//! yields a [`GgufError`] naming the field and byte offset, never a panic or a huge allocation.
//! [`GgufWriter`] produces files the reader accepts (for tests, import and quantization).
//! [`GgmlType`] lists the tensor element types with their block geometry.

mod types;

pub use types::GgmlType;
