//! Q5_K: 256 elements in 176 bytes (5.5 bits per weight): Q4_K plus a 5th bit per element.
//!
//! Layout: `f16 d` at byte 0, `f16 dmin` at byte 2, `u8 scales[12]` at byte 4 (as Q4_K, unpack
//! with [`scale_min_k4`]), `u8 qh[32]` at byte 16, `u8 qs[128]` at byte 48.
//! Element `e` (0..256), sub-block `s = e/32`: low 4 bits as Q4_K (`qs[32*(e/64) + e%32]`, low
//! nibble for even `s`, high for odd), 5th bit = bit `s` of `qh[e%32]`; value
//! `d * sc_s * q - dmin * m_s` with `q` in 0..31. Weights are dotted with Q8_K activations.

pub use super::scale_min_k4;

use super::q4_k::{dequantize_scaled, nibble, nibble_quants, quantize_scales, vec_dot_scaled};
use super::q8::Q8_K_BYTES;
use super::search::MinSearch;
use super::QK_K;

/// Bytes per block.
pub const BLOCK_BYTES: usize = 176;
/// Offset of the f16 super-block scale `d`.
pub const D: usize = 0;
/// Offset of the f16 super-block min scale `dmin`.
pub const DMIN: usize = 2;
/// Offset of the 12 bytes of packed 6-bit scales and mins.
pub const SCALES: usize = 4;
/// Offset of the 32 high-bit bytes.
pub const QH: usize = 16;
/// Offset of the 128 nibble bytes.
pub const QS: usize = 48;

/// The 5-bit quant (0..31) of element `e` (0..256).
#[inline]
pub fn quant(b: &[u8; BLOCK_BYTES], e: usize) -> i32 {
    nibble(b, QS, e) | ((((b[QH + e % 32] >> (e / 32)) & 1) as i32) << 4)
}

/// All 256 quants (0..31) in element order.
pub fn quants(b: &[u8; BLOCK_BYTES]) -> [i8; QK_K] {
    let mut q = nibble_quants(b, QS);
    for g in 0..8 {
        for l in 0..32 {
            q[32 * g + l] |= (((b[QH + l] >> g) & 1) << 4) as i8;
        }
    }
    q
}

/// Dequantizes one block.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK_K]) {
    dequantize_scaled(b, &quants(b), y);
}

/// Quantizes one block like `quantize_row_q5_K_ref`.
pub fn quantize_block(x: &[f32; QK_K], b: &mut [u8; BLOCK_BYTES]) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        mad: false,
    };
    let l = quantize_scales(x, b, 31, &SEARCH);
    b[QH..QH + 32].fill(0);
    for e in 0..QK_K {
        let q = l[e];
        b[QH + e % 32] |= (q >> 4) << (e / 32);
        let byte = QS + 32 * (e / 64) + e % 32;
        if (e / 32).is_multiple_of(2) {
            b[byte] = q & 0xF;
        } else {
            b[byte] |= (q & 0xF) << 4;
        }
    }
}

/// Dot of one weight block with one Q8_K activation block (as Q4_K with 5-bit quants).
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_K_BYTES]) -> f32 {
    vec_dot_scaled(w, &quants(w), a)
}
