//! Block layouts of every supported ggml tensor type, with scalar reference implementations of
//! dequantization, weight quantization, activation quantization and the quantized dot product.
//!
//! Everything here is plain safe scalar Rust written for clarity: it is the ground truth the SIMD
//! kernels are tested against, and the fallback on CPUs without them. The layouts and arithmetic
//! follow llama.cpp (`ggml-common.h`, `ggml-quants.c`, `ggml-cpu/quants.c`), which is the
//! authority: the tests compare against tensors llama.cpp itself quantized.
//!
//! # Supported types
//!
//! | weight type | block | bytes | activations ([`activation_type`]) | module |
//! |---|---|---|---|---|
//! | F32, F16, BF16 | 1 | 4, 2, 2 | F32 (raw little-endian f32) | [`float`] |
//! | Q4_0 | 32 | 18 | Q8_0 | [`q4_0`] |
//! | Q4_1 | 32 | 20 | Q8_1 | [`q4_1`] |
//! | Q5_0 | 32 | 22 | Q8_0 | [`q5_0`] |
//! | Q5_1 | 32 | 24 | Q8_1 | [`q5_1`] |
//! | Q8_0 | 32 | 34 | Q8_0 | [`q8_0`] |
//! | Q2_K | 256 | 84 | Q8_K | [`q2_k`] |
//! | Q3_K | 256 | 110 | Q8_K | [`q3_k`] |
//! | Q4_K | 256 | 144 | Q8_K | [`q4_k`] |
//! | Q5_K | 256 | 176 | Q8_K | [`q5_k`] |
//! | Q6_K | 256 | 210 | Q8_K | [`q6_k`] |
//! | IQ4_NL | 32 | 18 | Q8_0 | [`iq4_nl`] |
//! | IQ4_XS | 256 | 136 | Q8_K | [`iq4_xs`] |
//!
//! Activation-only types (Q8_0 as activations, Q8_1, Q8_K) live in [`q8`].
//!
//! All multi-byte fields are little-endian; blocks are packed with no padding and are *not*
//! aligned (an 18-byte Q4_0 block can start at any byte), so every read here is a byte read.
//! `f16` means IEEE binary16 (converted with the `half` crate, round-to-nearest-even).
//!
//! # Row-level API
//!
//! The functions below work on whole rows (a row is a whole number of blocks). Each per-type module
//! also exposes block-level functions (`dequantize_block`, `quantize_block`, `vec_dot_block`) on
//! fixed-size arrays and the byte offsets of its fields, for the SIMD kernels and their tests.

use crate::KernelError;
use gguf::GgmlType;

pub mod float;
pub mod iq4_nl;
pub mod iq4_xs;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8;
pub mod q8_0;
mod search;

#[cfg(test)]
mod test_util;
#[cfg(test)]
mod tests;

pub use iq4_nl::KVALUES_IQ4NL;

/// Elements per K-quant super-block (Q2_K..Q6_K, Q8_K, IQ4_XS).
pub const QK_K: usize = 256;

/// Elements per block of the 32-element types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, IQ4_NL).
pub const QK32: usize = 32;

/// Unpacks the 6-bit scale and 6-bit min of sub-block `j` (0..8) from the 12 packed scale bytes
/// of a Q4_K or Q5_K block (llama.cpp's `get_scale_min_k4`).
///
/// Bytes 0..4 hold the low 6 bits of scales 0..3, bytes 4..8 the low 6 bits of mins 0..3; for
/// `j >= 4` the low 4 bits come from byte `j + 4` (scale in the low nibble, min in the high one)
/// and the top 2 bits from the top 2 bits of byte `j - 4` (scale) and byte `j` (min).
#[inline]
pub fn scale_min_k4(j: usize, scales: &[u8; 12]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        (
            (scales[j + 4] & 0xF) | ((scales[j - 4] >> 6) << 4),
            (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4),
        )
    }
}

