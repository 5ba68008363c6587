//! Q4_K: 256 elements in 144 bytes (4.5 bits per weight), 8 sub-blocks of 32 with a 6-bit scale
//! and a 6-bit min each.
//!
//! Layout: `f16 d` at byte 0, `f16 dmin` at byte 2, `u8 scales[12]` at byte 4 (unpack with
//! [`scale_min_k4`]), `u8 qs[128]` at byte 16.
//! Element `e` (0..256) belongs to sub-block `s = e/32` and is `d * sc_s * q - dmin * m_s`, where
//! `q` is a nibble of `qs[32*(e/64) + e%32]`: the **low** nibble for even `s`, the **high** nibble
//! for odd `s` (each 64-element chunk is 32 bytes: first 32 elements in the low nibbles, next 32
//! in the high nibbles). Weights are dotted with Q8_K activations.

pub use super::scale_min_k4;

use super::q8::{dot_i8, q8_k_bsum, q8_k_d, Q8_K_BYTES, Q8_K_QS};
use super::search::{scale_min_search, MinSearch};
use super::{nearest_int, read_f16, write_f16, QK_K};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 144;
/// Offset of the f16 super-block scale `d`.
pub const D: usize = 0;
/// Offset of the f16 super-block min scale `dmin`.
pub const DMIN: usize = 2;
/// Offset of the 12 bytes of packed 6-bit scales and mins.
pub const SCALES: usize = 4;
/// Offset of the 128 nibble bytes.
pub const QS: usize = 16;

pub(crate) fn scale_bytes(b: &[u8]) -> &[u8; 12] {
    b[SCALES..SCALES + 12].try_into().unwrap()
}

/// The 4-bit quant (0..15) of element `e` (0..256) from `qs` bytes at `qs_off`.
#[inline]
pub(crate) fn nibble(b: &[u8], qs_off: usize, e: usize) -> i32 {
    let byte = b[qs_off + 32 * (e / 64) + e % 32];
    (if (e / 32).is_multiple_of(2) {
        byte & 0xF
    } else {
        byte >> 4
    }) as i32
}

/// The 4-bit quant (0..15) of element `e` (0..256).
#[inline]
pub fn quant(b: &[u8; BLOCK_BYTES], e: usize) -> i32 {
    nibble(b, QS, e)
}

/// The 256 4-bit quants (0..15) in element order from the 128 `qs` bytes at `qs_off`.
pub(crate) fn nibble_quants(b: &[u8], qs_off: usize) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for c in 0..4 {
        for l in 0..32 {
            let byte = b[qs_off + 32 * c + l];
            q[64 * c + l] = (byte & 0xF) as i8;
            q[64 * c + 32 + l] = (byte >> 4) as i8;
        }
    }
    q
}

/// All 256 quants (0..15) in element order.
pub fn quants(b: &[u8; BLOCK_BYTES]) -> [i8; QK_K] {
    nibble_quants(b, QS)
}

/// Applies the sub-block scales and mins of a Q4_K/Q5_K block to its quants.
pub(crate) fn dequantize_scaled(b: &[u8], q: &[i8; QK_K], y: &mut [f32; QK_K]) {
    let d = read_f16(b, D);
    let dmin = read_f16(b, DMIN);
    for (s, (ys, qs)) in y.chunks_exact_mut(32).zip(q.chunks_exact(32)).enumerate() {
        let (sc, m) = scale_min_k4(s, scale_bytes(b));
        let (d1, m1) = (d * sc as f32, dmin * m as f32);
        for (v, &q) in ys.iter_mut().zip(qs) {
            *v = d1 * q as f32 - m1;
        }
    }
}

/// The Q4_K/Q5_K dot product given the block's quants.
pub(crate) fn vec_dot_scaled(w: &[u8], q: &[i8; QK_K], a: &[u8; Q8_K_BYTES]) -> f32 {
    let qa = &a[Q8_K_QS..Q8_K_QS + QK_K];
    let mut isum = 0i32;
    let mut summs = 0i32;
    for s in 0..8 {
        let (sc, m) = scale_min_k4(s, scale_bytes(w));
        isum += sc as i32 * dot_i8(&q[32 * s..32 * s + 32], &qa[32 * s..32 * s + 32]);
        summs += m as i32 * (q8_k_bsum(a, 2 * s) + q8_k_bsum(a, 2 * s + 1));
    }
    let d8 = q8_k_d(a);
    let d = read_f16(w, D) * d8;
    let dmin = read_f16(w, DMIN) * d8;
    d * isum as f32 - dmin * summs as f32
}

