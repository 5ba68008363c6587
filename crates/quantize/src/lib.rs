//! Re-quantizing a GGUF model: an F32, F16, BF16 or Q8_0 file becomes a Q8_0, Q4_0, Q4_K_M or
//! Q5_K_M one, as `ollama create --quantize` and `llama-quantize` make them.
//!
//! [`quantize_file`] reads the source with the [`gguf`] reader, decides every tensor's type with
//! [`plan`] (a [`TensorPlan`] per tensor), converts the weights with the kernels' scalar
//! quantizers ([`kernels::formats::quantize_row`], which produce llama.cpp's bytes), streams the
//! result tensor by tensor into a temporary file beside the destination and renames it into
//! place when it is complete, and returns a [`Report`]. [`Target`] names the mix (parsed from
//! `q4_K_M` and the like, in any case); [`QuantizeError`] says what went wrong.
//!
//! ```no_run
//! use std::path::Path;
//! use quantize::{quantize_file, Target};
//!
//! let target: Target = "q4_K_M".parse()?;
//! let report = quantize_file(
//!     Path::new("model-f16.gguf"),
//!     Path::new("model-q4_k_m.gguf"),
//!     target,
//!     &mut |p| eprintln!("[{}/{}] {} -> {}", p.done, p.total, p.tensor.name, p.tensor.to),
//! )?;
//! println!("{} -> {} bytes", report.src_bytes, report.dst_bytes);
//! # Ok::<(), quantize::QuantizeError>(())
//! ```
//!
//! # The output file
//!
//! All metadata is copied in order, with `general.file_type` set to llama.cpp's `llama_ftype`
//! for the target ([`Target::file_type`]: Q8_0 = 7, Q4_0 = 2, Q4_K_M = 15, Q5_K_M = 17) and
//! `general.quantization_version` to 2. Tensors keep their order, names and shapes, and the
//! file's alignment is kept. A tensor whose type does not change is copied byte for byte (so a
//! Q8_0 source quantized to Q8_0 keeps its exact weights); the others are dequantized to f32
//! ([`kernels::formats::dequantize_row`]) and quantized, rows spread over the CPU's threads.
//!
//! # Type rules
//!
//! These are llama.cpp's (`llama_tensor_get_type` and the loop around it in
//! `src/llama-quant.cpp`), without an importance matrix and without per-tensor overrides:
//!
//! - **Accepted input**: every tensor must be F32, F16, BF16 or Q8_0; any other type is rejected
//!   before anything is written, naming the first such tensor. Shards of a split model
//!   (`split.count` > 1) are rejected.
//! - **Not quantized** (kept in their source type): tensors whose name does not end in `weight`,
//!   1-D tensors (norms, biases; trailing dimensions of 1 do not count), names containing
//!   `_norm.weight`, `ffn_gate_inp.weight`, `altup`, `laurel`, `per_layer_model_proj`,
//!   `ssm_conv1d.weight`, `shortconv.conv.weight`, RWKV's `time_mix_*` mixing weights or
//!   `attn_rel_b.weight`, and `position_embd.weight`, `token_types.weight`.
//! - **Base type** of every other tensor: Q8_0, Q4_0, Q4_K or Q5_K ([`Target::base_type`]).
//! - **Output matrix** (`output.weight`, or `token_embd.weight` when the model has no
//!   `output.weight`, i.e. tied embeddings): Q8_0 when the architecture is `falcon` or its rows
//!   are not whole base-type blocks, else Q6_K unless the target is Q8_0. So Q4_0, Q4_K_M and
//!   Q5_K_M write it as Q6_K.
//! - **`token_embd.weight`** (untied) and **`per_layer_token_embd.weight`**: base type.
//! - **`attn_v.weight`**: Q6_K in Q4_K_M and Q5_K_M where `use_more_bits(i, n)` holds for the
//!   `i`-th attn_v of the `n` tensors named `attn_v`/`attn_qkv`/`attn_kv_b`; `use_more_bits` is
//!   true for the first eighth (`i < n/8`), the last eighth (`i >= 7n/8`) and every third in
//!   between (`(i - n/8) % 3 == 2`). In a 70B model (80-layer llama with grouped-query
//!   attention, or 80-layer qwen2) a Q4_K attn_v becomes Q5_K. With 8 experts, Q8_0.
//! - **`attn_k.weight`**: Q8_0 with 8 experts.
//! - **`ffn_down`** (any name containing it): in Q4_K_M and Q5_K_M, Q6_K where
//!   `use_more_bits(layer, block_count)`; the layer is the tensor's rank among the ffn_down
//!   tensors in a dense model and the `N` of `blk.N.` with experts. Falcon in Q4_K_M instead:
//!   Q6_K for the first sixteenth of the layers, Q5_K where `use_more_bits`, Q4_K elsewhere.
//! - **`attn_output.weight`**: Q5_K in Q4_K_M with 8 experts (not falcon).
//! - **`attn_qkv.weight`** (fused, e.g. phi3): Q5_K in Q4_K_M, Q6_K in Q5_K_M.
//! - **Fallbacks** when a row length is not a whole number of the chosen type's blocks:
//!   Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0, and F16 if the row is not whole blocks of 32
//!   either. Q8_0 and Q4_0 have no fallback: such a tensor is an error, as in llama.cpp.
//!
//! Counters run in llama.cpp's visiting order (tensors outside `blk.N.` first, then by layer,
//! then by name), not in file order. The rules llama.cpp has only for other mixes (Q2_K, Q3_K,
//! IQ types, Q4_K_S, MXFP4) and those that need an importance matrix do not apply here.
//!
//! # Memory and crashes
//!
//! The source is memory-mapped; at most one batch of a tensor's rows (32 MiB of output) is
//! converted at a time, so memory does not grow with the model. The destination is never
//! half-written: the output goes to `.NAME.tmp-PID-N` in the destination's directory, is
//! synced, re-read with the GGUF reader and only then renamed over the destination. On an error
//! the temporary file is removed; a killed process can leave one behind.

