//! Every SIMD kernel against its scalar twin in `formats`, on every level this CPU has.

use super::*;
use half::{bf16, f16};

/// Relative error budget of a SIMD dot vs `formats::vec_dot`, relative to the magnitude
/// `sum |w_i * x_i|` (plus the block offsets, see `magnitude`). Both sides compute the same
/// exact integer block sums; they differ only in f32 rounding of the per-block scale products
/// and in summation order, ~1e-7 relative per step over at most a few dozen blocks here.
const DOT_REL_TOL: f64 = 1e-5;

/// Float weights: the SIMD kernels accumulate in f32 (8-16 lanes, then a tree), the reference
/// in f64; the difference is about n * eps * magnitude for n <= 300 here.
const FLOAT_REL_TOL: f64 = 1e-5;

/// Deterministic xorshift so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// Uniform in [-1, 1).
    fn f32(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
    fn byte(&mut self) -> u8 {
        (self.next() >> 32) as u8
    }
}

const WEIGHT_TYPES: [GgmlType; 15] = crate::formats::SUPPORTED;

/// Byte offsets of the f16 scale fields in a block (random bytes there could be NaN/Inf).
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    use GgmlType::*;
    match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => &[0],
        Q3_K => &[108],
        Q4_1 | Q5_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q6_K => &[208],
        _ => &[],
    }
}

/// How a test row is made.
#[derive(Clone, Copy, Debug)]
enum WeightKind {
    /// `formats::quantize_row` of uniform random values (what real files look like).
    Quantized,
    /// Random bytes with random finite f16 scales in [-2, 2] (every code and scale pattern).
    RandomBytes,
    /// Every non-scale byte `fill`, scales `d` (so 0xFF = all-max nibbles / codes).
    Filled { fill: u8, d: f32 },
}

