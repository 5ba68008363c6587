//! Q2_K: 256 elements in 84 bytes (2.625 bits per weight), 16 sub-blocks of 16 with a 4-bit scale
//! and a 4-bit min each.
//!
//! Layout: `u8 scales[16]` at byte 0 (sub-block `s`: low nibble = scale, high nibble = min),
//! `u8 qs[64]` at byte 16, `f16 d` at byte 80, `f16 dmin` at byte 82.
//! Element `e` (0..256) is `d * (scales[e/16] & 15) * q - dmin * (scales[e/16] >> 4)` with the
//! 2-bit `q = (qs[32*(e/128) + e%32] >> (2*((e%128)/32))) & 3`: each 128-element half uses 32
//! bytes; its four 32-element quarters are the four 2-bit planes (bits 0-1, 2-3, 4-5, 6-7) of those
//! same 32 bytes. Weights are dotted with Q8_K activations.

use super::q8::{dot_i8, q8_k_bsum, q8_k_d, Q8_K_BYTES, Q8_K_QS};
use super::search::{scale_min_search, MinSearch};
use super::{nearest_int, read_f16, write_f16, QK_K};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 84;
/// Offset of the 16 packed (scale | min << 4) bytes.
pub const SCALES: usize = 0;
/// Offset of the 64 bytes of 2-bit quants.
pub const QS: usize = 16;
/// Offset of the f16 super-block scale `d`.
pub const D: usize = 80;
/// Offset of the f16 super-block min scale `dmin`.
pub const DMIN: usize = 82;

/// The 2-bit quant (0..3) of element `e` (0..256).
#[inline]
pub fn quant(b: &[u8; BLOCK_BYTES], e: usize) -> i32 {
    ((b[QS + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) as i32
}

/// All 256 quants (0..3) in element order.
pub fn quants(b: &[u8; BLOCK_BYTES]) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for h in 0..2 {
        for k in 0..4 {
            for l in 0..32 {
                q[128 * h + 32 * k + l] = ((b[QS + 32 * h + l] >> (2 * k)) & 3) as i8;
            }
        }
    }
    q
}

/// Packs 256 quants (0..3) into the 64 `qs` bytes (2-bit planes, see the module doc).
pub(crate) fn pack_2bit(l: &[u8; QK_K], qs: &mut [u8]) {
    for h in 0..2 {
        for j in 0..32 {
            let e = 128 * h + j;
            qs[32 * h + j] = l[e] | (l[e + 32] << 2) | (l[e + 64] << 4) | (l[e + 96] << 6);
        }
    }
}

/// Dequantizes one block.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK_K]) {
    let d = read_f16(b, D);
    let dmin = read_f16(b, DMIN);
    let q = quants(b);
    for (s, (ys, qs)) in y.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
        let sc = b[SCALES + s];
        let dl = d * (sc & 0xF) as f32;
        let ml = dmin * (sc >> 4) as f32;
        for (v, &q) in ys.iter_mut().zip(qs) {
            *v = dl * q as f32 - ml;
        }
    }
}

/// Quantizes one block like `quantize_row_q2_K_ref`: per sub-block a weighted (|x|) scale+min
/// search, then scales and mins quantized to 4 bits against their maxima, then requantization.
pub fn quantize_block(x: &[f32; QK_K], b: &mut [u8; BLOCK_BYTES]) {
    const SEARCH: MinSearch = MinSearch {
        rmin: -0.5,
        rdelta: 0.1,
        nstep: 15,
        mad: true,
    };
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let mut mins = [0.0f32; 16];
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for s in 0..16 {
        let xs = &x[16 * s..16 * s + 16];
        let mut w = [0.0f32; 16];
        for (wi, v) in w.iter_mut().zip(xs) {
            *wi = v.abs();
        }
        (scales[s], mins[s]) = scale_min_search(xs, &w, 3, &mut l[16 * s..16 * s + 16], &SEARCH);
        max_scale = max_scale.max(scales[s]);
        max_min = max_min.max(mins[s]);
    }
    let mut packed = [0u8; 16];
    if max_scale > 0.0 {
        let iscale = 15.0 / max_scale;
        for (p, &scale) in packed.iter_mut().zip(&scales) {
            *p = nearest_int(iscale * scale) as u8;
        }
        write_f16(b, D, max_scale / 15.0);
    } else {
        write_f16(b, D, 0.0);
    }
    if max_min > 0.0 {
        let iscale = 15.0 / max_min;
        for (p, &min) in packed.iter_mut().zip(&mins) {
            *p |= (nearest_int(iscale * min) << 4) as u8;
        }
        write_f16(b, DMIN, max_min / 15.0);
    } else {
        write_f16(b, DMIN, 0.0);
    }
    b[SCALES..SCALES + 16].copy_from_slice(&packed);
    let (d_all, dmin_all) = (read_f16(b, D), read_f16(b, DMIN));
    for (s, &sc) in packed.iter().enumerate() {
        let d = d_all * (sc & 0xF) as f32;
        if d == 0.0 {
            continue;
        }
        let dm = dmin_all * (sc >> 4) as f32;
        for e in 16 * s..16 * s + 16 {
            l[e] = nearest_int((x[e] + dm) / d).clamp(0, 3) as u8;
        }
    }
    pack_2bit(&l, &mut b[QS..QS + 64]);
}

/// Dot of one weight block with one Q8_K activation block:
/// `d8*d * sum_s sc_s * dot(q_s, q8_s) - d8*dmin * sum_s m_s * bsum_s`, sums in integers.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_K_BYTES]) -> f32 {
    let q = quants(w);
    let qa = &a[Q8_K_QS..Q8_K_QS + QK_K];
    let mut isum = 0i32;
    let mut summs = 0i32;
    for s in 0..16 {
        let sc = w[SCALES + s];
        let dot = dot_i8(&q[16 * s..16 * s + 16], &qa[16 * s..16 * s + 16]);
        isum += (sc & 0xF) as i32 * dot;
        summs += (sc >> 4) as i32 * q8_k_bsum(a, s);
    }
    let d8 = q8_k_d(a);
    let dall = d8 * read_f16(w, D);
    let dmin = d8 * read_f16(w, DMIN);
    dall * isum as f32 - dmin * summs as f32
}
