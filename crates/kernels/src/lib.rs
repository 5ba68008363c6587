//! Tensor formats and the compute kernels the engine runs on.
//!
//! - [`formats`]: block layouts of every supported ggml type, the scalar reference dequantizers,
//!   activation quantization (Q8_0, Q8_1, Q8_K) and the scalar reference dot products.
//! - [`Matrix`] views a weight tensor's bytes as rows; [`matmul`] multiplies it by a batch of f32
//!   activations, quantizing them once and running the best dot kernel for this CPU (chosen at run
//!   time: AVX-512 VNNI, AVX2+FMA+F16C, or scalar) across the [`ThreadPool`].

mod error;
pub mod formats;

pub use error::KernelError;