mod error;
mod rules;
mod target;
mod write;

use std::path::Path;

use gguf::Gguf;

pub use error::QuantizeError;
pub use rules::{plan, TensorPlan};
pub use target::Target;

/// Where a running quantization stands, passed to the progress callback after each tensor.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    /// Tensors written so far (this one included).
    pub done: usize,
    /// Tensors in the model.
    pub total: usize,
    /// The tensor just written.
    pub tensor: &'a TensorPlan,
}

/// What [`quantize_file`] did.
#[derive(Clone, Debug)]
pub struct Report {
    /// The mix written.
    pub target: Target,
    /// Every tensor, in file order, with its source and output types.
    pub tensors: Vec<TensorPlan>,
    /// Size of the source file in bytes.
    pub src_bytes: u64,
    /// Size of the written file in bytes.
    pub dst_bytes: u64,
}

/// Re-quantizes the GGUF model at `src` to `target` and writes it to `dst`, replacing any file
/// there only once the new one is complete. `progress` is called after each tensor.
///
/// Uses every available CPU thread. See the crate documentation for the type rules.
pub fn quantize_file(
    src: &Path,
    dst: &Path,
    target: Target,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Report, QuantizeError> {
    let gguf_err = |path: &Path| {
        let path = path.to_owned();
        move |source| QuantizeError::Gguf { path, source }
    };
    let model = Gguf::open(src).map_err(gguf_err(src))?;
    let tensors = plan(&model, target)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());

    let header = write::header(&model, target, &tensors);
    let mut out = write::TempOutput::create(dst, model.alignment())?;
    out.write(&header)?;
    for (i, (t, info)) in tensors.iter().zip(model.tensors()).enumerate() {
        out.pad()?;
        let data = model.tensor_data(info);
        if t.from == t.to {
            out.write(data)?;
        } else {
            write::convert_tensor(data, t, threads, &mut out)?;
        }
        progress(Progress {
            done: i + 1,
            total: tensors.len(),
            tensor: t,
        });
    }
    if !tensors.is_empty() {
        out.pad()?;
    }
    let dst_bytes = out.finish()?;
    // The header was assembled here, not by the writer: read it back before it can replace
    // anything, so that a file our own reader rejects is never installed.
    Gguf::open(out.path()).map_err(gguf_err(out.path()))?;
    out.install(dst)?;
    Ok(Report {
        target,
        tensors,
        src_bytes: model.file_size(),
        dst_bytes,
    })
}