/// Reads an `f16` stored little-endian at `off` and widens it to f32.
#[inline]
pub fn read_f16(b: &[u8], off: usize) -> f32 {
    half::f16::from_le_bytes([b[off], b[off + 1]]).to_f32()
}

/// Rounds `v` to the nearest `f16` (ties to even) and stores it little-endian at `off`.
#[inline]
pub(crate) fn write_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
}

/// Round to nearest, ties to even (llama.cpp's `nearest_int`, which adds 1.5*2^23).
#[inline]
pub(crate) fn nearest_int(x: f32) -> i32 {
    x.round_ties_even() as i32
}

/// Every weight type the kernels can compute with.
pub const SUPPORTED: [GgmlType; 15] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::IQ4_NL,
    GgmlType::IQ4_XS,
];

/// Whether tensors of type `ty` can be computed with (dequantized, dotted, quantized).
pub fn is_supported(ty: GgmlType) -> bool {
    use GgmlType::*;
    matches!(
        ty,
        F32 | F16
            | BF16
            | Q4_0
            | Q4_1
            | Q5_0
            | Q5_1
            | Q8_0
            | Q2_K
            | Q3_K
            | Q4_K
            | Q5_K
            | Q6_K
            | IQ4_NL
            | IQ4_XS
    )
}

/// Checks that `n` elements are whole blocks of `ty` and that `bytes` is exactly their size.
fn check_row(ty: GgmlType, n: usize, bytes: usize, what: &'static str) -> Result<(), KernelError> {
    if !is_supported(ty) {
        return Err(KernelError::UnsupportedType(ty));
    }
    let block = ty.block_size();
    if !n.is_multiple_of(block) {
        return Err(KernelError::RaggedRow { ty, cols: n, block });
    }
    let expected = n / block * ty.type_size();
    if bytes != expected {
        return Err(KernelError::SizeMismatch {
            what,
            expected,
            got: bytes,
        });
    }
    Ok(())
}

/// Applies `f` to each (block bytes, block values) pair of a row.
fn each_block<const B: usize, const Q: usize>(
    src: &[u8],
    dst: &mut [f32],
    f: impl Fn(&[u8; B], &mut [f32; Q]),
) {
    for (b, y) in src.chunks_exact(B).zip(dst.chunks_exact_mut(Q)) {
        f(b.try_into().unwrap(), y.try_into().unwrap());
    }
}

/// Applies `f` to each (block values, block bytes) pair of a row.
fn each_block_mut<const B: usize, const Q: usize>(
    src: &[f32],
    dst: &mut [u8],
    f: impl Fn(&[f32; Q], &mut [u8; B]),
) {
    for (x, b) in src.chunks_exact(Q).zip(dst.chunks_exact_mut(B)) {
        f(x.try_into().unwrap(), b.try_into().unwrap());
    }
}

/// Sums `f` over the (weight block, activation block) pairs of a row, in order, in f32.
fn sum_blocks<const B: usize, const A: usize>(
    w: &[u8],
    act: &[u8],
    f: impl Fn(&[u8; B], &[u8; A]) -> f32,
) -> f32 {
    let mut sum = 0.0f32;
    for (wb, ab) in w.chunks_exact(B).zip(act.chunks_exact(A)) {
        sum += f(wb.try_into().unwrap(), ab.try_into().unwrap());
    }
    sum
}

/// Dequantizes one row: `dst.len()` elements (a multiple of the block size) from `src`, which
/// must be exactly the bytes of that many elements.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), KernelError> {
    check_row(ty, dst.len(), src.len(), "dequantize_row source")?;
    use GgmlType::*;
    match ty {
        F32 => float::dequantize_f32(src, dst),
        F16 => float::dequantize_f16(src, dst),
        BF16 => float::dequantize_bf16(src, dst),
        Q4_0 => each_block(src, dst, q4_0::dequantize_block),
        Q4_1 => each_block(src, dst, q4_1::dequantize_block),
        Q5_0 => each_block(src, dst, q5_0::dequantize_block),
        Q5_1 => each_block(src, dst, q5_1::dequantize_block),
        Q8_0 => each_block(src, dst, q8_0::dequantize_block),
        Q2_K => each_block(src, dst, q2_k::dequantize_block),
        Q3_K => each_block(src, dst, q3_k::dequantize_block),
        Q4_K => each_block(src, dst, q4_k::dequantize_block),
        Q5_K => each_block(src, dst, q5_k::dequantize_block),
        Q6_K => each_block(src, dst, q6_k::dequantize_block),
        IQ4_NL => each_block(src, dst, iq4_nl::dequantize_block),
        IQ4_XS => each_block(src, dst, iq4_xs::dequantize_block),
        _ => unreachable!("check_row rejects unsupported types"),
    }
    Ok(())
}