/// Dequantizes one block.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK_K]) {
    dequantize_scaled(b, &quants(b), y);
}

/// Packs 8 6-bit scales and 8 6-bit mins into the 12-byte layout [`scale_min_k4`] reads.
pub fn pack_scales_mins(ls: &[u8; 8], lm: &[u8; 8]) -> [u8; 12] {
    let mut p = [0u8; 12];
    for j in 0..8 {
        if j < 4 {
            p[j] = ls[j];
            p[j + 4] = lm[j];
        } else {
            p[j + 4] = (ls[j] & 0xF) | ((lm[j] & 0xF) << 4);
            p[j - 4] |= (ls[j] >> 4) << 6;
            p[j] |= (lm[j] >> 4) << 6;
        }
    }
    p
}

/// The scale+min search of `quantize_row_q4_K_ref` / `quantize_row_q5_K_ref`, shared by both:
/// per sub-block weights `sqrt(mean(x^2)) + |x|`, a [`scale_min_search`] to `0..=nmax`, then
/// 6-bit scales and mins against their maxima and requantization. Writes `d`, `dmin`, the scale
/// bytes at [`SCALES`] (same offsets in Q5_K) and returns the quants.
pub(crate) fn quantize_scales(
    x: &[f32; QK_K],
    b: &mut [u8],
    nmax: i32,
    p: &MinSearch,
) -> [u8; QK_K] {
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for s in 0..8 {
        let xs = &x[32 * s..32 * s + 32];
        let sum_x2: f32 = xs.iter().fold(0.0, |acc, v| acc + v * v);
        let av_x = (sum_x2 / 32.0).sqrt();
        let mut w = [0.0f32; 32];
        for (wi, v) in w.iter_mut().zip(xs) {
            *wi = av_x + v.abs();
        }
        (scales[s], mins[s]) = scale_min_search(xs, &w, nmax, &mut l[32 * s..32 * s + 32], p);
        if scales[s] > max_scale {
            max_scale = scales[s];
        }
        if mins[s] > max_min {
            max_min = mins[s];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    let mut ls = [0u8; 8];
    let mut lm = [0u8; 8];
    for s in 0..8 {
        ls[s] = (nearest_int(inv_scale * scales[s]) as u8).min(63);
        lm[s] = (nearest_int(inv_min * mins[s]) as u8).min(63);
    }
    let packed = pack_scales_mins(&ls, &lm);
    b[SCALES..SCALES + 12].copy_from_slice(&packed);
    write_f16(b, D, max_scale / 63.0);
    write_f16(b, DMIN, max_min / 63.0);
    let (d_all, dmin_all) = (read_f16(b, D), read_f16(b, DMIN));
    for s in 0..8 {
        let (sc, m) = scale_min_k4(s, &packed);
        let d = d_all * sc as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * m as f32;
        for e in 32 * s..32 * s + 32 {
            l[e] = nearest_int((x[e] + dm) / d).clamp(0, nmax) as u8;
        }
    }
    l
}

/// Quantizes one block like `quantize_row_q4_K_ref`.
pub fn quantize_block(x: &[f32; QK_K], b: &mut [u8; BLOCK_BYTES]) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -1.0,
        rdelta: 0.1,
        nstep: 20,
        mad: false,
    };
    let l = quantize_scales(x, b, 15, &SEARCH);
    for c in 0..4 {
        for j in 0..32 {
            b[QS + 32 * c + j] = l[64 * c + j] | (l[64 * c + 32 + j] << 4);
        }
    }
}

/// Dot of one weight block with one Q8_K activation block:
/// `d*d8 * sum_s sc_s * dot(q_s, q8_s) - dmin*d8 * sum_s m_s * (bsum_2s + bsum_2s+1)`, sums in
/// integers.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_K_BYTES]) -> f32 {
    vec_dot_scaled(w, &quants(w), a)
}