fn weight_row(ty: GgmlType, n: usize, kind: WeightKind, rng: &mut Rng) -> Vec<u8> {
    let bytes = n / ty.block_size() * ty.type_size();
    let mut w = vec![0u8; bytes];
    match (kind, ty) {
        (WeightKind::Quantized, _) | (_, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16) => {
            let scale = if matches!(kind, WeightKind::Filled { .. }) {
                1e3
            } else {
                1.0
            };
            let src: Vec<f32> = (0..n).map(|_| rng.f32() * scale).collect();
            formats::quantize_row(ty, &src, &mut w).unwrap();
        }
        (WeightKind::RandomBytes, _) => {
            w.iter_mut().for_each(|b| *b = rng.byte());
            for blk in w.chunks_exact_mut(ty.type_size()) {
                for &off in f16_fields(ty) {
                    let v = f16::from_f32(rng.f32() * 2.0);
                    blk[off..off + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
        (WeightKind::Filled { fill, d }, _) => {
            w.fill(fill);
            for blk in w.chunks_exact_mut(ty.type_size()) {
                for (k, &off) in f16_fields(ty).iter().enumerate() {
                    // Second field (min / dmin) gets a different negative value.
                    let v = f16::from_f32(if k == 0 { d } else { d * 0.37 });
                    blk[off..off + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    w
}

/// Activations: uniform, or saturating (every quant +-127), or with exact rounding ties.
fn activations(n: usize, variant: usize, rng: &mut Rng) -> Vec<f32> {
    match variant {
        0 => (0..n).map(|_| rng.f32()).collect(),
        1 => (0..n)
            .map(|i| if i % 3 == 0 { -5.0 } else { 5.0 })
            .collect(),
        2 => (0..n)
            .map(|i| {
                if i % 32 == 0 {
                    127.0
                } else {
                    (i % 7) as f32 - 3.5
                }
            })
            .collect(),
        _ => (0..n).map(|_| rng.f32() * 1e-3 + 1e-4).collect(),
    }
}

/// Magnitude for the error budget: sum |w_i x_i| plus, per 32 elements, max|w| * sum|x| (covers
/// the separate scale/offset terms of Q4_1/Q5_1/K-quants, which can cancel in `w_i`).
fn magnitude(ty: GgmlType, w: &[u8], x: &[f32]) -> f64 {
    let mut deq = vec![0f32; x.len()];
    formats::dequantize_row(ty, w, &mut deq).unwrap();
    let direct: f64 = deq.iter().zip(x).map(|(a, b)| (a * b).abs() as f64).sum();
    let blocks: f64 = deq
        .chunks(32)
        .zip(x.chunks(32))
        .map(|(wb, xb)| {
            let m = wb.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
            m * xb.iter().map(|v| v.abs() as f64).sum::<f64>()
        })
        .sum();
    direct + blocks
}

#[test]
fn detection_is_consistent() {
    let levels = available_levels();
    assert_eq!(levels[0], Level::Scalar);
    assert_eq!(*levels.last().unwrap(), detected_level());
    assert!(!crate::cpu_features().is_empty());
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        assert!(detected_level() >= Level::Avx2);
    }
}

#[test]
fn every_type_has_a_simd_kernel_on_x86() {
    for level in available_levels() {
        for ty in WEIGHT_TYPES {
            let k = DotKernel::new(level, ty);
            assert_eq!(k.is_simd(), level > Level::Scalar, "{ty} at {level}");
        }
    }
}

#[test]
fn dot_kernels_match_scalar_reference() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let kinds = [
        WeightKind::Quantized,
        WeightKind::RandomBytes,
        WeightKind::Filled {
            fill: 0xFF,
            d: -1.5,
        },
        WeightKind::Filled {
            fill: 0x80,
            d: 0.75,
        },
        WeightKind::Filled {
            fill: 0x00,
            d: -0.5,
        },
    ];
    for ty in WEIGHT_TYPES {
        let act_ty = formats::activation_type(ty).unwrap();
        let unit = act_ty.block_size().max(ty.block_size());
        let lengths: Vec<usize> = if unit == 1 {
            vec![1, 7, 8, 33, 64, 100, 257]
        } else {
            vec![unit, 2 * unit, 7 * unit, 16 * unit]
        };
        for &n in &lengths {
            for kind in kinds {
                let w = weight_row(ty, n, kind, &mut rng);
                for variant in 0..4 {
                    let x = activations(n, variant, &mut rng);
                    let mut act = vec![0u8; formats::activation_row_bytes(act_ty, n)];
                    formats::quantize_activations(act_ty, &x, &mut act);
                    let want = formats::vec_dot(ty, &w, &act, n) as f64;
                    let tol = if unit == 1 {
                        FLOAT_REL_TOL
                    } else {
                        DOT_REL_TOL
                    } * magnitude(ty, &w, &x)
                        + 1e-30;
                    let act4 = act.repeat(4);
                    for level in available_levels() {
                        // The single-token kernel and the batch kernels (which differ in order
                        // for some types), both the one- and four-token entry points.
                        for k in [
                            DotKernel::new(level, ty),
                            DotKernel::for_batch(level, ty, TILED_MIN_BATCH),
                        ] {
                            let acts = Activations::from_quantized(&k, &act4, n, 4);
                            let rows = [acts.row(0), acts.row(1), acts.row(2), acts.row(3)];
                            let one = k.dot(&w, &rows[0], n);
                            let four = k.dot4(&w, [&rows[0], &rows[1], &rows[2], &rows[3]], n);
                            for got in std::iter::once(one).chain(four) {
                                let got = got as f64;
                                assert!(
                                    (got - want).abs() <= tol || (got.is_nan() && want.is_nan()),
                                    "{ty} n={n} {kind:?} act#{variant} {level} {k:?}: {got} vs \
                                     {want} (tol {tol})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The SIMD quantizers implement the same formulas as the reference (llama.cpp's x86 path:
/// ties to even, `127/amax` multiplier for Q8_0/Q8_1; `-127/max` for Q8_K), so the bytes must
/// be identical, ties included.
#[test]
fn quantizers_match_scalar_reference_bit_exactly() {
    let mut rng = Rng(42);
    for act in [GgmlType::Q8_0, GgmlType::Q8_1, GgmlType::Q8_K] {
        for n in [256usize, 512, 1536] {
            for variant in 0..6 {
                let mut x = activations(n, variant.min(3), &mut rng);
                if variant == 4 {
                    x.iter_mut().for_each(|v| *v = 0.0); // all-zero blocks
                }
                if variant == 5 {
                    // Equal magnitudes of both signs: Q8_K must keep the sign of the first.
                    x.iter_mut().enumerate().for_each(|(i, v)| {
                        *v = if i % 2 == 0 { -2.0 } else { 2.0 } * (1.0 + (i % 5) as f32 / 8.0)
                    });
                    x[1] = -3.0;
                    x[2] = 3.0;
                }
                let bytes = formats::activation_row_bytes(act, n);
                let mut want = vec![0u8; bytes];
                formats::quantize_activations(act, &x, &mut want);
                for level in available_levels() {
                    let mut got = vec![0xAAu8; bytes];
                    QuantKernel::new(level, act).quantize(&x, &mut got);
                    assert!(got == want, "{act} n={n} variant {variant} at {level}");
                }
            }
        }
    }
}

#[test]
fn set_level_refuses_unavailable_and_restores() {
    // Only touches the override transiently with levels that are available, so concurrently
    // running tests (which pass explicit levels) are unaffected in their results.
    assert!(set_level(Some(Level::Scalar)));
    assert_eq!(active_level(), Level::Scalar);
    assert!(set_level(None));
    assert_eq!(active_level(), detected_level());
    if detected_level() < Level::Avx512 {
        assert!(!set_level(Some(Level::Avx512)));
    }
}

#[test]
fn bf16_and_f16_helpers_agree_with_half() {
    // Sanity for the scalar tails of the float kernels.
    let mut rng = Rng(9);
    let n = 19;
    let src: Vec<f32> = (0..n).map(|_| rng.f32() * 100.0).collect();
    let mut w16 = vec![0u8; 2 * n];
    let mut wb16 = vec![0u8; 2 * n];
    formats::quantize_row(GgmlType::F16, &src, &mut w16).unwrap();
    formats::quantize_row(GgmlType::BF16, &src, &mut wb16).unwrap();
    let x = vec![1.0f32; n];
    let act: Vec<u8> = x.iter().flat_map(|v| v.to_le_bytes()).collect();
    let want16: f32 = w16
        .chunks(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
        .sum();
    let wantb: f32 = wb16
        .chunks(2)
        .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
        .sum();
    for level in available_levels() {
        let g16 = DotKernel::new(level, GgmlType::F16).dot(&w16, &ActRow::plain(&act), n);
        let gb = DotKernel::new(level, GgmlType::BF16).dot(&wb16, &ActRow::plain(&act), n);
        assert!((g16 - want16).abs() <= 1e-3, "{level}");
        assert!((gb - wantb).abs() <= 1e-3, "{level}");
    }
}

/// `dot4` runs the same per-token arithmetic as the single-token `dot` (only the weight unpacking
/// is shared), so the results must be bit-identical: for `DotKernel::new` and for the kernels of
/// small batches (`for_batch` with 1, 3 or 5 tokens), which several sequences' decode steps use
/// to get the bits of a step alone. Except Q4_K from 4 tokens on, whose 4-token kernel scales
/// every pair of sub-blocks as llama.cpp's repacked `gemm` does (its `gemv` scales whole blocks),
/// so the two differ in the last bits only.
#[test]
fn dot4_equals_four_dots() {
    let mut rng = Rng(77);
    for ty in WEIGHT_TYPES {
        let act_ty = formats::activation_type(ty).unwrap();
        let unit = act_ty.block_size().max(ty.block_size()).max(32);
        for n in [unit, 3 * unit, 8 * unit] {
            let w = weight_row(ty, n, WeightKind::Quantized, &mut rng);
            let rb = formats::activation_row_bytes(act_ty, n);
            let mut bytes = vec![0u8; 4 * rb];
            for t in 0..4 {
                let x = activations(n, t, &mut rng);
                formats::quantize_activations(act_ty, &x, &mut bytes[t * rb..(t + 1) * rb]);
            }
            for level in available_levels() {
                let single = DotKernel::new(level, ty);
                // (kernel, whether its 4-token order is Q4_K's `gemm`)
                let kernels = [
                    (single, true),
                    (DotKernel::for_batch(level, ty, 1), false),
                    (DotKernel::for_batch(level, ty, 3), false),
                    (DotKernel::for_batch(level, ty, 5), true),
                ];
                for (k, gemm_order) in kernels {
                    let acts = Activations::from_quantized(&k, &bytes, n, 4);
                    let rows = [acts.row(0), acts.row(1), acts.row(2), acts.row(3)];
                    let four = k.dot4(&w, [&rows[0], &rows[1], &rows[2], &rows[3]], n);
                    for t in 0..4 {
                        let one = single.dot(&w, &rows[t], n);
                        if ty == GgmlType::Q4_K && k.has_dot4() && gemm_order {
                            // Block vs sub-block-pair rounding of `acc - acc_min`, which cancel.
                            let tol = 1e-4 * one.abs().max(1.0);
                            assert!(
                                (four[t] - one).abs() <= tol,
                                "{ty} n={n} t={t} {level}: {} vs {one}",
                                four[t]
                            );
                        } else {
                            assert_eq!(
                                four[t].to_bits(),
                                one.to_bits(),
                                "{ty} n={n} t={t} {level} {k:?}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// A tile kernel sums each of its outputs in the same order as the 4-token kernel (which for the
/// 32-element types is the single-token order), so the results must be bit-identical; odd block
/// counts and every activation variant included.
#[test]
fn gemm_equals_dot4() {
    let mut rng = Rng(99);
    for ty in WEIGHT_TYPES {
        let act_ty = formats::activation_type(ty).unwrap();
        let unit = act_ty.block_size().max(ty.block_size()).max(32);
        for n in [unit, 3 * unit, 8 * unit] {
            let w: [Vec<u8>; GEMM_ROWS] =
                std::array::from_fn(|_| weight_row(ty, n, WeightKind::Quantized, &mut rng));
            let rb = formats::activation_row_bytes(act_ty, n);
            // Two tiles, so the second one's interleaved layout is checked too.
            let n_tokens = 2 * GEMM_TOKENS + 3;
            let mut bytes = vec![0u8; n_tokens * rb];
            for t in 0..n_tokens {
                let x = activations(n, t % 4, &mut rng);
                formats::quantize_activations(act_ty, &x, &mut bytes[t * rb..(t + 1) * rb]);
            }
            for level in available_levels() {
                let k = DotKernel::for_batch(level, ty, n_tokens);
                let acts = Activations::from_quantized(&k, &bytes, n, n_tokens);
                let rows = std::array::from_fn(|r| &w[r][..]);
                let mut packed = Vec::new();
                k.pack(rows, n, &mut packed);
                for g in 0..2 {
                    let tile = acts.tile(g);
                    let got = k.gemm(rows, &packed, &tile, n);
                    for (r, wr) in w.iter().enumerate() {
                        for t0 in [0, 4] {
                            let a = &tile.rows;
                            let want = k.dot4(wr, [&a[t0], &a[t0 + 1], &a[t0 + 2], &a[t0 + 3]], n);
                            for (j, want) in want.into_iter().enumerate() {
                                let got = got[t0 + j][r];
                                assert_eq!(
                                    got.to_bits(),
                                    want.to_bits(),
                                    "{ty} n={n} tile {g} row {r} token {} {level}: {got} vs \
                                     {want}",
                                    t0 + j
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The tiles of decode steps (Q4_K and Q6_K in the single-token order, `for_batch` below 4 and
/// [`TILED_MIN_BATCH`] tokens) sum every output as the 4-token kernels of that order
/// (`dot4_q4_k_gemv`, `dot4_q6_k`) and the single-token `dot` do, so all three must agree bit
/// for bit: on every level, quantized rows and random bytes (every code and scale), saturating
/// and random activation bytes, several row lengths, a padded tile, and `packed` going on with
/// another group of rows (the prefetching path).
#[test]
fn decode_tiles_equal_single_token_kernels() {
    let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
    for ty in [GgmlType::Q4_K, GgmlType::Q6_K] {
        for n in [256, 512, 4864] {
            for kind in [
                WeightKind::Quantized,
                WeightKind::RandomBytes,
                WeightKind::Filled {
                    fill: 0xFF,
                    d: -1.5,
                },
            ] {
                let w: [Vec<u8>; GEMM_ROWS] =
                    std::array::from_fn(|_| weight_row(ty, n, kind, &mut rng));
                let rows: [&[u8]; GEMM_ROWS] = std::array::from_fn(|r| &w[r][..]);
                let other: [Vec<u8>; GEMM_ROWS] =
                    std::array::from_fn(|_| weight_row(ty, n, kind, &mut rng));
                let rb = formats::activation_row_bytes(GgmlType::Q8_K, n);
                // A whole tile and a padded one of 5 tokens.
                let n_tokens = GEMM_TOKENS + PADDED_TILE_MIN;
                let mut bytes = vec![0u8; n_tokens * rb];
                for (t, row) in bytes.chunks_exact_mut(rb).enumerate() {
                    if t % 5 == 4 {
                        // Random quants (-128 included) and group sums, finite scales.
                        row.iter_mut().for_each(|b| *b = rng.byte());
                        for blk in row.chunks_exact_mut(Q8_K_A) {
                            blk[..4].copy_from_slice(&(rng.f32() * 4.0).to_le_bytes());
                        }
                    } else {
                        let x = activations(n, t % 4, &mut rng);
                        formats::quantize_activations(GgmlType::Q8_K, &x, row);
                    }
                }
                for level in available_levels()
                    .into_iter()
                    .filter(|&l| l > Level::Scalar)
                {
                    let single = DotKernel::new(level, ty);
                    let k = DotKernel::for_batch(level, ty, 1);
                    assert!(k.has_gemm(), "{ty} at {level}");
                    let acts = Activations::from_quantized(&k, &bytes, n, n_tokens);
                    assert_eq!(acts.tiles(), 2, "the 5 last tokens make a padded tile");
                    let mut packed = Vec::new();
                    k.pack(rows, n, &mut packed);
                    // `pack_matrix`'s layout: this group, then the next one.
                    let mut two = packed.clone();
                    let mut next = Vec::new();
                    k.pack(std::array::from_fn(|r| &other[r][..]), n, &mut next);
                    two.extend_from_slice(&next);
                    for g in 0..acts.tiles() {
                        let tile = acts.tile(g);
                        let got = k.gemm(rows, &packed, &tile, n);
                        let got_two = k.gemm(rows, &two, &tile, n);
                        let a = &tile.rows;
                        for (r, wr) in rows.iter().enumerate() {
                            for t0 in [0, 4] {
                                let four =
                                    k.dot4(wr, [&a[t0], &a[t0 + 1], &a[t0 + 2], &a[t0 + 3]], n);
                                for (j, four) in four.into_iter().enumerate() {
                                    let t = t0 + j;
                                    let one = single.dot(wr, &a[t], n);
                                    let ctx = format!(
                                        "{ty} n={n} {kind:?} {level} tile {g} row {r} token {t}"
                                    );
                                    assert_eq!(four.to_bits(), one.to_bits(), "{ctx}: dot4 vs dot");
                                    assert_eq!(got[t][r].to_bits(), one.to_bits(), "{ctx}: gemm");
                                    assert_eq!(
                                        got_two[t][r].to_bits(),
                                        one.to_bits(),
                                        "{ctx}: gemm with the next group"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
