//! Hand-built blocks: every field set by hand, expected values written out from the documented
//! formula in other terms (explicit element lists rather than the loops the code uses).

#![allow(clippy::needless_range_loop)] // explicit indices mirror the layout descriptions

use crate::formats::test_util::{dequantize_vec, put_f16};
use crate::formats::*;
use gguf::GgmlType;

fn dequant(ty: GgmlType, b: &[u8]) -> Vec<f32> {
    dequantize_vec(ty, b)
}

fn assert_values(got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "element {i}: got {g}, want {w}");
    }
}

/// Q4-style nibble bytes used by several tests: byte j = j | (15 - j) << 4, so element j has
/// quant j and element 16 + j has quant 15 - j. Interleaved pairs would read element 1 as 15.
fn ramp_nibbles() -> [u8; 16] {
    std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4))
}

#[test]
fn f32_f16_bf16_literal_bytes() {
    assert_values(
        &dequant(GgmlType::F32, &[0, 0, 0x80, 0x3F, 0, 0, 0x20, 0xC1]),
        &[1.0, -10.0],
    );
    // f16: 0x3C00 = 1.0, 0xC500 = -5.0, 0x0001 = smallest subnormal 2^-24, 0x7BFF = 65504.
    assert_values(
        &dequant(
            GgmlType::F16,
            &[0x00, 0x3C, 0x00, 0xC5, 0x01, 0x00, 0xFF, 0x7B],
        ),
        &[1.0, -5.0, 2f32.powi(-24), 65504.0],
    );
    // bf16: the top half of an f32. 0x3F80 = 1.0, 0xC120 = -10.0, 0x4049 = 3.140625.
    assert_values(
        &dequant(GgmlType::BF16, &[0x80, 0x3F, 0x20, 0xC1, 0x49, 0x40]),
        &[1.0, -10.0, 3.140625],
    );
}

#[test]
fn q4_0_halves_not_pairs() {
    let mut b = [0u8; 18];
    put_f16(&mut b, 0, 0.5);
    b[2..].copy_from_slice(&ramp_nibbles());
    #[rustfmt::skip]
    let want = [
        -4.0, -3.5, -3.0, -2.5, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5,
        3.5, 3.0, 2.5, 2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -1.5, -2.0, -2.5, -3.0, -3.5, -4.0,
    ];
    assert_values(&dequant(GgmlType::Q4_0, &b), &want);
}

#[test]
fn q4_1_scale_and_offset() {
    let mut b = [0u8; 20];
    put_f16(&mut b, 0, 0.25);
    put_f16(&mut b, 2, -1.0);
    b[4..].copy_from_slice(&ramp_nibbles());
    #[rustfmt::skip]
    let want = [
        -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75,
        2.75, 2.5, 2.25, 2.0, 1.75, 1.5, 1.25, 1.0, 0.75, 0.5, 0.25, 0.0, -0.25, -0.5, -0.75, -1.0,
    ];
    assert_values(&dequant(GgmlType::Q4_1, &b), &want);
}

/// Elements whose 5th bit is set in the Q5 tests, and the qh bytes that says so: bit i of the
/// little-endian u32 is element i.
const Q5_HIGH: [usize; 10] = [0, 1, 2, 3, 9, 16, 17, 24, 30, 31];
const Q5_QH: [u8; 4] = [0b0000_1111, 0b0000_0010, 0b0000_0011, 0b1100_0001];

fn q5_expected(offset: f32, d: f32, m: f32) -> Vec<f32> {
    (0..32)
        .map(|i| {
            let nib = if i < 16 { i } else { 15 - (i - 16) } as f32;
            let high = if Q5_HIGH.contains(&i) { 16.0 } else { 0.0 };
            d * (nib + high - offset) + m
        })
        .collect()
}

#[test]
fn q5_0_high_bits() {
    let mut b = [0u8; 22];
    put_f16(&mut b, 0, 2.0);
    b[2..6].copy_from_slice(&Q5_QH);
    b[6..].copy_from_slice(&ramp_nibbles());
    assert_values(&dequant(GgmlType::Q5_0, &b), &q5_expected(16.0, 2.0, 0.0));
}

#[test]
fn q5_1_high_bits() {
    let mut b = [0u8; 24];
    put_f16(&mut b, 0, 0.5);
    put_f16(&mut b, 2, 3.0);
    b[4..8].copy_from_slice(&Q5_QH);
    b[8..].copy_from_slice(&ramp_nibbles());
    assert_values(&dequant(GgmlType::Q5_1, &b), &q5_expected(0.0, 0.5, 3.0));
}

