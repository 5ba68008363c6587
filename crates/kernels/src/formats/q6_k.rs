//! Q6_K: 256 elements in 210 bytes (6.5625 bits per weight), 16 sub-blocks of 16 with signed
//! 8-bit scales, symmetric.
//!
//! Layout: `u8 ql[128]` at byte 0 (low 4 bits), `u8 qh[64]` at byte 128 (high 2 bits),
//! `i8 scales[16]` at byte 192, `f16 d` at byte 208.
//! Element `e` (0..256): half `h = e/128`, quarter `k = (e%128)/32`, `l = e%32`;
//! low 4 bits = `ql[64h + l + 32*(k%2)]`, low nibble for `k < 2`, high nibble for `k >= 2`;
//! high 2 bits = `(qh[32h + l] >> 2k) & 3`; value `d * scales[e/16] * (q - 32)`, `q` in 0..63.
//! Weights are dotted with Q8_K activations.

use super::q8::{dot_i8, q8_k_d, Q8_K_BYTES, Q8_K_QS};
use super::search::{symmetric_search, GROUP_MAX_EPS};
use super::{nearest_int, read_f16, write_f16, QK_K};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 210;
/// Offset of the 128 low-nibble bytes.
pub const QL: usize = 0;
/// Offset of the 64 high-bit bytes (four 2-bit fields each).
pub const QH: usize = 128;
/// Offset of the 16 signed 8-bit sub-block scales.
pub const SCALES: usize = 192;
/// Offset of the f16 super-block scale `d`.
pub const D: usize = 208;

/// The signed 6-bit quant (-32..31) of element `e` (0..256).
#[inline]
pub fn quant(b: &[u8; BLOCK_BYTES], e: usize) -> i32 {
    let (h, k, l) = (e / 128, (e % 128) / 32, e % 32);
    let lb = b[QL + 64 * h + l + 32 * (k % 2)];
    let low = if k < 2 { lb & 0xF } else { lb >> 4 };
    let high = (b[QH + 32 * h + l] >> (2 * k)) & 3;
    (low | (high << 4)) as i32 - 32
}

/// The signed scale of sub-block `s` (0..16).
#[inline]
pub fn scale(b: &[u8; BLOCK_BYTES], s: usize) -> i32 {
    b[SCALES + s] as i8 as i32
}

/// All 256 signed quants (-32..31) in element order.
pub fn quants(b: &[u8; BLOCK_BYTES]) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for h in 0..2 {
        for l in 0..32 {
            let (ql0, ql1, qh) = (
                b[QL + 64 * h + l],
                b[QL + 64 * h + 32 + l],
                b[QH + 32 * h + l],
            );
            q[128 * h + l] = ((ql0 & 0xF) | ((qh & 3) << 4)) as i8 - 32;
            q[128 * h + 32 + l] = ((ql1 & 0xF) | (((qh >> 2) & 3) << 4)) as i8 - 32;
            q[128 * h + 64 + l] = ((ql0 >> 4) | (((qh >> 4) & 3) << 4)) as i8 - 32;
            q[128 * h + 96 + l] = ((ql1 >> 4) | (((qh >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    q
}

/// Dequantizes one block.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK_K]) {
    let d = read_f16(b, D);
    let q = quants(b);
    for (s, (ys, qs)) in y.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
        let dl = d * scale(b, s) as f32;
        for (v, &q) in ys.iter_mut().zip(qs) {
            *v = dl * q as f32;
        }
    }
}

/// Quantizes one block like `quantize_row_q6_K_ref`: per sub-block a symmetric search to
/// -32..31, scales quantized to 8 bits against the one of largest magnitude, requantization.
pub fn quantize_block(x: &[f32; QK_K], b: &mut [u8; BLOCK_BYTES]) {
    let mut l = [0u8; QK_K];
    let mut scales = [0.0f32; 16];
    let (mut max_abs, mut max_scale) = (0.0f32, 0.0f32);
    for s in 0..16 {
        scales[s] = symmetric_search(&x[16 * s..16 * s + 16], 32, &mut l[16 * s..16 * s + 16]);
        if scales[s].abs() > max_abs {
            max_abs = scales[s].abs();
            max_scale = scales[s];
        }
    }
    if max_abs < GROUP_MAX_EPS {
        b.fill(0);
        return;
    }
    let iscale = -128.0 / max_scale;
    write_f16(b, D, 1.0 / iscale);
    for s in 0..16 {
        b[SCALES + s] = nearest_int(iscale * scales[s]).min(127) as i8 as u8;
    }
    let d_all = read_f16(b, D);
    for s in 0..16 {
        let d = d_all * scale(b, s) as f32;
        if d == 0.0 {
            continue;
        }
        for e in 16 * s..16 * s + 16 {
            l[e] = (nearest_int(x[e] / d).clamp(-32, 31) + 32) as u8;
        }
    }
    b[QL..QL + 128].fill(0);
    b[QH..QH + 64].fill(0);
    for (e, &q) in l.iter().enumerate() {
        let (h, k, j) = (e / 128, (e % 128) / 32, e % 32);
        let lo = q & 0xF;
        b[QL + 64 * h + j + 32 * (k % 2)] |= if k < 2 { lo } else { lo << 4 };
        b[QH + 32 * h + j] |= (q >> 4) << (2 * k);
    }
}

/// Dot of one weight block with one Q8_K activation block:
/// `d * d8 * sum_s sc_s * dot(q_s, q8_s)`, sums in integers.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_K_BYTES]) -> f32 {
    let q = quants(w);
    let qa = &a[Q8_K_QS..Q8_K_QS + QK_K];
    let mut isum = 0i32;
    for s in 0..16 {
        isum += scale(w, s) * dot_i8(&q[16 * s..16 * s + 16], &qa[16 * s..16 * s + 16]);
    }
    read_f16(w, D) * q8_k_d(a) * isum as f32
}
