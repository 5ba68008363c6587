//! Activation quantization: Q8_0, Q8_1 and Q8_K (the types activations are converted to before a
//! dot product with quantized weights; see [`activation_type`](super::activation_type)).
//!
//! | type | elements | bytes | layout |
//! |---|---|---|---|
//! | Q8_0 | 32 | 34 | `f16 d; i8 qs[32]` — value `j` is `d * qs[j]` (same block as Q8_0 weights) |
//! | Q8_1 | 32 | 36 | `f16 d; f16 s; i8 qs[32]` — `s = d * sum(qs)`, used to fold Q4_1/Q5_1 mins |
//! | Q8_K | 256 | 292 | `f32 d; i8 qs[256]; i16 bsums[16]` — `bsums[i] = sum(qs[16i..16i+16])` |
//!
//! Q8_K's `d` is an **f32** and is usually **negative** (it is `max / -127` for the element of
//! largest magnitude); the dot kernels just multiply by it.

use super::{nearest_int, read_f16, write_f16, QK32, QK_K};

/// Bytes of a Q8_0 block.
pub const Q8_0_BYTES: usize = 34;
/// Bytes of a Q8_1 block.
pub const Q8_1_BYTES: usize = 36;
/// Bytes of a Q8_K block.
pub const Q8_K_BYTES: usize = 292;

/// Offset of the f16 `d` in a Q8_0 block.
pub const Q8_0_D: usize = 0;
/// Offset of the 32 `i8` quants in a Q8_0 block.
pub const Q8_0_QS: usize = 2;
/// Offset of the f16 `d` in a Q8_1 block.
pub const Q8_1_D: usize = 0;
/// Offset of the f16 `s = d * sum(qs)` in a Q8_1 block.
pub const Q8_1_S: usize = 2;
/// Offset of the 32 `i8` quants in a Q8_1 block.
pub const Q8_1_QS: usize = 4;
/// Offset of the f32 `d` in a Q8_K block.
pub const Q8_K_D: usize = 0;
/// Offset of the 256 `i8` quants in a Q8_K block.
pub const Q8_K_QS: usize = 4;
/// Offset of the 16 `i16` group sums in a Q8_K block.
pub const Q8_K_BSUMS: usize = 260;

