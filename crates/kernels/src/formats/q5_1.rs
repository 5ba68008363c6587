//! Q5_1: 32 elements in 24 bytes (6 bits per weight), asymmetric.
//!
//! Layout: `f16 d` at byte 0, `f16 m` at byte 2, `u8 qh[4]` at byte 4 (little-endian u32, bit `i`
//! = 5th bit of element `i`), `u8 qs[16]` at byte 8 (nibbles in Q4_0 order). Element =
//! `d * q + m`, `q` in 0..31. Weights are dotted with Q8_1 activations.

use super::q5_0::{pack_q5, q5, q5_all};
use super::q8::{dot_i8, Q8_1_BYTES, Q8_1_D, Q8_1_QS, Q8_1_S};
use super::{read_f16, write_f16, QK32};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 24;
/// Offset of the f16 scale `d`.
pub const D: usize = 0;
/// Offset of the f16 offset `m` (the block minimum).
pub const M: usize = 2;
/// Offset of the 32 high bits (little-endian u32).
pub const QH: usize = 4;
/// Offset of the 16 nibble-pair bytes.
pub const QS: usize = 8;

/// The 5-bit quant (0..31) of element `i` (0..32).
#[inline]
pub fn quant(b: &[u8; BLOCK_BYTES], i: usize) -> i32 {
    q5(b, QH, QS, i)
}

/// All 32 quants (0..31) in element order.
pub fn quants(b: &[u8; BLOCK_BYTES]) -> [i8; QK32] {
    q5_all(b, QH, QS)
}

/// Dequantizes one block: `y[i] = d * q5(i) + m`.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK32]) {
    let d = read_f16(b, D);
    let m = read_f16(b, M);
    for (v, &q) in y.iter_mut().zip(&quants(b)) {
        *v = q as f32 * d + m;
    }
}

/// Quantizes one block like `quantize_row_q5_1_ref`: `d = (max - min)/31`, `m = min`,
/// `q = trunc((x - min)/d + 0.5)` (at most 31).
pub fn quantize_block(x: &[f32; QK32], b: &mut [u8; BLOCK_BYTES]) {
    let (mut min, mut max) = (f32::MAX, -f32::MAX);
    for &v in x {
        if v < min {
            min = v;
        }
        if v > max {
            max = v;
        }
    }
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    write_f16(b, D, d);
    write_f16(b, M, min);
    let mut q = [0u8; QK32];
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = (((v - min) * id + 0.5) as u8).min(31);
    }
    pack_q5(&q, b, QH, QS);
}

/// Dot of one weight block with one Q8_1 activation block:
/// `dw * da * sum(q * a) + m * s` with the sum in integers.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_1_BYTES]) -> f32 {
    let sumi = dot_i8(&quants(w), &a[Q8_1_QS..]);
    read_f16(w, D) * read_f16(a, Q8_1_D) * sumi as f32 + read_f16(w, M) * read_f16(a, Q8_1_S)
}
