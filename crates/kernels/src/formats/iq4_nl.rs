//! IQ4_NL: 32 elements in 18 bytes (4.5 bits per weight), 4-bit indices into a fixed non-linear
//! codebook.
//!
//! Layout: `f16 d` at byte 0, `u8 qs[16]` at byte 2 with nibbles in Q4_0 order (byte `j`: element
//! `j` in the low nibble, element `j + 16` in the high one). Element = `d * KVALUES_IQ4NL[nibble]`.
//! Weights are dotted with Q8_0 activations.

use super::q8::{dot_i8, Q8_0_BYTES, Q8_0_QS};
use super::search::{nearest_index, nonlinear_search};
use super::{read_f16, write_f16, QK32};

/// The IQ4_NL / IQ4_XS codebook (`kvalues_iq4nl` in `ggml-common.h`), sorted ascending.
pub const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// Bytes per block.
pub const BLOCK_BYTES: usize = 18;
/// Offset of the f16 scale `d`.
pub const D: usize = 0;
/// Offset of the 16 nibble-pair bytes.
pub const QS: usize = 2;

/// Dequantizes one block: `y[j] = d*K[lo_j]`, `y[j+16] = d*K[hi_j]`.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK32]) {
    let d = read_f16(b, D);
    for j in 0..16 {
        y[j] = d * KVALUES_IQ4NL[(b[QS + j] & 0xF) as usize] as f32;
        y[j + 16] = d * KVALUES_IQ4NL[(b[QS + j] >> 4) as usize] as f32;
    }
}

/// Quantizes one block like llama.cpp's `quantize_iq4_nl` without an importance matrix: the
/// weighted (x^2) scale search over the codebook, then every element mapped to its nearest entry.
pub fn quantize_block(x: &[f32; QK32], b: &mut [u8; BLOCK_BYTES]) {
    let mut l = [0u8; QK32];
    let d = nonlinear_search(x, &KVALUES_IQ4NL, &mut l);
    write_f16(b, D, d);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    for (li, &v) in l.iter_mut().zip(x) {
        *li = nearest_index(&KVALUES_IQ4NL, id * v) as u8;
    }
    for j in 0..16 {
        b[QS + j] = l[j] | (l[j + 16] << 4);
    }
}

/// Dot of one weight block with one Q8_0 activation block:
/// `dw * da * sum(K[q] * a)` with the sum in integers.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_0_BYTES]) -> f32 {
    let v: [i8; QK32] = std::array::from_fn(|i| {
        let byte = w[QS + i % 16];
        KVALUES_IQ4NL[(if i < 16 { byte & 0xF } else { byte >> 4 }) as usize]
    });
    read_f16(w, D) * read_f16(a, 0) * dot_i8(&v, &a[Q8_0_QS..]) as f32
}
