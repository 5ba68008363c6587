//! Q3_K: 256 elements in 110 bytes (3.4375 bits per weight), 16 sub-blocks of 16 with signed
//! 6-bit scales, symmetric.
//!
//! Layout: `u8 hmask[32]` at byte 0, `u8 qs[64]` at byte 32, `u8 scales[12]` at byte 96, `f16 d`
//! at byte 108.
//!
//! Element `e` (0..256) is `d * sc[e/16] * (q2 - (hbit ? 0 : 4))` where
//! - `q2` = the low 2 bits, in the same place as Q2_K: `(qs[32*(e/128) + e%32] >> (2*((e%128)/32))) & 3`;
//! - `hbit` = bit `e/32` of `hmask[e%32]` (the "high" bit; *set* means no -4 offset);
//! - `sc[s]` (see [`scales`]) = `((s < 8 ? scales[s] & 15 : scales[s-8] >> 4)
//!   | ((scales[8 + s%4] >> (2*(s/4))) & 3) << 4) - 32`.
//!
//! Weights are dotted with Q8_K activations.

use super::q2_k::pack_2bit;
use super::q8::{dot_i8, q8_k_d, Q8_K_BYTES, Q8_K_QS};
use super::search::symmetric_refine;
use super::{nearest_int, read_f16, write_f16, QK_K};

/// Bytes per block.
pub const BLOCK_BYTES: usize = 110;
/// Offset of the 32 high-bit mask bytes.
pub const HMASK: usize = 0;
/// Offset of the 64 bytes of low 2-bit quants.
pub const QS: usize = 32;
/// Offset of the 12 bytes of packed 6-bit scales.
pub const SCALES: usize = 96;
/// Offset of the f16 super-block scale `d`.
pub const D: usize = 108;

/// The 16 signed sub-block scales (-32..31) unpacked from the 12 scale bytes.
pub fn scales(packed: &[u8; 12]) -> [i32; 16] {
    let mut sc = [0i32; 16];
    for (s, v) in sc.iter_mut().enumerate() {
        let low = if s < 8 {
            packed[s] & 0xF
        } else {
            packed[s - 8] >> 4
        };
        let high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
        *v = (low | (high << 4)) as i32 - 32;
    }
    sc
}

fn scale_bytes(b: &[u8; BLOCK_BYTES]) -> &[u8; 12] {
    b[SCALES..SCALES + 12].try_into().unwrap()
}

/// The signed 3-bit quant (-4..3) of element `e` (0..256).
#[inline]
pub fn quant(b: &[u8; BLOCK_BYTES], e: usize) -> i32 {
    let low = ((b[QS + 32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3) as i32;
    let high = (b[HMASK + e % 32] >> (e / 32)) & 1;
    low - if high != 0 { 0 } else { 4 }
}

/// All 256 signed quants (-4..3) in element order.
pub fn quants(b: &[u8; BLOCK_BYTES]) -> [i8; QK_K] {
    let mut q = [0i8; QK_K];
    for h in 0..2 {
        for k in 0..4 {
            for l in 0..32 {
                let low = ((b[QS + 32 * h + l] >> (2 * k)) & 3) as i8;
                let high = (b[HMASK + l] >> (4 * h + k)) & 1;
                q[128 * h + 32 * k + l] = low - if high != 0 { 0 } else { 4 };
            }
        }
    }
    q
}

/// Dequantizes one block.
pub fn dequantize_block(b: &[u8; BLOCK_BYTES], y: &mut [f32; QK_K]) {
    let d = read_f16(b, D);
    let sc = scales(scale_bytes(b));
    let q = quants(b);
    for (s, (ys, qs)) in y.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
        let dl = d * sc[s] as f32;
        for (v, &q) in ys.iter_mut().zip(qs) {
            *v = dl * q as f32;
        }
    }
}

/// Quantizes one block like `quantize_row_q3_K_ref`: per sub-block a refined symmetric search,
/// scales quantized to 6 bits against the one of largest magnitude, then requantization.
pub fn quantize_block(x: &[f32; QK_K], b: &mut [u8; BLOCK_BYTES]) {
    let mut l = [0u8; QK_K];
    let mut sub_scales = [0.0f32; 16];
    let (mut amax, mut max_scale) = (0.0f32, 0.0f32);
    for s in 0..16 {
        sub_scales[s] = symmetric_refine(&x[16 * s..16 * s + 16], 4, &mut l[16 * s..16 * s + 16]);
        if sub_scales[s].abs() > amax {
            amax = sub_scales[s].abs();
            max_scale = sub_scales[s];
        }
    }
    let mut packed = [0u8; 12];
    if max_scale != 0.0 {
        let iscale = -32.0 / max_scale;
        for (s, &scale) in sub_scales.iter().enumerate() {
            let q = (nearest_int(iscale * scale) as i8).clamp(-32, 31) as i32 + 32;
            if s < 8 {
                packed[s] = (q & 0xF) as u8;
            } else {
                packed[s - 8] |= ((q & 0xF) << 4) as u8;
            }
            packed[8 + s % 4] |= ((q >> 4) << (2 * (s / 4))) as u8;
        }
        write_f16(b, D, 1.0 / iscale);
    } else {
        write_f16(b, D, 0.0);
    }
    b[SCALES..SCALES + 12].copy_from_slice(&packed);
    let d_all = read_f16(b, D);
    let sc = scales(&packed);
    for (s, &scale) in sc.iter().enumerate() {
        let d = d_all * scale as f32;
        if d == 0.0 {
            continue;
        }
        for e in 16 * s..16 * s + 16 {
            l[e] = (nearest_int(x[e] / d).clamp(-4, 3) + 4) as u8;
        }
    }
    // High bit of element e goes to bit e/32 of hmask[e%32]; the low 2 bits stay.
    let hmask = &mut b[HMASK..HMASK + 32];
    hmask.fill(0);
    for (e, q) in l.iter_mut().enumerate() {
        if *q > 3 {
            hmask[e % 32] |= 1 << (e / 32);
            *q -= 4;
        }
    }
    pack_2bit(&l, &mut b[QS..QS + 64]);
}

/// Dot of one weight block with one Q8_K activation block:
/// `d * d8 * sum_s sc_s * dot(q_s, q8_s)`, sums in integers.
pub fn vec_dot_block(w: &[u8; BLOCK_BYTES], a: &[u8; Q8_K_BYTES]) -> f32 {
    let sc = scales(scale_bytes(w));
    let q = quants(w);
    let qa = &a[Q8_K_QS..Q8_K_QS + QK_K];
    let mut isum = 0i32;
    for (s, &scale) in sc.iter().enumerate() {
        isum += scale * dot_i8(&q[16 * s..16 * s + 16], &qa[16 * s..16 * s + 16]);
    }
    read_f16(w, D) * q8_k_d(a) * isum as f32
}
