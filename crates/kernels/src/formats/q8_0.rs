//! Q8_0: 32 elements in 34 bytes (8.5 bits per weight).
//!
//! Layout: `f16 d` at byte 0, then `i8 qs[32]` at byte 2. Element `j` = `d * qs[j]`.
//! Weights are dotted with Q8_0 activations (the same block layout, see [`q8`](super::q8)).

use super::q8::{dot_i8, Q8_0_BYTES, Q8_0_QS};
use super::{read_f16, write_f16, QK32};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 34;
/// Offset of the f16 scale `d`.
pub const D: usize = 0;
/// Offset of the 32 signed quants.
pub const QS: usize = 2;

/// Dequantizes one block: `y[j] = d * qs[j]`.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK32]) {
    let d = read_f16(b, D);
    for (j, v) in y.iter_mut().enumerate() {
        *v = (b[QS + j] as i8) as f32 * d;
    }
}

/// Quantizes one block of weights like `quantize_row_q8_0_ref`: `d = amax/127`,
/// `q = round_half_away(x / d)` (multiplying by `1/d`).
pub fn quantize_block(x: &[f32; QK32], b: &mut [u8; BLOCK_BYTES]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    write_f16(b, D, d);
    for (j, &v) in x.iter().enumerate() {
        b[QS + j] = (v * id).round() as i8 as u8;
    }
}

/// Dot of one weight block with one Q8_0 activation block: `sum(qw * qa) * dw * da`.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_0_BYTES]) -> f32 {
    let q: [i8; QK32] = std::array::from_fn(|j| w[QS + j] as i8);
    dot_i8(&q, &a[Q8_0_QS..]) as f32 * read_f16(w, D) * read_f16(a, 0)
}