/// Quantizes one row of weights: `src.len()` elements (a multiple of the block size) into `dst`,
/// which must be exactly the bytes of that many elements.
///
/// This reproduces llama-quantize without an importance matrix (`quantize_row_*_ref`, and
/// `quantize_iq4_nl`/`quantize_iq4_xs` without weights): Q4_0..Q8_0 by min/max, the K-quants and
/// IQ4 types with the same scale searches in the same floating-point order. The tests check that
/// the output is byte-identical to llama.cpp's for every type on the synthetic reference model.
pub fn quantize_row(ty: GgmlType, src: &[f32], dst: &mut [u8]) -> Result<(), KernelError> {
    check_row(ty, src.len(), dst.len(), "quantize_row destination")?;
    use GgmlType::*;
    match ty {
        F32 => float::quantize_f32(src, dst),
        F16 => float::quantize_f16(src, dst),
        BF16 => float::quantize_bf16(src, dst),
        Q4_0 => each_block_mut(src, dst, q4_0::quantize_block),
        Q4_1 => each_block_mut(src, dst, q4_1::quantize_block),
        Q5_0 => each_block_mut(src, dst, q5_0::quantize_block),
        Q5_1 => each_block_mut(src, dst, q5_1::quantize_block),
        Q8_0 => each_block_mut(src, dst, q8_0::quantize_block),
        Q2_K => each_block_mut(src, dst, q2_k::quantize_block),
        Q3_K => each_block_mut(src, dst, q3_k::quantize_block),
        Q4_K => each_block_mut(src, dst, q4_k::quantize_block),
        Q5_K => each_block_mut(src, dst, q5_k::quantize_block),
        Q6_K => each_block_mut(src, dst, q6_k::quantize_block),
        IQ4_NL => each_block_mut(src, dst, iq4_nl::quantize_block),
        IQ4_XS => each_block_mut(src, dst, iq4_xs::quantize_block),
        _ => unreachable!("check_row rejects unsupported types"),
    }
    Ok(())
}

/// The type activations are quantized to for a dot product with weights of type `weight`
/// (llama.cpp's `vec_dot_type` on x86): Q4_0/Q5_0/Q8_0/IQ4_NL -> Q8_0; Q4_1/Q5_1 -> Q8_1;
/// Q2_K..Q6_K and IQ4_XS -> Q8_K; F32/F16/BF16 -> F32 (activations kept as raw little-endian
/// f32 bytes; llama.cpp converts them to F16/BF16 instead, we keep full precision).
pub fn activation_type(weight: GgmlType) -> Result<GgmlType, KernelError> {
    use GgmlType::*;
    Ok(match weight {
        F32 | F16 | BF16 => F32,
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | IQ4_XS => Q8_K,
        other => return Err(KernelError::UnsupportedType(other)),
    })
}

/// Bytes of a row of `n` activations quantized to `act` (one of F32, Q8_0, Q8_1, Q8_K).
/// `n` must be a multiple of the block size.
pub fn activation_row_bytes(act: GgmlType, n: usize) -> usize {
    debug_assert!(
        n.is_multiple_of(act.block_size()),
        "{n} is not whole {act} blocks"
    );
    n / act.block_size() * act.type_size()
}