#[test]
fn q8_0_signed_bytes() {
    let mut b = [0u8; 34];
    put_f16(&mut b, 0, 0.125);
    for j in 0..32 {
        b[2 + j] = (j * 37 + 11) as u8;
    }
    b[2] = 0x80; // -128
    b[3] = 0x7F; // 127
    b[4] = 0xFF; // -1
    b[5] = 0x00;
    let got = dequant(GgmlType::Q8_0, &b);
    assert_eq!(&got[..4], &[-16.0, 15.875, -0.125, 0.0]);
    for j in 4..32 {
        assert_eq!(got[j], (b[2 + j] as i8) as f32 * 0.125);
    }
}

#[test]
fn iq4_nl_codebook() {
    let mut b = [0u8; 18];
    put_f16(&mut b, 0, 2.0);
    b[2..].copy_from_slice(&ramp_nibbles());
    let k = [
        -127.0, -104.0, -83.0, -65.0, -49.0, -35.0, -22.0, -10.0, 1.0, 13.0, 25.0, 38.0, 53.0,
        69.0, 89.0, 113.0f32,
    ];
    let mut want = vec![0.0; 32];
    for j in 0..16 {
        want[j] = 2.0 * k[j];
        want[16 + j] = 2.0 * k[15 - j];
    }
    assert_values(&dequant(GgmlType::IQ4_NL, &b), &want);
    assert_eq!(KVALUES_IQ4NL.map(|v| v as f32), k);
}

/// Expected K-quant values: every element has quant `base` except the listed ones.
fn sparse(base: i32, set: &[(usize, i32)]) -> [i32; 256] {
    let mut q = [base; 256];
    for &(e, v) in set {
        q[e] = v;
    }
    q
}

#[test]
fn q2_k_planes_and_scales() {
    let mut b = [0u8; 84];
    // scales[s] = sc | m << 4 with sc = s % 15 + 1 and m = 15 - s.
    for s in 0..16 {
        b[s] = ((s % 15 + 1) | ((15 - s) << 4)) as u8;
    }
    // qs: byte 0 holds elements 0, 32, 64, 96 in bit pairs 0-1, 2-3, 4-5, 6-7.
    b[16] = 0b11_10_01_00;
    b[16 + 17] = 0b00_00_00_11; // element 17 = 3
    b[16 + 32 + 5] = 0b01_00_00_00; // second half, plane 3, byte 5: element 128 + 96 + 5 = 229
    b[16 + 63] = 0b10_00_00_00; // element 128 + 96 + 31 = 255
    b[16 + 32] = 0b00_00_11_00; // element 128 + 32 = 160
    put_f16(&mut b, 80, 0.5);
    put_f16(&mut b, 82, 0.25);
    let q = sparse(
        0,
        &[
            (32, 1),
            (64, 2),
            (96, 3),
            (17, 3),
            (229, 1),
            (255, 2),
            (160, 3),
        ],
    );
    let want: Vec<f32> = (0..256)
        .map(|e| {
            let s = e / 16;
            0.5 * (s % 15 + 1) as f32 * q[e] as f32 - 0.25 * (15 - s) as f32
        })
        .collect();
    assert_values(&dequant(GgmlType::Q2_K, &b), &want);
}

#[test]
fn q3_k_scale_unpacking_literal() {
    // Bytes 0..8 = 0x21 (low nibbles 1, high nibbles 2); bytes 8..12 = 0b11_10_01_00.
    let mut p = [0x21u8; 12];
    p[8..].fill(0b11_10_01_00);
    let sc = q3_k::scales(&p);
    // s < 8: low 4 bits = 1; s >= 8: low 4 bits = 2. High 2 bits: bits 2*(s/4) of byte 8 + s%4,
    // i.e. 0 for s in 0..4, 1 for 4..8, 2 for 8..12, 3 for 12..16.
    let want = [
        1 - 32,
        1 - 32,
        1 - 32,
        1 - 32,
        17 - 32,
        17 - 32,
        17 - 32,
        17 - 32,
        34 - 32,
        34 - 32,
        34 - 32,
        34 - 32,
        50 - 32,
        50 - 32,
        50 - 32,
        50 - 32,
    ];
    assert_eq!(sc, want);
}

