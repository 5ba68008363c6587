//! Q5_0: 32 elements in 22 bytes (5.5 bits per weight), symmetric.
//!
//! Layout: `f16 d` at byte 0, `u8 qh[4]` at byte 2 (read as one little-endian u32), `u8 qs[16]`
//! at byte 6. Low 4 bits in Q4_0 order (byte `j`: element `j` low nibble, element `j + 16` high
//! nibble); the 5th bit of element `i` (0..32) is bit `i` of `qh`. Element = `d * (q - 16)`, `q` in
//! 0..31. Weights are dotted with Q8_0 activations.

use super::q8::{dot_i8, Q8_0_BYTES, Q8_0_QS};
use super::{read_f16, write_f16, QK32};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 22;
/// Offset of the f16 scale `d`.
pub const D: usize = 0;
/// Offset of the 32 high bits (little-endian u32, bit `i` = element `i`).
pub const QH: usize = 2;
/// Offset of the 16 nibble-pair bytes.
pub const QS: usize = 6;

/// The 5-bit quant (0..31) of element `i` (0..32) of a Q5_0/Q5_1 style block whose `qh` u32 is at
/// `qh_off` and nibbles at `qs_off`.
#[inline]
pub(crate) fn q5(b: &[u8], qh_off: usize, qs_off: usize, i: usize) -> i32 {
    let qh = u32::from_le_bytes([b[qh_off], b[qh_off + 1], b[qh_off + 2], b[qh_off + 3]]);
    let nib = if i < 16 {
        b[qs_off + i] & 0xF
    } else {
        b[qs_off + i - 16] >> 4
    };
    (nib as i32) | ((((qh >> i) & 1) as i32) << 4)
}

/// The 5-bit quant (0..31, before the -16) of element `i` (0..32).
#[inline]
pub fn quant(b: &[u8; BLOCK_BYTES], i: usize) -> i32 {
    q5(b, QH, QS, i)
}

/// All 32 5-bit quants (0..31) of a Q5_0/Q5_1 style block, in element order.
#[inline]
pub(crate) fn q5_all(b: &[u8], qh_off: usize, qs_off: usize) -> [i8; QK32] {
    let qh = u32::from_le_bytes([b[qh_off], b[qh_off + 1], b[qh_off + 2], b[qh_off + 3]]);
    let mut q = [0i8; QK32];
    for j in 0..16 {
        let byte = b[qs_off + j];
        q[j] = ((byte & 0xF) | ((((qh >> j) & 1) as u8) << 4)) as i8;
        q[j + 16] = ((byte >> 4) | ((((qh >> (j + 16)) & 1) as u8) << 4)) as i8;
    }
    q
}

/// All 32 quants (0..31, before the -16) in element order.
pub fn quants(b: &[u8; BLOCK_BYTES]) -> [i8; QK32] {
    q5_all(b, QH, QS)
}

/// Packs 32 5-bit quants into `qh` (u32 at `qh_off`) and nibbles (at `qs_off`).
pub(crate) fn pack_q5(q: &[u8; QK32], b: &mut [u8], qh_off: usize, qs_off: usize) {
    let mut qh = 0u32;
    for j in 0..16 {
        b[qs_off + j] = (q[j] & 0xF) | ((q[j + 16] & 0xF) << 4);
        qh |= (((q[j] >> 4) & 1) as u32) << j;
        qh |= (((q[j + 16] >> 4) & 1) as u32) << (j + 16);
    }
    b[qh_off..qh_off + 4].copy_from_slice(&qh.to_le_bytes());
}

/// Dequantizes one block: `y[i] = d * (q5(i) - 16)`.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK32]) {
    let d = read_f16(b, D);
    for (v, &q) in y.iter_mut().zip(&quants(b)) {
        *v = (q as i32 - 16) as f32 * d;
    }
}

/// Quantizes one block like `quantize_row_q5_0_ref`: `d = max / -16` for the signed element of
/// largest magnitude, `q = min(31, trunc(x/d + 16.5))`.
pub fn quantize_block(x: &[f32; QK32], b: &mut [u8; BLOCK_BYTES]) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -16.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    write_f16(b, D, d);
    let mut q = [0u8; QK32];
    for (qi, &v) in q.iter_mut().zip(x) {
        *qi = ((v * id + 16.5) as i8).min(31) as u8;
    }
    pack_q5(&q, b, QH, QS);
}

/// Dot of one weight block with one Q8_0 activation block:
/// `sum((q - 16) * a) * dw * da` with the sum in integers.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_0_BYTES]) -> f32 {
    let q = quants(w).map(|q| q - 16);
    dot_i8(&q, &a[Q8_0_QS..]) as f32 * read_f16(w, D) * read_f16(a, 0)
}
