//! Tensor formats and the compute kernels the engine runs on.
//!
//! - [`formats`]: block layouts of every supported ggml type, the scalar reference dequantizers,
//!   activation quantization (Q8_0, Q8_1, Q8_K) and the scalar reference dot products.
//! - [`Matrix`] views a weight tensor's bytes as rows; [`matmul()`] multiplies it by a batch of f32
//!   activations, quantizing them once and running the best dot kernel for this CPU across the
//!   [`ThreadPool`]; [`matmul_multi`] does several matrices that share their input (Q/K/V,
//!   gate/up) with one quantization and one pool dispatch.
//! - [`simd`]: run-time instruction-set selection ([`simd::Level`]: AVX-512 VNNI, AVX2+FMA+F16C,
//!   or scalar) and the per-type dot kernels ([`simd::DotKernel`]) and activation quantizers
//!   ([`simd::QuantKernel`]); [`cpu_features`] names the level in use.
//! - [`attention`]: causal attention over the KV cache (f16 or Q8_0 rows) in llama.cpp's
//!   flash-attention numerics (query by query below 64 queries, tiled from 64), across the pool,
//!   and the Walsh-Hadamard rotation of a quantized cache's rows.
//! - [`activation`]: SwiGLU and GEGLU with ggml's vector `expf` and f16 GELU table; [`rope`]:
//!   rotary embeddings with fused multiply-adds; [`rows`]: parallel loops over disjoint rows.
//! - [`ThreadPool`]: persistent workers with a spin-then-park barrier; [`ThreadPool::run`] and
//!   [`ThreadPool::for_each_chunk`] (atomic work stealing).

pub mod activation;
pub mod attention;
mod error;
pub mod formats;
pub mod matmul;
pub mod pool;
pub mod rope;
pub mod rows;
pub mod simd;

pub use error::KernelError;
pub use matmul::{matmul, matmul_multi, matmul_multi_ordered, pack_matrix, packed_size, Matrix};
pub use pool::ThreadPool;

/// The instruction set the kernels use on this machine (`avx512vnni`, `avx2` or `scalar`), for
/// `--verbose` output.
pub fn cpu_features() -> &'static str {
    simd::active_level().name()
}