/// Packs 16 6-bit Q3_K scales (0..63, before the -32) the way the format doc describes.
fn pack_q3_scales(ls: &[u8; 16]) -> [u8; 12] {
    let mut p = [0u8; 12];
    for (s, &v) in ls.iter().enumerate() {
        if s < 8 {
            p[s] |= v & 15;
        } else {
            p[s - 8] |= (v & 15) << 4;
        }
        p[8 + s % 4] |= (v >> 4) << (2 * (s / 4));
    }
    p
}

#[test]
fn q3_k_hmask_and_scales() {
    let ls: [u8; 16] = [0, 1, 17, 31, 32, 33, 47, 63, 5, 10, 20, 40, 50, 60, 62, 16];
    let mut b = [0u8; 110];
    b[..32].fill(0xFF); // every high bit set: no -4 offset
    b[32] = 0b11_10_01_00; // elements 0, 32, 64, 96 have low bits 0, 1, 2, 3
    b[32 + 17] = 0b00_00_00_11; // element 17: low bits 3
    b[32 + 32 + 5] = 0b01_00_00_00; // element 229: low bits 1
    b[32 + 63] = 0b10_00_00_00; // element 255: low bits 2
    b[32 + 32 + 2] = 0b00_00_00_01; // element 130: low bits 1
    b[0] &= !(1 << 1); // element 32: hmask byte 0, bit 1 clear -> -4
    b[5] &= !(1 << 7); // element 229: hmask byte 5, bit 7 clear -> -4
    b[2] &= !(1 << 4); // element 130: hmask byte 2, bit 4 clear -> -4
    b[7] &= !(1 << 0); // element 7: hmask byte 7, bit 0 clear -> -4
    b[96..108].copy_from_slice(&pack_q3_scales(&ls));
    put_f16(&mut b, 108, 0.5);
    let q = sparse(
        0,
        &[
            (32, 1 - 4),
            (64, 2),
            (96, 3),
            (17, 3),
            (229, 1 - 4),
            (255, 2),
            (130, 1 - 4),
            (7, -4),
        ],
    );
    let want: Vec<f32> = (0..256)
        .map(|e| 0.5 * (ls[e / 16] as f32 - 32.0) * q[e] as f32)
        .collect();
    assert_values(&dequant(GgmlType::Q3_K, &b), &want);
}

/// Packed Q4_K/Q5_K scale bytes and the (scale, min) pairs they hold, worked out by hand.
const K4_SCALES: [u8; 12] = [
    0xC1, 0x42, 0x83, 0x04, 0x45, 0xC6, 0x07, 0x88, 0x9A, 0xBC, 0xDE, 0xF0,
];
const K4_PAIRS: [(u8, u8); 8] = [
    (1, 5),
    (2, 6),
    (3, 7),
    (4, 8),
    (0x3A, 0x19),
    (0x1C, 0x3B),
    (0x2E, 0x0D),
    (0x00, 0x2F),
];

#[test]
fn scale_min_k4_literal() {
    for (j, &pair) in K4_PAIRS.iter().enumerate() {
        assert_eq!(scale_min_k4(j, &K4_SCALES), pair, "sub-block {j}");
    }
    let ls: [u8; 8] = std::array::from_fn(|j| K4_PAIRS[j].0);
    let lm: [u8; 8] = std::array::from_fn(|j| K4_PAIRS[j].1);
    // Bits that no (scale, min) uses are zero in the packing, so compare only what is read back.
    let packed = q4_k::pack_scales_mins(&ls, &lm);
    for j in 0..8 {
        assert_eq!(scale_min_k4(j, &packed), K4_PAIRS[j]);
    }
}

fn k4_expected(q: &[i32; 256], d: f32, dmin: f32) -> Vec<f32> {
    (0..256)
        .map(|e| {
            let (sc, m) = K4_PAIRS[e / 32];
            d * sc as f32 * q[e] as f32 - dmin * m as f32
        })
        .collect()
}

#[test]
fn q4_k_nibble_order() {
    let mut b = [0u8; 144];
    put_f16(&mut b, 0, 0.5);
    put_f16(&mut b, 2, 0.25);
    b[4..16].copy_from_slice(&K4_SCALES);
    b[16] = 0x3A; // chunk 0 byte 0: element 0 = 0xA (low), element 32 = 3 (high)
    b[16 + 32 + 7] = 0xF1; // chunk 1 byte 7: element 71 = 1, element 103 = 15
    b[16 + 96 + 31] = 0x5E; // chunk 3 byte 31: element 223 = 14, element 255 = 5
    let q = sparse(
        0,
        &[(0, 10), (32, 3), (71, 1), (103, 15), (223, 14), (255, 5)],
    );
    assert_values(&dequant(GgmlType::Q4_K, &b), &k4_expected(&q, 0.5, 0.25));
}

