//! Q4_1: 32 elements in 20 bytes (5 bits per weight), asymmetric (scale and offset).
//!
//! Layout: `f16 d` at byte 0, `f16 m` at byte 2, `u8 qs[16]` at byte 4, nibbles in Q4_0 order
//! (byte `j`: element `j` low nibble, element `j + 16` high nibble). Element = `d * q + m` with
//! `q` in 0..15. Weights are dotted with Q8_1 activations, whose `s = d8 * sum(q8)` folds in `m`.

use super::q8::{dot_i8, Q8_1_BYTES, Q8_1_D, Q8_1_QS, Q8_1_S};
use super::{read_f16, write_f16, QK32};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 20;
/// Offset of the f16 scale `d`.
pub const D: usize = 0;
/// Offset of the f16 offset `m` (the block minimum).
pub const M: usize = 2;
/// Offset of the 16 nibble-pair bytes.
pub const QS: usize = 4;

/// Dequantizes one block: `y[j] = d*lo_j + m`, `y[j+16] = d*hi_j + m`.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK32]) {
    let d = read_f16(b, D);
    let m = read_f16(b, M);
    for j in 0..16 {
        y[j] = (b[QS + j] & 0xF) as f32 * d + m;
        y[j + 16] = (b[QS + j] >> 4) as f32 * d + m;
    }
}

/// Quantizes one block like `quantize_row_q4_1_ref`: `d = (max - min)/15`, `m = min`,
/// `q = min(15, trunc((x - min)/d + 0.5))`.
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
    let d = (max - min) / 15.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    write_f16(b, D, d);
    write_f16(b, M, min);
    let q = |v: f32| (((v - min) * id + 0.5) as i8).min(15) as u8;
    for j in 0..16 {
        b[QS + j] = q(x[j]) | (q(x[j + 16]) << 4);
    }
}

/// Dot of one weight block with one Q8_1 activation block:
/// `dw * da * sum(q * a) + m * s` with the sum in integers.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_1_BYTES]) -> f32 {
    let q: [i8; QK32] = std::array::from_fn(|i| {
        let byte = w[QS + i % 16];
        (if i < 16 { byte & 0xF } else { byte >> 4 }) as i8
    });
    let sumi = dot_i8(&q, &a[Q8_1_QS..]);
    read_f16(w, D) * read_f16(a, Q8_1_D) * sumi as f32 + read_f16(w, M) * read_f16(a, Q8_1_S)
}
