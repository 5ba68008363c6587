//! The row-level API: supported types, activation types, sizes and errors.

use crate::formats::test_util::ALL_TYPES;
use crate::formats::*;
use crate::KernelError;
use gguf::GgmlType;

#[test]
fn supported_types() {
    for ty in ALL_TYPES {
        assert!(is_supported(ty), "{ty}");
    }
    for ty in [
        GgmlType::Q8_1,
        GgmlType::Q8_K,
        GgmlType::IQ2_XXS,
        GgmlType::IQ1_S,
        GgmlType::I8,
        GgmlType::F64,
        GgmlType::TQ1_0,
        GgmlType::MXFP4,
    ] {
        assert!(!is_supported(ty), "{ty}");
        assert!(matches!(
            dequantize_row(ty, &[], &mut []),
            Err(KernelError::UnsupportedType(t)) if t == ty
        ));
        assert!(matches!(
            activation_type(ty),
            Err(KernelError::UnsupportedType(_))
        ));
    }
}

#[test]
fn activation_types_match_llama_cpp() {
    use GgmlType::*;
    let want = [
        (F32, F32),
        (F16, F32),
        (BF16, F32),
        (Q4_0, Q8_0),
        (Q4_1, Q8_1),
        (Q5_0, Q8_0),
        (Q5_1, Q8_1),
        (Q8_0, Q8_0),
        (Q2_K, Q8_K),
        (Q3_K, Q8_K),
        (Q4_K, Q8_K),
        (Q5_K, Q8_K),
        (Q6_K, Q8_K),
        (IQ4_NL, Q8_0),
        (IQ4_XS, Q8_K),
    ];
    assert_eq!(want.len(), ALL_TYPES.len());
    for (w, a) in want {
        assert_eq!(activation_type(w).unwrap(), a, "{w}");
    }
}

#[test]
fn activation_row_sizes() {
    assert_eq!(activation_row_bytes(GgmlType::F32, 256), 1024);
    assert_eq!(activation_row_bytes(GgmlType::Q8_0, 256), 8 * 34);
    assert_eq!(activation_row_bytes(GgmlType::Q8_1, 256), 8 * 36);
    assert_eq!(activation_row_bytes(GgmlType::Q8_K, 512), 2 * 292);
}

#[test]
fn block_constants_match_gguf() {
    let sizes = [
        (GgmlType::Q4_0, q4_0::BLOCK_BYTES, QK32),
        (GgmlType::Q4_1, q4_1::BLOCK_BYTES, QK32),
        (GgmlType::Q5_0, q5_0::BLOCK_BYTES, QK32),
        (GgmlType::Q5_1, q5_1::BLOCK_BYTES, QK32),
        (GgmlType::Q8_0, q8_0::BLOCK_BYTES, QK32),
        (GgmlType::Q8_0, q8::Q8_0_BYTES, QK32),
        (GgmlType::Q8_1, q8::Q8_1_BYTES, QK32),
        (GgmlType::Q8_K, q8::Q8_K_BYTES, QK_K),
        (GgmlType::Q2_K, q2_k::BLOCK_BYTES, QK_K),
        (GgmlType::Q3_K, q3_k::BLOCK_BYTES, QK_K),
        (GgmlType::Q4_K, q4_k::BLOCK_BYTES, QK_K),
        (GgmlType::Q5_K, q5_k::BLOCK_BYTES, QK_K),
        (GgmlType::Q6_K, q6_k::BLOCK_BYTES, QK_K),
        (GgmlType::IQ4_NL, iq4_nl::BLOCK_BYTES, QK32),
        (GgmlType::IQ4_XS, iq4_xs::BLOCK_BYTES, QK_K),
    ];
    for (ty, bytes, block) in sizes {
        assert_eq!(ty.type_size(), bytes, "{ty}");
        assert_eq!(ty.block_size(), block, "{ty}");
    }
}

#[test]
fn row_errors() {
    let mut dst = [0.0f32; 33];
    assert!(matches!(
        dequantize_row(GgmlType::Q4_0, &[0u8; 36], &mut dst),
        Err(KernelError::RaggedRow {
            cols: 33,
            block: 32,
            ..
        })
    ));
    let mut dst = [0.0f32; 64];
    assert!(matches!(
        dequantize_row(GgmlType::Q4_0, &[0u8; 35], &mut dst),
        Err(KernelError::SizeMismatch {
            expected: 36,
            got: 35,
            ..
        })
    ));
    assert!(matches!(
        quantize_row(GgmlType::Q4_K, &[0.0; 256], &mut [0u8; 145]),
        Err(KernelError::SizeMismatch {
            expected: 144,
            got: 145,
            ..
        })
    ));
    assert!(matches!(
        quantize_row(GgmlType::Q6_K, &[0.0; 100], &mut [0u8; 210]),
        Err(KernelError::RaggedRow { cols: 100, .. })
    ));
    // Empty rows are fine.
    dequantize_row(GgmlType::Q4_K, &[], &mut []).unwrap();
}

#[test]
#[should_panic]
fn vec_dot_rejects_wrong_activation_length() {
    let w = [0u8; 18];
    let act = [0u8; 36];
    vec_dot(GgmlType::Q4_0, &w, &act, 32);
}

#[test]
#[should_panic]
fn quantize_activations_rejects_weight_types() {
    let mut out = [0u8; 18];
    quantize_activations(GgmlType::Q4_0, &[0.0; 32], &mut out);
}

/// The whole-block unpackers (used by dequantize and vec_dot) agree with the per-element
/// accessors that spell out the layout, on random blocks.
#[test]
fn unpackers_match_element_accessors() {
    use crate::formats::test_util::Rng;
    let mut rng = Rng::new(3);
    fn random<const N: usize>(rng: &mut Rng) -> [u8; N] {
        std::array::from_fn(|_| rng.byte())
    }
    for _ in 0..50 {
        let b = random::<22>(&mut rng);
        let q = q5_0::quants(&b);
        (0..32).for_each(|e| assert_eq!(q[e] as i32, q5_0::quant(&b, e)));
        let b = random::<24>(&mut rng);
        let q = q5_1::quants(&b);
        (0..32).for_each(|e| assert_eq!(q[e] as i32, q5_1::quant(&b, e)));
        let b = random::<84>(&mut rng);
        let q = q2_k::quants(&b);
        (0..256).for_each(|e| assert_eq!(q[e] as i32, q2_k::quant(&b, e)));
        let b = random::<110>(&mut rng);
        let q = q3_k::quants(&b);
        (0..256).for_each(|e| assert_eq!(q[e] as i32, q3_k::quant(&b, e)));
        let b = random::<144>(&mut rng);
        let q = q4_k::quants(&b);
        (0..256).for_each(|e| assert_eq!(q[e] as i32, q4_k::quant(&b, e)));
        let b = random::<176>(&mut rng);
        let q = q5_k::quants(&b);
        (0..256).for_each(|e| assert_eq!(q[e] as i32, q5_k::quant(&b, e)));
        let b = random::<210>(&mut rng);
        let q = q6_k::quants(&b);
        (0..256).for_each(|e| assert_eq!(q[e] as i32, q6_k::quant(&b, e)));
        let b = random::<136>(&mut rng);
        let v = iq4_xs::values(&b);
        (0..256).for_each(|e| assert_eq!(v[e], KVALUES_IQ4NL[iq4_xs::index(&b, e)]));
    }
}