/// Quantizes a row of activations `src` to `act` (F32, Q8_0, Q8_1 or Q8_K) into `dst`, which
/// must be exactly [`activation_row_bytes`]`(act, src.len())` long.
///
/// Q8_0 and Q8_1 follow llama.cpp's x86 (AVX2) path, which is what produced the reference
/// outputs: `d = amax/127` stored as f16, `q = round_half_even(x * (127/amax))`; Q8_1 adds
/// `s = f16(d * sum(q))`. Q8_K follows `quantize_row_q8_K_ref` (used on x86 too): f32
/// `d = max/-127` for the signed element of largest magnitude (so `d` is usually negative),
/// `q = min(127, round_half_even(x * -127/max))`, and `bsums[i]` = sum of the 16 `q` of group `i`.
/// F32 is a plain little-endian copy.
///
/// # Panics
/// If `act` is not an activation type or the lengths do not match (caller bugs).
pub fn quantize_activations(act: GgmlType, src: &[f32], dst: &mut [u8]) {
    assert_eq!(
        dst.len(),
        activation_row_bytes(act, src.len()),
        "quantize_activations: {} {act} activations need {} bytes",
        src.len(),
        activation_row_bytes(act, src.len())
    );
    match act {
        GgmlType::F32 => float::quantize_f32(src, dst),
        GgmlType::Q8_0 => each_block_mut(src, dst, q8::quantize_q8_0_block),
        GgmlType::Q8_1 => each_block_mut(src, dst, q8::quantize_q8_1_block),
        GgmlType::Q8_K => each_block_mut(src, dst, q8::quantize_q8_k_block),
        other => panic!("quantize_activations: {other} is not an activation type"),
    }
}

/// Scalar reference dot product of one weight row `w` (`n` elements of type `weight`) with one
/// activation row `act` quantized to [`activation_type`]`(weight)` by [`quantize_activations`].
///
/// Per block the products are summed in integers exactly as llama.cpp's reference kernels do, then
/// scaled in f32 and summed over blocks in order; F32/F16/BF16 weights are dotted with the f32
/// activations in f64.
///
/// # Panics
/// If `weight` is unsupported or the lengths do not match `n` (caller bugs).
pub fn vec_dot(weight: GgmlType, w: &[u8], act: &[u8], n: usize) -> f32 {
    let act_ty = activation_type(weight).expect("vec_dot: unsupported weight type");
    assert!(
        n.is_multiple_of(weight.block_size())
            && w.len() == n / weight.block_size() * weight.type_size(),
        "vec_dot: {} bytes are not a row of {n} {weight} elements",
        w.len()
    );
    assert_eq!(
        act.len(),
        activation_row_bytes(act_ty, n),
        "vec_dot: activation row is not {n} {act_ty} elements"
    );
    use GgmlType::*;
    match weight {
        F32 => float::vec_dot_f32(w, act),
        F16 => float::vec_dot_f16(w, act),
        BF16 => float::vec_dot_bf16(w, act),
        Q4_0 => sum_blocks(w, act, q4_0::vec_dot_block),
        Q4_1 => sum_blocks(w, act, q4_1::vec_dot_block),
        Q5_0 => sum_blocks(w, act, q5_0::vec_dot_block),
        Q5_1 => sum_blocks(w, act, q5_1::vec_dot_block),
        Q8_0 => sum_blocks(w, act, q8_0::vec_dot_block),
        Q2_K => sum_blocks(w, act, q2_k::vec_dot_block),
        Q3_K => sum_blocks(w, act, q3_k::vec_dot_block),
        Q4_K => sum_blocks(w, act, q4_k::vec_dot_block),
        Q5_K => sum_blocks(w, act, q5_k::vec_dot_block),
        Q6_K => sum_blocks(w, act, q6_k::vec_dot_block),
        IQ4_NL => sum_blocks(w, act, iq4_nl::vec_dot_block),
        IQ4_XS => sum_blocks(w, act, iq4_xs::vec_dot_block),
        _ => unreachable!("activation_type rejects unsupported types"),
    }
}