/// Largest |x| of a slice (0 for an empty or all-zero one; NaNs are ignored).
#[inline]
fn abs_max(x: &[f32]) -> f32 {
    x.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Quantizes 32 values to `q = round_half_even(x * 127/amax)` with `d = amax/127`, writing the
/// quants at `qs_off` and returning `(d, sum of q)`.
fn quantize_32(x: &[f32; QK32], out: &mut [u8], qs_off: usize) -> (f32, i32) {
    let amax = abs_max(x);
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let mut sum = 0i32;
    for (j, &v) in x.iter().enumerate() {
        let q = (v * id).round_ties_even() as i32;
        out[qs_off + j] = q as i8 as u8;
        sum += q;
    }
    (d, sum)
}

/// Quantizes 32 activations to a Q8_0 block the way llama.cpp's x86 `quantize_row_q8_0` does:
/// `d = amax/127` (stored as f16), `q = round_half_even(x * (127/amax))`.
///
/// (The portable `quantize_row_q8_0_ref` multiplies by `1/d` and rounds ties away from zero; it is
/// what [`q8_0::quantize_block`](super::q8_0::quantize_block) does for weights.)
pub fn quantize_q8_0_block(x: &[f32; QK32], out: &mut [u8; Q8_0_BYTES]) {
    let (d, _) = quantize_32(x, out, Q8_0_QS);
    write_f16(out, Q8_0_D, d);
}

/// Quantizes 32 activations to a Q8_1 block (llama.cpp's x86 `quantize_row_q8_1`): as
/// [`quantize_q8_0_block`] plus `s = f16(d * sum(q))` with the unrounded f32 `d`.
pub fn quantize_q8_1_block(x: &[f32; QK32], out: &mut [u8; Q8_1_BYTES]) {
    let (d, sum) = quantize_32(x, out, Q8_1_QS);
    write_f16(out, Q8_1_D, d);
    write_f16(out, Q8_1_S, d * sum as f32);
}

/// Quantizes 256 activations to a Q8_K block (`quantize_row_q8_K_ref`, which x86 uses too).
///
/// `max` is the first element of largest magnitude (with its sign); `iscale = -127/max`;
/// `q = min(127, round_half_even(iscale * x))`; `d = 1/iscale` (f32, negative when `max > 0`);
/// `bsums[i]` is the sum of `q[16i..16i+16]`. An all-zero block gets `d = 0` and zero quants.
pub fn quantize_q8_k_block(x: &[f32; QK_K], out: &mut [u8; Q8_K_BYTES]) {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if v.abs() > amax {
            amax = v.abs();
            max = v;
        }
    }
    if amax == 0.0 {
        out.fill(0);
        return;
    }
    let iscale = -127.0 / max;
    for (j, &v) in x.iter().enumerate() {
        out[Q8_K_QS + j] = nearest_int(iscale * v).min(127) as i8 as u8;
    }
    for g in 0..QK_K / 16 {
        let s: i32 = (0..16)
            .map(|k| out[Q8_K_QS + 16 * g + k] as i8 as i32)
            .sum();
        out[Q8_K_BSUMS + 2 * g..Q8_K_BSUMS + 2 * g + 2].copy_from_slice(&(s as i16).to_le_bytes());
    }
    out[Q8_K_D..Q8_K_D + 4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
}

/// The f32 `d` of a Q8_K block.
#[inline]
pub fn q8_k_d(b: &[u8; Q8_K_BYTES]) -> f32 {
    f32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Quant `j` (0..256) of a Q8_K block.
#[inline]
pub fn q8_k_q(b: &[u8; Q8_K_BYTES], j: usize) -> i32 {
    b[Q8_K_QS + j] as i8 as i32
}

/// Group sum `i` (0..16): the sum of quants `16i..16i+16` of a Q8_K block.
#[inline]
pub fn q8_k_bsum(b: &[u8; Q8_K_BYTES], i: usize) -> i32 {
    i16::from_le_bytes([b[Q8_K_BSUMS + 2 * i], b[Q8_K_BSUMS + 2 * i + 1]]) as i32
}

/// Integer dot product of quants `q` with the same number of raw `i8` activation bytes `a`.
#[inline]
pub fn dot_i8(q: &[i8], a: &[u8]) -> i32 {
    debug_assert_eq!(q.len(), a.len());
    q.iter()
        .zip(a)
        .map(|(&x, &y)| x as i32 * (y as i8) as i32)
        .sum()
}

/// Quant `j` (0..32) of a Q8_0 block.
#[inline]
pub fn q8_0_q(b: &[u8; Q8_0_BYTES], j: usize) -> i32 {
    b[Q8_0_QS + j] as i8 as i32
}

/// Quant `j` (0..32) of a Q8_1 block.
#[inline]
pub fn q8_1_q(b: &[u8; Q8_1_BYTES], j: usize) -> i32 {
    b[Q8_1_QS + j] as i8 as i32
}

/// Values of a Q8_1 block: `d * q` (for tests; `s` is redundant).
pub fn dequantize_q8_1_block(b: &[u8; Q8_1_BYTES], y: &mut [f32; QK32]) {
    let d = read_f16(b, Q8_1_D);
    for (j, v) in y.iter_mut().enumerate() {
        *v = q8_1_q(b, j) as f32 * d;
    }
}

/// Values of a Q8_K block: `d * q` (for tests; `bsums` are redundant).
pub fn dequantize_q8_k_block(b: &[u8; Q8_K_BYTES], y: &mut [f32; QK_K]) {
    let d = q8_k_d(b);
    for (j, v) in y.iter_mut().enumerate() {
        *v = q8_k_q(b, j) as f32 * d;
    }
}