#[test]
fn q5_k_high_bits() {
    let mut b = [0u8; 176];
    put_f16(&mut b, 0, 0.5);
    put_f16(&mut b, 2, 0.25);
    b[4..16].copy_from_slice(&K4_SCALES);
    // qh at 16: bit s of byte l is the 5th bit of element 32*s + l.
    b[16] |= 1 << 1; // element 32
    b[16 + 7] |= 1 << 3; // element 103
    b[16 + 31] |= (1 << 6) | (1 << 7); // elements 223 and 255
    b[16 + 10] |= 1 << 0; // element 10
    b[16 + 20] |= 1 << 5; // element 180
                          // qs at 48, same nibble order as Q4_K.
    b[48] = 0x3A;
    b[48 + 32 + 7] = 0xF1;
    b[48 + 96 + 31] = 0x5E;
    let q = sparse(
        0,
        &[
            (0, 10),
            (32, 3 + 16),
            (71, 1),
            (103, 15 + 16),
            (223, 14 + 16),
            (255, 5 + 16),
            (10, 16),
            (180, 16),
        ],
    );
    assert_values(&dequant(GgmlType::Q5_K, &b), &k4_expected(&q, 0.5, 0.25));
}

#[test]
fn q6_k_layout() {
    let mut b = [0u8; 210];
    let sc: [i8; 16] = std::array::from_fn(|s| (s as i8 - 8) * 3);
    for s in 0..16 {
        b[192 + s] = sc[s] as u8;
    }
    put_f16(&mut b, 208, 0.5);
    // First half: ql[0] low nibble -> element 0, high nibble -> element 64;
    // qh[0] bit pairs 0-1, 2-3, 4-5, 6-7 -> elements 0, 32, 64, 96.
    b[0] = 0x21;
    b[128] = 0b11_10_01_00;
    // Second half, l = 5: ql[64 + 32 + 5] low -> element 128+32+5 = 165, high -> 128+96+5 = 229;
    // qh[32 + 5] bits 2-3 -> element 165, bits 6-7 -> element 229.
    b[64 + 32 + 5] = 0x9F;
    b[128 + 32 + 5] = 0b01_00_11_00;
    // Second half, l = 17: ql[64 + 17] high -> element 128 + 64 + 17 = 209.
    b[64 + 17] = 0x70;
    let q = sparse(
        -32,
        &[
            (0, 1 - 32),
            (32, 16 - 32),
            (64, 2 + 32 - 32),
            (96, 48 - 32),
            (165, 63 - 32),
            (229, 9 + 16 - 32),
            (209, 7 - 32),
        ],
    );
    let want: Vec<f32> = (0..256)
        .map(|e| 0.5 * sc[e / 16] as f32 * q[e] as f32)
        .collect();
    assert_values(&dequant(GgmlType::Q6_K, &b), &want);
}

#[test]
fn iq4_xs_scales_and_order() {
    let mut b = [0u8; 136];
    put_f16(&mut b, 0, 0.25);
    // Sub-block 6-bit scales 0, 63, 32, 33, 31, 48, 16, 40, packed by hand:
    // low nibbles pairwise into scales_l, high 2 bits into the u16 scales_h (0x9DAC).
    b[2..4].copy_from_slice(&[0xAC, 0x9D]);
    b[4..8].copy_from_slice(&[0xF0, 0x10, 0x0F, 0x80]);
    let ls_minus_32 = [-32, 31, 0, 1, -1, 16, -16, 8];
    // qs at 8, 16 bytes per sub-block, Q4_0 order within it. All zero = codebook entry 0 (-127).
    b[8] = 0x8F; // element 0 = K[15], element 16 = K[8]
    b[8 + 16 * 5 + 3] = 0x2C; // element 163 = K[12], element 179 = K[2]
    b[8 + 127] = 0x71; // element 239 = K[1], element 255 = K[7]
    let idx = sparse(
        0,
        &[(0, 15), (16, 8), (163, 12), (179, 2), (239, 1), (255, 7)],
    );
    let want: Vec<f32> = (0..256)
        .map(|e| 0.25 * ls_minus_32[e / 32] as f32 * KVALUES_IQ4NL[idx[e] as usize] as f32)
        .collect();
    assert_values(&dequant(GgmlType::IQ4_XS, &b), &want);
    for (s, &want) in ls_minus_32.iter().enumerate() {
        assert_eq!(iq4_xs::scale(&b, s), want);
    }
}
