//! Q4_0: 32 elements in 18 bytes (4.5 bits per weight), symmetric.
//!
//! Layout: `f16 d` at byte 0, then `u8 qs[16]` at byte 2. Byte `j` holds element `j` in its low
//! nibble and element `j + 16` in its high nibble (the first half of the block in the low nibbles,
//! the second half in the high ones — *not* interleaved pairs). Element = `d * (nibble - 8)`.
//! Weights are dotted with Q8_0 activations.

use super::q8::{dot_i8, Q8_0_BYTES, Q8_0_QS};
use super::{read_f16, write_f16, QK32};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 18;
/// Offset of the f16 scale `d`.
pub const D: usize = 0;
/// Offset of the 16 nibble-pair bytes.
pub const QS: usize = 2;

/// The two 4-bit quants (0..15) of byte `j` (0..16): `(element j, element j + 16)`.
#[inline]
pub fn nibbles(b: &[u8; BLOCK_BYTES], j: usize) -> (i32, i32) {
    ((b[QS + j] & 0xF) as i32, (b[QS + j] >> 4) as i32)
}

/// Dequantizes one block: `y[j] = d*(lo_j - 8)`, `y[j+16] = d*(hi_j - 8)`.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK32]) {
    let d = read_f16(b, D);
    for j in 0..16 {
        let (lo, hi) = nibbles(b, j);
        y[j] = (lo - 8) as f32 * d;
        y[j + 16] = (hi - 8) as f32 * d;
    }
}

/// Quantizes one block like `quantize_row_q4_0_ref`: `d = max / -8` for the signed element of
/// largest magnitude (so it maps to quant 0), `q = min(15, trunc(x/d + 8.5))`.
pub fn quantize_block(x: &[f32; QK32], b: &mut [u8; BLOCK_BYTES]) {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    write_f16(b, D, d);
    let q = |v: f32| ((v * id + 8.5) as i8).min(15) as u8;
    for j in 0..16 {
        b[QS + j] = q(x[j]) | (q(x[j + 16]) << 4);
    }
}

/// Dot of one weight block with one Q8_0 activation block:
/// `sum((q - 8) * a) * dw * da` with the sum in integers.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_0_BYTES]) -> f32 {
    let q: [i8; QK32] = std::array::from_fn(|i| {
        let (lo, hi) = nibbles(w, i % 16);
        (if i < 16 { lo } else { hi } - 8) as i8
    });
    dot_i8(&q, &a[Q8_0_QS..]) as f32 * read_f16(w, D) * read_f16(a, 0)
}
