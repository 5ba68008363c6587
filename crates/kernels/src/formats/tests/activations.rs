//! Activation quantization (Q8_0, Q8_1, Q8_K, F32) on hand-picked values whose quants are known,
//! including exact halves (llama.cpp's x86 path rounds them to even).

use crate::formats::q8::*;
use crate::formats::test_util::put_f16;
use crate::formats::*;
use gguf::GgmlType;

fn q8_0_input() -> [f32; 32] {
    // amax = 63.5, so d = 0.5 and 127/amax = 2 exactly: x * 2 is exact.
    let mut x = [0.0f32; 32];
    x[0] = 63.5; // 127
    x[1] = 1.25; // 2.5 -> 2 (ties to even)
    x[2] = -0.75; // -1.5 -> -2
    x[3] = 0.25; // 0.5 -> 0
    x[4] = -63.5; // -127
    x[5] = 0.75; // 1.5 -> 2
    x[31] = 3.0; // 6
    x
}

const Q8_0_EXPECTED_Q: [(usize, i8); 7] = [
    (0, 127),
    (1, 2),
    (2, -2),
    (3, 0),
    (4, -127),
    (5, 2),
    (31, 6),
];

#[test]
fn q8_0_activations_round_half_even() {
    let x = q8_0_input();
    let mut out = [0u8; 34];
    quantize_activations(GgmlType::Q8_0, &x, &mut out);
    let mut want = [0u8; 34];
    put_f16(&mut want, 0, 0.5);
    for (j, q) in Q8_0_EXPECTED_Q {
        want[2 + j] = q as u8;
    }
    assert_eq!(out, want);
}

#[test]
fn q8_0_weights_round_half_away() {
    // The weight quantizer is llama.cpp's reference one: x / d rounded half away from zero.
    let x = q8_0_input();
    let mut out = [0u8; 34];
    quantize_row(GgmlType::Q8_0, &x, &mut out).unwrap();
    assert_eq!(out[2 + 1] as i8, 3);
    assert_eq!(out[2 + 2] as i8, -2);
    assert_eq!(out[2 + 3] as i8, 1);
    assert_eq!(out[2 + 5] as i8, 2);
    assert_eq!(out[2] as i8, 127);
}

#[test]
fn q8_1_activations_sum() {
    let x = q8_0_input();
    let mut out = [0u8; 36];
    quantize_activations(GgmlType::Q8_1, &x, &mut out);
    let mut want = [0u8; 36];
    put_f16(&mut want, 0, 0.5);
    // sum(q) = 127 + 2 - 2 + 0 - 127 + 2 + 6 = 8, s = 0.5 * 8 = 4.
    put_f16(&mut want, 2, 4.0);
    for (j, q) in Q8_0_EXPECTED_Q {
        want[4 + j] = q as u8;
    }
    assert_eq!(out, want);
}

#[test]
fn q8_k_negative_max_and_ties() {
    // Largest magnitude is -127 (negative), so iscale = -127/max = 1 and d = +1.
    let mut x = [0.0f32; 256];
    x[3] = -127.0;
    x[4] = 2.5; // 2 (ties to even)
    x[5] = -3.5; // -4
    x[17] = 0.5; // 0
    x[200] = 126.5; // 126
    x[255] = 1.5; // 2
    let mut out = [0u8; 292];
    quantize_activations(GgmlType::Q8_K, &x, &mut out);
    let b: &[u8; 292] = &out;
    assert_eq!(q8_k_d(b), 1.0);
    let mut want_q = [0i32; 256];
    for (j, q) in [(3, -127), (4, 2), (5, -4), (17, 0), (200, 126), (255, 2)] {
        want_q[j] = q;
    }
    for (j, &w) in want_q.iter().enumerate() {
        assert_eq!(q8_k_q(b, j), w, "q[{j}]");
    }
    // bsums: group 0 = elements 0..16 -> -127 + 2 - 4; group 12 (192..208) -> 126; group 15 -> 2.
    let mut want_bsums = [0i32; 16];
    want_bsums[0] = -129;
    want_bsums[12] = 126;
    want_bsums[15] = 2;
    for (g, &w) in want_bsums.iter().enumerate() {
        assert_eq!(q8_k_bsum(b, g), w, "bsum[{g}]");
    }
}

#[test]
fn q8_k_positive_max_gives_negative_d() {
    let mut x = [0.0f32; 256];
    x[0] = 127.0; // max: iscale = -1, d = -1
    x[1] = -127.0; // same magnitude but later: not the max; q = 127
    x[2] = 2.5; // -2.5 -> -2
    let mut out = [0u8; 292];
    quantize_activations(GgmlType::Q8_K, &x, &mut out);
    assert_eq!(q8_k_d(&out), -1.0);
    assert_eq!(q8_k_q(&out, 0), -127);
    assert_eq!(q8_k_q(&out, 1), 127);
    assert_eq!(q8_k_q(&out, 2), -2);
    assert_eq!(q8_k_bsum(&out, 0), -2);
}

#[test]
fn zero_activations() {
    let x = [0.0f32; 256];
    for act in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
        let mut out = vec![0xAAu8; activation_row_bytes(act, 256)];
        quantize_activations(act, &x, &mut out);
        assert!(out.iter().all(|&b| b == 0), "{act}");
    }
}

#[test]
fn f32_activations_are_bytes() {
    let x = [1.0f32, -2.5, 3.25, f32::MIN_POSITIVE];
    let mut out = vec![0u8; activation_row_bytes(GgmlType::F32, 4)];
    quantize_activations(GgmlType::F32, &x, &mut out);
    let want: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(out, want);
}
