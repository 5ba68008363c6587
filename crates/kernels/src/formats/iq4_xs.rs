//! IQ4_XS: 256 elements in 136 bytes (4.25 bits per weight): 8 sub-blocks of 32, each with a
//! 6-bit signed scale, 4-bit indices into the IQ4_NL codebook.
//!
//! Layout: `f16 d` at byte 0, `u16 scales_h` at byte 2 (little-endian), `u8 scales_l[4]` at byte
//! 4, `u8 qs[128]` at byte 8. Sub-block `s` (0..8) has scale
//! `ls = ((scales_l[s/2] >> 4*(s%2)) & 15) | (((scales_h >> 2s) & 3) << 4)` and value scale
//! `d * (ls - 32)`; its 32 elements use bytes `qs[16s..16s+16]` in Q4_0 order (byte `j`: element
//! `32s + j` low nibble, element `32s + j + 16` high nibble), each `d*(ls-32) * KVALUES_IQ4NL[q]`.
//! Weights are dotted with Q8_K activations.

use super::iq4_nl::KVALUES_IQ4NL;
use super::q8::{dot_i8, q8_k_d, Q8_K_BYTES, Q8_K_QS};
use super::search::{nearest_index, nonlinear_search};
use super::{nearest_int, read_f16, write_f16, QK_K};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 136;
/// Offset of the f16 super-block scale `d`.
pub const D: usize = 0;
/// Offset of the little-endian u16 holding the high 2 bits of the 8 sub-block scales.
pub const SCALES_H: usize = 2;
/// Offset of the 4 bytes holding the low 4 bits of the 8 sub-block scales.
pub const SCALES_L: usize = 4;
/// Offset of the 128 nibble bytes.
pub const QS: usize = 8;

/// The signed scale (`ls - 32`, -32..31) of sub-block `s` (0..8).
#[inline]
pub fn scale(b: &[u8; BLOCK_BYTES], s: usize) -> i32 {
    let h = u16::from_le_bytes([b[SCALES_H], b[SCALES_H + 1]]);
    let low = (b[SCALES_L + s / 2] >> (4 * (s % 2))) & 0xF;
    let high = ((h >> (2 * s)) & 3) as u8;
    (low | (high << 4)) as i32 - 32
}

/// The codebook index (0..15) of element `e` (0..256).
#[inline]
pub fn index(b: &[u8; BLOCK_BYTES], e: usize) -> usize {
    let (s, j) = (e / 32, e % 32);
    let byte = b[QS + 16 * s + j % 16];
    (if j < 16 { byte & 0xF } else { byte >> 4 }) as usize
}

/// All 256 codebook values (`KVALUES_IQ4NL[index]`) in element order.
pub fn values(b: &[u8; BLOCK_BYTES]) -> [i8; QK_K] {
    let mut v = [0i8; QK_K];
    for s in 0..8 {
        for j in 0..16 {
            let byte = b[QS + 16 * s + j];
            v[32 * s + j] = KVALUES_IQ4NL[(byte & 0xF) as usize];
            v[32 * s + 16 + j] = KVALUES_IQ4NL[(byte >> 4) as usize];
        }
    }
    v
}

/// Dequantizes one block.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK_K]) {
    let d = read_f16(b, D);
    let v = values(b);
    for (s, (ys, vs)) in y.chunks_exact_mut(32).zip(v.chunks_exact(32)).enumerate() {
        let dl = d * scale(b, s) as f32;
        for (y, &v) in ys.iter_mut().zip(vs) {
            *y = dl * v as f32;
        }
    }
}

/// Quantizes one block like llama.cpp's `quantize_iq4_xs` without an importance matrix: per
/// sub-block the weighted codebook scale search, then 6-bit sub-block scales against
/// `d = -max_scale/32`, then every element mapped to its nearest codebook entry.
pub fn quantize_block(x: &[f32; QK_K], b: &mut [u8; BLOCK_BYTES]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let (mut amax_scale, mut max_scale) = (0.0f32, 0.0f32);
    for s in 0..8 {
        scales[s] = nonlinear_search(
            &x[32 * s..32 * s + 32],
            &KVALUES_IQ4NL,
            &mut l[32 * s..32 * s + 32],
        );
        if scales[s].abs() > amax_scale {
            amax_scale = scales[s].abs();
            max_scale = scales[s];
        }
    }
    let d = -max_scale / 32.0;
    write_f16(b, D, d);
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut scales_h = 0u16;
    let mut scales_l = [0u8; 4];
    for s in 0..8 {
        let ls = nearest_int(id * scales[s]).clamp(-32, 31);
        let dl = d * ls as f32;
        let idl = if dl != 0.0 { 1.0 / dl } else { 0.0 };
        for e in 32 * s..32 * s + 32 {
            l[e] = nearest_index(&KVALUES_IQ4NL, idl * x[e]) as u8;
        }
        let ls = (ls + 32) as u8;
        scales_l[s / 2] |= (ls & 0xF) << (4 * (s % 2));
        scales_h |= ((ls >> 4) as u16) << (2 * s);
    }
    b[SCALES_H..SCALES_H + 2].copy_from_slice(&scales_h.to_le_bytes());
    b[SCALES_L..SCALES_L + 4].copy_from_slice(&scales_l);
    for s in 0..8 {
        for j in 0..16 {
            b[QS + 16 * s + j] = l[32 * s + j] | (l[32 * s + 16 + j] << 4);
        }
    }
}

/// Dot of one weight block with one Q8_K activation block:
/// `d * d8 * sum_s (ls_s - 32) * dot(K[q_s], q8_s)`, sums in integers.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_K_BYTES]) -> f32 {
    let v = values(w);
    let qa = &a[Q8_K_QS..Q8_K_QS + QK_K];
    let mut isum = 0i32;
    for s in 0..8 {
        isum += scale(w, s) * dot_i8(&v[32 * s..32 * s + 32], &qa[32 * s..32 * s + 32]);
    }
    read_f16(w, D) * q8_k_d(a) * isum as f32
}
