//! AVX2 + FMA + F16C kernels (x86-64 since Haswell / Zen 1).
//!
//! Integer dot products use the classic `maddubs` (u8 x i8 -> i16 pairs) + `madd` (i16 pairs ->
//! i32) pair; signed x signed products go through the sign trick (`|x|` as the unsigned operand,
//! `y` with `x`'s sign as the signed one). Every saturating step is bounded below 2^15 for the
//! ranges involved (activations are in -127..=127; see each kernel).
//!
//! Every kernel is a safe `#[target_feature]` function: it checks the slice lengths itself (so the
//! unaligned pointer loads inside stay in bounds) and may only be *called* once the CPU features
//! are known to be present, which [`super`]'s dispatch guarantees.

use super::layout::*;
use super::ActRow;
use std::arch::x86_64::*;

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

/// 32 unaligned bytes at `p`.
///
/// # Safety
/// `p..p + 32` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 32 readable bytes; loadu has no alignment requirement.
    unsafe { _mm256_loadu_si256(p.cast()) }
}

/// 16 unaligned bytes at `p`.
///
/// # Safety
/// `p..p + 16` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn load16(p: *const u8) -> __m128i {
    // SAFETY: the caller guarantees 16 readable bytes; loadu has no alignment requirement.
    unsafe { _mm_loadu_si128(p.cast()) }
}

/// The little-endian f16 at `p` as f32 in all 8 lanes. (Broadcasting the 16 bits first keeps
/// LLVM from inserting them into a stale register, which made a loop-carried dependency.)
///
/// # Safety
/// `p..p + 2` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16_bcast(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 2 readable bytes.
    let h = unsafe { p.cast::<u16>().read_unaligned() };
    _mm256_cvtph_ps(_mm_set1_epi16(u16::from_le(h) as i16))
}

/// The two consecutive little-endian f16 at `p` as f32 lanes 0 and 1 (lanes 2, 3 are 0).
///
/// # Safety
/// `p..p + 4` must be readable.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn f16x2_ptr(p: *const u8) -> __m128 {
    // SAFETY: the caller guarantees 4 readable bytes.
    let v = unsafe { p.cast::<i32>().read_unaligned() };
    _mm_cvtph_ps(_mm_cvtsi32_si128(v))
}

/// The little-endian f32 at `p`.
///
/// # Safety
/// `p..p + 4` must be readable.
#[inline]
pub(super) unsafe fn f32_ptr(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 4 readable bytes.
    f32::from_bits(u32::from_le(unsafe { p.cast::<u32>().read_unaligned() }))
}

/// The little-endian u32 at `p`.
///
/// # Safety
/// `p..p + 4` must be readable.
#[inline]
pub(super) unsafe fn u32_ptr(p: *const u8) -> u32 {
    // SAFETY: the caller guarantees 4 readable bytes.
    u32::from_le(unsafe { p.cast::<u32>().read_unaligned() })
}

/// The little-endian f16 at `b[off]` as f32 (bounds-checked; for scalar tails).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn f16_at(b: &[u8], off: usize) -> f32 {
    let h = u16::from_le_bytes([b[off], b[off + 1]]);
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h as i32)))
}

/// The little-endian f32 at `b[off]` (bounds-checked; for scalar tails).
#[inline]
pub(super) fn f32_at(b: &[u8], off: usize) -> f32 {
    f32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_ps(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_movehdup_ps(s));
    _mm_cvtss_f32(s)
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// Expands the 16 nibble-pair bytes of a 32-element block into 32 codes in element order:
/// low nibbles are elements 0..16, high nibbles 16..32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn nibbles32(b: __m128i) -> __m256i {
    let v = _mm256_set_m128i(_mm_srli_epi16::<4>(b), b);
    _mm256_and_si256(v, _mm256_set1_epi8(0x0F))
}

/// Bit `j` of `bits` -> byte `j` = 0xFF if set, 0 otherwise.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn bytes_from_bits(bits: u32) -> __m256i {
    let v = _mm256_set1_epi32(bits as i32);
    #[rustfmt::skip]
    let pick = _mm256_setr_epi8(
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3,
    );
    let v = _mm256_shuffle_epi8(v, pick);
    let mask = _mm256_set1_epi64x(0x8040_2010_0804_0201u64 as i64);
    _mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask)
}

/// Sum of `x[j] * y[j]` over 32 signed bytes into 8 i32 lanes (pairs of adjacent products).
/// `y` must avoid -128 (activations are in -127..=127); `x` may be anything.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    let ax = _mm256_sign_epi8(x, x);
    let sy = _mm256_sign_epi8(y, x);
    // |x| <= 128, |y| <= 127: each i16 pair sum <= 2 * 128 * 127 < 2^15.
    let p = _mm256_maddubs_epi16(ax, sy);
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// Sum of `u[j] * y[j]` (u unsigned, y signed) into 8 i32 lanes; needs `2 * max(u) * 128 < 2^15`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn dot_u8i8(u: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(u, y), _mm256_set1_epi16(1))
}

/// Scale and min bytes of the 8 sub-blocks of a Q4_K/Q5_K block from its 12 packed bytes:
/// returns (scales as 8 little-endian bytes, mins as 8 little-endian bytes).
///
/// # Safety
/// `s..s + 12` must be readable.
#[inline]
pub(super) unsafe fn k4_scales_mins(s: *const u8) -> (u64, u64) {
    // SAFETY: the caller guarantees 12 readable bytes.
    let (a0, a1, a2) = unsafe { (u32_ptr(s), u32_ptr(s.add(4)), u32_ptr(s.add(8))) };
    const LOW6: u32 = 0x3F3F_3F3F;
    const LOW4: u32 = 0x0F0F_0F0F;
    const TOP2: u32 = 0x0303_0303;
    // Sub-blocks 0..4 keep the low 6 bits of bytes 0..4 (scales) and 4..8 (mins); 4..8 take
    // their low 4 bits from the nibbles of bytes 8..12 and the top 2 from bits 6-7 of 0..8.
    let sc_lo = a0 & LOW6;
    let m_lo = a1 & LOW6;
    let sc_hi = (a2 & LOW4) | (((a0 >> 6) & TOP2) << 4);
    let m_hi = ((a2 >> 4) & LOW4) | (((a1 >> 6) & TOP2) << 4);
    (
        sc_lo as u64 | (sc_hi as u64) << 32,
        m_lo as u64 | (m_hi as u64) << 32,
    )
}

/// 16 i16 lanes all holding byte `j` (zero-extended) of each 128-bit half of `bytes`: a
/// per-sub-block scale ready for `madd`, with one shuffle instead of a scalar extract and
/// broadcast.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn splat_byte16(bytes: __m256i, j: usize) -> __m256i {
    // Shuffle control per i16 lane: low byte <- byte j, high byte <- 0 (index with bit 7 set).
    _mm256_shuffle_epi8(bytes, _mm256_set1_epi16((0x8000 | j) as u16 as i16))
}

/// The 16 signed 6-bit scales of a Q3_K block (already minus 32) from its 12 packed bytes.
///
/// # Safety
/// `s..s + 12` must be readable.
#[inline]
pub(super) unsafe fn q3k_scales(s: *const u8) -> [i8; 16] {
    // SAFETY: the caller guarantees 12 readable bytes.
    let (a0, a1, a2) = unsafe { (u32_ptr(s), u32_ptr(s.add(4)), u32_ptr(s.add(8))) };
    const LOW4: u32 = 0x0F0F_0F0F;
    const TOP2: u32 = 0x0303_0303;
    // Low 4 bits: nibbles of bytes 0..8 (low nibbles for scales 0..8, high for 8..16); high 2
    // bits: 2-bit fields of bytes 8..12, field i/4 of byte i%4.
    let words = [
        (a0 & LOW4) | ((a2 & TOP2) << 4),
        (a1 & LOW4) | (((a2 >> 2) & TOP2) << 4),
        ((a0 >> 4) & LOW4) | (((a2 >> 4) & TOP2) << 4),
        ((a1 >> 4) & LOW4) | (((a2 >> 6) & TOP2) << 4),
    ];
    let mut out = [0i8; 16];
    for (w, chunk) in words.iter().zip(out.chunks_exact_mut(4)) {
        for (k, o) in chunk.iter_mut().enumerate() {
            *o = ((w >> (8 * k)) & 0xFF) as i8 - 32;
        }
    }
    out
}

/// 16 i16 lanes holding `s[2k]` in lanes 0..8 and `s[2k + 1]` in lanes 8..16, from 16 signed
/// scale bytes (as produced by `maddubs` on 32 elements = two 16-element sub-blocks).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn scale_pair(s: __m128i, k: i8) -> __m256i {
    let pick = _mm_add_epi8(
        _mm_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1),
        _mm_set1_epi8(2 * k),
    );
    _mm256_cvtepi8_epi16(_mm_shuffle_epi8(s, pick))
}

/// Checks a (weight row, activation row) pair covers `n` elements and returns the block count.
#[inline]
pub(super) fn blocks(
    w: &[u8],
    w_block: usize,
    a: &[u8],
    a_block: usize,
    n: usize,
    qk: usize,
) -> usize {
    assert!(
        n.is_multiple_of(qk),
        "{n} elements are not whole blocks of {qk}"
    );
    let nb = n / qk;
    assert!(
        w.len() >= nb * w_block && a.len() >= nb * a_block,
        "row too short"
    );
    nb
}

// ---------------------------------------------------------------------------------------------
// 32-element block types
// ---------------------------------------------------------------------------------------------

/// Q8_0 weights x Q8_0 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q8_0(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, Q8_0_W, a, Q8_0_A, n, 32);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q8_0_W),
                a.as_ptr().wrapping_add(i * Q8_0_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp), f16_bcast(ap));
            // `blocks` checked both blocks are in bounds; qs is 32 bytes at offset 2.
            let (x, y) = (load32(wp.add(2)), load32(ap.add(2)));
            let p = _mm256_cvtepi32_ps(dot_i8(x, y));
            acc = _mm256_fmadd_ps(p, d, acc);
        }
    }
    hsum_ps(acc)
}

/// Q4_0 weights x Q8_0 activations: codes 0..15 minus 8.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_0(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, Q4_0_W, a, Q8_0_A, n, 32);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q4_0_W),
                a.as_ptr().wrapping_add(i * Q8_0_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp), f16_bcast(ap));
            // In bounds: 16 qs bytes at 2, 32 activation bytes at 2.
            let (q, y) = (load16(wp.add(2)), load32(ap.add(2)));
            let x = _mm256_sub_epi8(nibbles32(q), _mm256_set1_epi8(8));
            let p = _mm256_cvtepi32_ps(dot_i8(x, y));
            acc = _mm256_fmadd_ps(p, d, acc);
        }
    }
    hsum_ps(acc)
}

/// Q4_1 weights x Q8_1 activations: `d*da*sum(q*y) + m*s`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_1(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, Q4_1_W, a, Q8_1_A, n, 32);
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q4_1_W),
                a.as_ptr().wrapping_add(i * Q8_1_A),
            );
            // Lanes: [d * da, m * s].
            let sc = _mm_mul_ps(f16x2_ptr(wp), f16x2_ptr(ap));
            summs += _mm_cvtss_f32(_mm_movehdup_ps(sc));
            // In bounds: 16 qs bytes at 4, 32 activation bytes at 4.
            let (q, y) = (load16(wp.add(4)), load32(ap.add(4)));
            // Codes <= 15: pair sums <= 2 * 15 * 127.
            let p = _mm256_cvtepi32_ps(dot_u8i8(nibbles32(q), y));
            acc = _mm256_fmadd_ps(p, _mm256_broadcastss_ps(sc), acc);
        }
    }
    hsum_ps(acc) + summs
}

/// Q5_0 weights x Q8_0 activations: 5-bit codes minus 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q5_0(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, Q5_0_W, a, Q8_0_A, n, 32);
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q5_0_W),
                a.as_ptr().wrapping_add(i * Q8_0_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp), f16_bcast(ap));
            let hb = bytes_from_bits(u32_ptr(wp.add(2)));
            // In bounds: 16 qs bytes at 6, 32 activation bytes at 2.
            let (q, y) = (load16(wp.add(6)), load32(ap.add(2)));
            // (code - 16) as i8: the nibble when the high bit is set, else nibble | 0xF0.
            let x = _mm256_or_si256(
                nibbles32(q),
                _mm256_andnot_si256(hb, _mm256_set1_epi8(0xF0u8 as i8)),
            );
            let p = _mm256_cvtepi32_ps(dot_i8(x, y));
            acc = _mm256_fmadd_ps(p, d, acc);
        }
    }
    hsum_ps(acc)
}

/// Q5_1 weights x Q8_1 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q5_1(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, Q5_1_W, a, Q8_1_A, n, 32);
    let mut acc = _mm256_setzero_ps();
    let mut summs = 0f32;
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q5_1_W),
                a.as_ptr().wrapping_add(i * Q8_1_A),
            );
            let sc = _mm_mul_ps(f16x2_ptr(wp), f16x2_ptr(ap));
            summs += _mm_cvtss_f32(_mm_movehdup_ps(sc));
            let hb = bytes_from_bits(u32_ptr(wp.add(4)));
            // In bounds: 16 qs bytes at 8, 32 activation bytes at 4.
            let (q, y) = (load16(wp.add(8)), load32(ap.add(4)));
            let x = _mm256_or_si256(nibbles32(q), _mm256_and_si256(hb, _mm256_set1_epi8(0x10)));
            // Codes <= 31: pair sums <= 2 * 31 * 127.
            let p = _mm256_cvtepi32_ps(dot_u8i8(x, y));
            acc = _mm256_fmadd_ps(p, _mm256_broadcastss_ps(sc), acc);
        }
    }
    hsum_ps(acc) + summs
}

/// IQ4_NL weights x Q8_0 activations: nibbles index a 16-entry i8 codebook.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_iq4_nl(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, IQ4_NL_W, a, Q8_0_A, n, 32);
    // SAFETY: KVALUES is 16 bytes.
    let table = _mm256_broadcastsi128_si256(unsafe { load16(KVALUES.as_ptr().cast()) });
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * IQ4_NL_W),
                a.as_ptr().wrapping_add(i * Q8_0_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp), f16_bcast(ap));
            // In bounds: 16 qs bytes at 2, 32 activation bytes at 2.
            let (q, y) = (load16(wp.add(2)), load32(ap.add(2)));
            let x = _mm256_shuffle_epi8(table, nibbles32(q));
            let p = _mm256_cvtepi32_ps(dot_i8(x, y));
            acc = _mm256_fmadd_ps(p, d, acc);
        }
    }
    hsum_ps(acc)
}

// ---------------------------------------------------------------------------------------------
// K-quants (256-element super-blocks) x Q8_K
// ---------------------------------------------------------------------------------------------

/// Q4_K weights x Q8_K activations for `T` tokens, in the order of llama.cpp's repacked Q4_K
/// kernels (which it uses on every AVX2 machine): the scaled sub-block dots and the min terms are
/// summed exactly in integers, then `acc += isum * (d_w * d_a)` and
/// `acc_min += msum * (dmin_w * d_a)` (fused), and the row's dot is `acc - acc_min`. The integer
/// sums cover a whole block in the single-token kernel (`gemv`) and each pair of sub-blocks in
/// the 4-token one (`gemm`), which is what `PAIRS` selects. The codes are unpacked once for all
/// tokens.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_k_blocks<const T: usize, const PAIRS: bool>(
    w: &[u8],
    acts: [&ActRow<'_>; T],
    n: usize,
) -> [f32; T] {
    let nb = acts
        .iter()
        .map(|a| blocks(w, Q4_K_W, a.bytes, Q8_K_A, n, 256))
        .min()
        .unwrap_or(0);
    let mut acc = [0f32; T];
    let mut acc_m = [0f32; T];
    let low4 = _mm256_set1_epi8(0x0F);
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and of each activation
        // row, which `blocks` checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let wp = w.as_ptr().wrapping_add(i * Q4_K_W);
            let (dw, dmin) = (f16_at(w, i * Q4_K_W), f16_at(w, i * Q4_K_W + 2));
            let (sc, mins) = k4_scales_mins(wp.add(4));
            let sv = _mm256_broadcastsi128_si256(_mm_cvtsi64_si128(sc as i64));
            let m = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mins as i64));
            // qs is 128 bytes at 16: sub-blocks 2c (low nibbles) and 2c + 1 (high nibbles).
            let codes: [[__m256i; 2]; 4] = std::array::from_fn(|c| {
                let q = load32(wp.add(16 + 32 * c));
                [
                    _mm256_and_si256(q, low4),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q), low4),
                ]
            });
            for (t, a) in acts.iter().enumerate() {
                let ap = a.bytes.as_ptr().wrapping_add(i * Q8_K_A);
                let da = f32_ptr(ap);
                // bsums are 32 bytes at 260: pairs of 16-sums are the sub-block sums.
                let pair = _mm256_madd_epi16(load32(ap.add(Q8K_BSUMS)), _mm256_set1_epi16(1));
                let mprod = _mm256_mullo_epi32(pair, m);
                let mut mins_x_sums = [0i32; 8];
                if PAIRS {
                    _mm256_storeu_si256(mins_x_sums.as_mut_ptr().cast(), mprod);
                }
                let (scale, scale_m) = (dw * da, dmin * da);
                let mut sumi = _mm256_setzero_si256();
                for (c, [lo, hi]) in codes.iter().enumerate() {
                    // Activation quants are 256 bytes at 4. Codes <= 15: pair sums
                    // <= 2 * 15 * 127; times a 6-bit scale in madd.
                    let (y0, y1) = (load32(ap.add(4 + 64 * c)), load32(ap.add(4 + 64 * c + 32)));
                    let p0 = _mm256_maddubs_epi16(*lo, y0);
                    let p1 = _mm256_maddubs_epi16(*hi, y1);
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p0, splat_byte16(sv, 2 * c)));
                    sumi =
                        _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, splat_byte16(sv, 2 * c + 1)));
                    if PAIRS {
                        // Lanes 2c, 2c + 1 of `mprod` are this pair's min terms.
                        let msum = mins_x_sums[2 * c] + mins_x_sums[2 * c + 1];
                        acc[t] = (hsum_epi32(sumi) as f32).mul_add(scale, acc[t]);
                        acc_m[t] = (msum as f32).mul_add(scale_m, acc_m[t]);
                        sumi = _mm256_setzero_si256();
                    }
                }
                if !PAIRS {
                    acc[t] = (hsum_epi32(sumi) as f32).mul_add(scale, acc[t]);
                    acc_m[t] = (hsum_epi32(mprod) as f32).mul_add(scale_m, acc_m[t]);
                }
            }
        }
    }
    std::array::from_fn(|t| acc[t] - acc_m[t])
}

/// [`dot_q4_k_blocks`] for one token.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q4_k(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot_q4_k_blocks::<1, false>(w, [act], n)[0]
}

/// [`dot_q4_k_blocks`] for four tokens (the `gemm` order).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot4_q4_k(w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
    dot_q4_k_blocks::<4, true>(w, acts, n)
}

/// [`dot_q4_k_blocks`] for four tokens in the one-token (`gemv`) order, for batches that must sum
/// as batches of one (several sequences' decode steps).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot4_q4_k_gemv(w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
    dot_q4_k_blocks::<4, false>(w, acts, n)
}

/// Q5_K weights x Q8_K activations: Q4_K plus a fifth bit from `qh`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q5_k(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, Q5_K_W, a, Q8_K_A, n, 256);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm256_setzero_ps();
    let low4 = _mm256_set1_epi8(0x0F);
    let bit4 = _mm256_set1_epi8(0x10);
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q5_K_W),
                a.as_ptr().wrapping_add(i * Q8_K_A),
            );
            let da = f32_ptr(ap);
            let dm = _mm_mul_ps(f16x2_ptr(wp), _mm_set1_ps(da));
            let (sc, mins) = k4_scales_mins(wp.add(4));
            let sv = _mm256_broadcastsi128_si256(_mm_cvtsi64_si128(sc as i64));
            // In bounds: bsums at 260 (32 bytes), qh at 16 (32 bytes).
            let (bsums, mut qh) = (load32(ap.add(Q8K_BSUMS)), load32(wp.add(16)));
            let pair = _mm256_madd_epi16(bsums, _mm256_set1_epi16(1));
            let m = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mins as i64));
            let mprod = _mm256_cvtepi32_ps(_mm256_mullo_epi32(pair, m));
            acc_m = _mm256_fmadd_ps(
                mprod,
                _mm256_set1_ps(_mm_cvtss_f32(_mm_movehdup_ps(dm))),
                acc_m,
            );

            let mut sumi = _mm256_setzero_si256();
            for c in 0..4 {
                // qs is 128 bytes at 48; activation quants are 256 bytes at 4.
                let (q, y0, y1) = (
                    load32(wp.add(48 + 32 * c)),
                    load32(ap.add(4 + 64 * c)),
                    load32(ap.add(4 + 64 * c + 32)),
                );
                // Bit 2c of qh -> bit 4 of the low-nibble codes, bit 2c+1 -> the high ones. `qh` is
                // shifted right one bit per sub-block; a 16-bit shift moves bits across the byte
                // boundary only into bit 7 of the low byte, which is never read within 8 shifts.
                let h0 = _mm256_and_si256(_mm256_slli_epi16::<4>(qh), bit4);
                qh = _mm256_srli_epi16::<1>(qh);
                let h1 = _mm256_and_si256(_mm256_slli_epi16::<4>(qh), bit4);
                qh = _mm256_srli_epi16::<1>(qh);
                let lo = _mm256_or_si256(_mm256_and_si256(q, low4), h0);
                let hi = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16::<4>(q), low4), h1);
                // Codes <= 31: pair sums <= 2 * 31 * 127.
                let p0 = _mm256_maddubs_epi16(lo, y0);
                let p1 = _mm256_maddubs_epi16(hi, y1);
                let s0 = splat_byte16(sv, 2 * c);
                let s1 = splat_byte16(sv, 2 * c + 1);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p0, s0));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p1, s1));
            }
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_broadcastss_ps(dm), acc);
        }
    }
    hsum_ps(acc) - hsum_ps(acc_m)
}

/// The four 32-byte groups of 6-bit codes (0..63) of one 128-element half of a Q6_K block, from
/// its 64 `ql` bytes and 32 `qh` bytes. Group g covers elements 32g..32g+32 of the half.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) fn q6k_codes(ql0: __m256i, ql1: __m256i, qh: __m256i) -> [__m256i; 4] {
    let low4 = _mm256_set1_epi8(0x0F);
    let bits45 = _mm256_set1_epi8(0x30);
    [
        _mm256_or_si256(
            _mm256_and_si256(ql0, low4),
            _mm256_and_si256(_mm256_slli_epi16::<4>(qh), bits45),
        ),
        _mm256_or_si256(
            _mm256_and_si256(ql1, low4),
            _mm256_and_si256(_mm256_slli_epi16::<2>(qh), bits45),
        ),
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql0), low4),
            _mm256_and_si256(qh, bits45),
        ),
        _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi16::<4>(ql1), low4),
            _mm256_and_si256(_mm256_srli_epi16::<2>(qh), bits45),
        ),
    ]
}

/// Q6_K weights x Q8_K activations for `T` tokens in the order of llama.cpp's `vec_dot` (below
/// 8 tokens): codes 0..63 minus 32, with 16 signed 8-bit scales, the -32 folded in through the
/// group sums (`sum sc_s * (dot(q_s, y_s) - 32 * bsum_s)`), 8 integer lanes per block scaled and
/// accumulated block after block. The codes are unpacked once for all tokens.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_q6_k_lanes<const T: usize>(w: &[u8], acts: [&ActRow<'_>; T], n: usize) -> [f32; T] {
    let nb = acts
        .iter()
        .map(|a| blocks(w, Q6_K_W, a.bytes, Q8_K_A, n, 256))
        .min()
        .unwrap_or(0);
    let mut acc = [_mm256_setzero_ps(); T];
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and of each activation
        // row, which `blocks` checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let wp = w.as_ptr().wrapping_add(i * Q6_K_W);
            let (dw, scales, codes) = (
                f16_bcast(wp.add(208)),
                load16(wp.add(192)),
                q6k_block_codes(wp),
            );
            for (acc, a) in acc.iter_mut().zip(&acts) {
                let ap = a.bytes.as_ptr().wrapping_add(i * Q8_K_A);
                let d = _mm256_mul_ps(dw, _mm256_set1_ps(f32_ptr(ap)));
                let sumi = q6k_lanes(&codes, scales, ap);
                *acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), d, *acc);
            }
        }
    }
    std::array::from_fn(|t| hsum_ps(acc[t]))
}

/// [`dot_q6_k_lanes`] for one token.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q6_k(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot_q6_k_lanes::<1>(w, [act], n)[0]
}

/// [`dot_q6_k_lanes`] for four tokens.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot4_q6_k(w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
    dot_q6_k_lanes::<4>(w, acts, n)
}

/// The 8 codes registers of the Q6_K block at `wp` (two halves of four 32-code groups).
///
/// # Safety
/// A whole Q6_K block must be readable at `wp`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_block_codes(wp: *const u8) -> [[__m256i; 4]; 2] {
    // SAFETY: ql is 128 bytes at 0, qh 64 bytes at 128, inside the block.
    std::array::from_fn(|h| unsafe {
        q6k_codes(
            load32(wp.add(64 * h)),
            load32(wp.add(64 * h + 32)),
            load32(wp.add(128 + 32 * h)),
        )
    })
}

/// The 8 i32 lanes of a Q6_K block dotted with the Q8_K block at `ap`, partitioned as
/// llama.cpp's AVX2 `vec_dot` partitions them: lane `l` holds elements `4l..4l + 4` of every
/// 32-element group, minus `32 * (sc[2l] * bsum[2l] + sc[2l + 1] * bsum[2l + 1])` (the -32 code
/// offset folded in through the group sums).
///
/// # Safety
/// A whole Q8_K block must be readable at `ap`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn q6k_lanes(codes: &[[__m256i; 4]; 2], scales: __m128i, ap: *const u8) -> __m256i {
    // SAFETY: bsums are 32 bytes at 260, quants 256 bytes at 4, inside the block.
    unsafe {
        // Bias term: |.| <= 16 * 128 * 2032, times 32 below.
        let bias = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scales), load32(ap.add(Q8K_BSUMS)));
        let mut sumi = _mm256_setzero_si256();
        for (h, hc) in codes.iter().enumerate() {
            for (g, &q) in hc.iter().enumerate() {
                let y = load32(ap.add(4 + 128 * h + 32 * g));
                // Codes <= 63: pair sums <= 2 * 63 * 127 < 2^15.
                let p = _mm256_maddubs_epi16(q, y);
                let s = scale_pair(scales, (4 * h + g) as i8);
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
        }
        _mm256_sub_epi32(sumi, _mm256_slli_epi32::<5>(bias))
    }
}

/// Q6_K weights x Q8_K activations for `T` tokens in llama.cpp's order for batches of 8 or more
/// tokens (its tiled path): the block's dot is summed exactly in integers, then
/// `acc += (isum * d_w) * d_a` (the last step fused) block after block. The codes are unpacked once for all tokens.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q6_k_blocks<const T: usize>(
    w: &[u8],
    acts: [&ActRow<'_>; T],
    n: usize,
) -> [f32; T] {
    let nb = acts
        .iter()
        .map(|a| blocks(w, Q6_K_W, a.bytes, Q8_K_A, n, 256))
        .min()
        .unwrap_or(0);
    let mut acc = [0f32; T];
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and of each activation
        // row, which `blocks` checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let wp = w.as_ptr().wrapping_add(i * Q6_K_W);
            let dw = f16_at(w, i * Q6_K_W + 208);
            let scales = load16(wp.add(192));
            let codes = q6k_block_codes(wp);
            for (t, a) in acts.iter().enumerate() {
                let ap = a.bytes.as_ptr().wrapping_add(i * Q8_K_A);
                let sumi = q6k_lanes(&codes, scales, ap);
                // GCC contracts llama.cpp's `buf + result * d_a` into one FMA.
                acc[t] = (hsum_epi32(sumi) as f32 * dw).mul_add(f32_ptr(ap), acc[t]);
            }
        }
    }
    acc
}

/// [`dot_q6_k_blocks`] for one token.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q6_k_tiled(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    dot_q6_k_blocks::<1>(w, [act], n)[0]
}

/// [`dot_q6_k_blocks`] for four tokens.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot4_q6_k_tiled(w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
    dot_q6_k_blocks::<4>(w, acts, n)
}

/// Q2_K weights x Q8_K activations: 2-bit codes with 4-bit scales and mins per 16 elements.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q2_k(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, Q2_K_W, a, Q8_K_A, n, 256);
    let mut acc = _mm256_setzero_ps();
    let mut acc_m = _mm256_setzero_ps();
    let low2 = _mm256_set1_epi8(3);
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q2_K_W),
                a.as_ptr().wrapping_add(i * Q8_K_A),
            );
            let da = f32_ptr(ap);
            let dm = _mm_mul_ps(f16x2_ptr(wp.add(80)), _mm_set1_ps(da)); // [d*da, dmin*da]
                                                                         // In bounds: scales 16 bytes at 0, bsums 32 bytes at 260.
            let (packed, bsums) = (load16(wp), load32(ap.add(Q8K_BSUMS)));
            let scales = _mm_and_si128(packed, _mm_set1_epi8(0x0F));
            let mins = _mm_and_si128(_mm_srli_epi16::<4>(packed), _mm_set1_epi8(0x0F));
            let mprod = _mm256_madd_epi16(_mm256_cvtepu8_epi16(mins), bsums);
            acc_m = _mm256_fmadd_ps(
                _mm256_cvtepi32_ps(mprod),
                _mm256_set1_ps(_mm_cvtss_f32(_mm_movehdup_ps(dm))),
                acc_m,
            );
            let mut sumi = _mm256_setzero_si256();
            for h in 0..2 {
                // qs is 64 bytes at 16.
                let q = load32(wp.add(16 + 32 * h));
                let codes = [
                    _mm256_and_si256(q, low2),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(q), low2),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q), low2),
                    _mm256_and_si256(_mm256_srli_epi16::<6>(q), low2),
                ];
                for (k, &c) in codes.iter().enumerate() {
                    // activation quants are 256 bytes at 4.
                    let y = load32(ap.add(4 + 128 * h + 32 * k));
                    let p = _mm256_maddubs_epi16(c, y);
                    let s = scale_pair(scales, (4 * h + k) as i8);
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
                }
            }
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), _mm256_broadcastss_ps(dm), acc);
        }
    }
    hsum_ps(acc) - hsum_ps(acc_m)
}

/// Q3_K weights x Q8_K activations: unsigned 3-bit codes `(2 low bits) + 4 * hmask bit`, value =
/// code - 4; the -4 is folded in through the group sums like Q6_K's -32.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_q3_k(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, Q3_K_W, a, Q8_K_A, n, 256);
    let mut acc = _mm256_setzero_ps();
    let low2 = _mm256_set1_epi8(3);
    let four = _mm256_set1_epi8(4);
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * Q3_K_W),
                a.as_ptr().wrapping_add(i * Q8_K_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp.add(108)), _mm256_set1_ps(f32_ptr(ap)));
            let sc = q3k_scales(wp.add(96));
            // `sc` is 16 bytes; in-bounds per `blocks`: hmask 32 bytes at 0, bsums at 260.
            let (scales, hm, bsums) = (
                load16(sc.as_ptr().cast()),
                load32(wp),
                load32(ap.add(Q8K_BSUMS)),
            );
            let bias = _mm256_madd_epi16(_mm256_cvtepi8_epi16(scales), bsums);
            let mut sumi = _mm256_setzero_si256();
            for h in 0..2 {
                // qs is 64 bytes at 32.
                let q = load32(wp.add(32 + 32 * h));
                let codes = [
                    _mm256_and_si256(q, low2),
                    _mm256_and_si256(_mm256_srli_epi16::<2>(q), low2),
                    _mm256_and_si256(_mm256_srli_epi16::<4>(q), low2),
                    _mm256_and_si256(_mm256_srli_epi16::<6>(q), low2),
                ];
                for (k, &c) in codes.iter().enumerate() {
                    let bit = _mm256_set1_epi8((1u8 << (4 * h + k)) as i8);
                    let hbit =
                        _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(hm, bit), bit), four);
                    // activation quants are 256 bytes at 4.
                    let y = load32(ap.add(4 + 128 * h + 32 * k));
                    // Codes <= 7.
                    let p = _mm256_maddubs_epi16(_mm256_or_si256(c, hbit), y);
                    let s = scale_pair(scales, (4 * h + k) as i8);
                    sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
                }
            }
            sumi = _mm256_sub_epi32(sumi, _mm256_slli_epi32::<2>(bias));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), d, acc);
        }
    }
    hsum_ps(acc)
}

/// The 6-bit scale (minus 32) of sub-block `ib` of an IQ4_XS block.
///
/// # Safety
/// `wb..wb + 8` (the block header) must be readable.
#[inline]
pub(super) unsafe fn iq4xs_scale(wb: *const u8, ib: usize) -> i16 {
    // SAFETY: the caller guarantees the 8 header bytes are readable.
    let (sh, l) = unsafe {
        (
            wb.add(2).cast::<u16>().read_unaligned(),
            *wb.add(4 + ib / 2),
        )
    };
    let sh = u16::from_le(sh);
    let lo = (l >> (4 * (ib % 2))) & 0x0F;
    let hi = ((sh >> (2 * ib)) & 3) as u8;
    (lo | (hi << 4)) as i16 - 32
}

/// IQ4_XS weights x Q8_K activations: codebook nibbles with a 6-bit scale per 32 elements.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_iq4_xs(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    let nb = blocks(w, IQ4_XS_W, a, Q8_K_A, n, 256);
    // SAFETY: KVALUES is 16 bytes.
    let table = _mm256_broadcastsi128_si256(unsafe { load16(KVALUES.as_ptr().cast()) });
    let mut acc = _mm256_setzero_ps();
    for i in 0..nb {
        // SAFETY: every pointer read below lies inside block i of `w` and `a`, which `blocks`
        // checked are in bounds (offsets per the layouts in `formats`).
        unsafe {
            let (wp, ap) = (
                w.as_ptr().wrapping_add(i * IQ4_XS_W),
                a.as_ptr().wrapping_add(i * Q8_K_A),
            );
            let d = _mm256_mul_ps(f16_bcast(wp), _mm256_set1_ps(f32_ptr(ap)));
            let mut sumi = _mm256_setzero_si256();
            for ib in 0..8 {
                // qs is 128 bytes at 8; activation quants are 256 bytes at 4.
                let (q, y) = (load16(wp.add(8 + 16 * ib)), load32(ap.add(4 + 32 * ib)));
                let x = _mm256_shuffle_epi8(table, nibbles32(q));
                // |x|, |y| <= 127: pair sums <= 2 * 127 * 127 < 2^15.
                let p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
                let s = _mm256_set1_epi16(iq4xs_scale(wp, ib));
                sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(p, s));
            }
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sumi), d, acc);
        }
    }
    hsum_ps(acc)
}

// ---------------------------------------------------------------------------------------------
// Float weights x f32 activations
// ---------------------------------------------------------------------------------------------

/// Checks a float row pair: `n` weights of `w_size` bytes and `n` f32 activations.
#[inline]
pub(super) fn float_lens(w: &[u8], w_size: usize, a: &[u8], n: usize) {
    assert!(w.len() >= n * w_size && a.len() >= n * 4, "row too short");
}

/// Generic float dot: `load(i)` yields 8 f32 weights starting at element `i`; tails in scalar.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn float_dot(
    a: &[u8],
    n: usize,
    load: impl Fn(usize) -> __m256,
    scalar: impl Fn(usize) -> f32,
) -> f32 {
    let ap = a.as_ptr();
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for (k, acc) in acc.iter_mut().enumerate() {
            // SAFETY: `float_lens` checked `a` holds `n` f32s and i + 8k + 8 <= n.
            let y = unsafe { _mm256_loadu_ps(ap.add(4 * (i + 8 * k)).cast()) };
            *acc = _mm256_fmadd_ps(load(i + 8 * k), y, *acc);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: as above.
        let y = unsafe { _mm256_loadu_ps(ap.add(4 * i).cast()) };
        acc[0] = _mm256_fmadd_ps(load(i), y, acc[0]);
        i += 8;
    }
    let mut sum = hsum_ps(_mm256_add_ps(
        _mm256_add_ps(acc[0], acc[1]),
        _mm256_add_ps(acc[2], acc[3]),
    ));
    for j in i..n {
        sum += scalar(j) * f32_at(a, 4 * j);
    }
    sum
}

/// F32 weights x f32 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_f32(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    float_lens(w, 4, a, n);
    let wp = w.as_ptr();
    float_dot(
        a,
        n,
        // SAFETY: `float_dot` only asks for i + 8 <= n, checked by `float_lens`.
        |i| unsafe { _mm256_loadu_ps(wp.add(4 * i).cast()) },
        |j| f32_at(w, 4 * j),
    )
}

/// F16 weights x f32 activations.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_f16(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    float_lens(w, 2, a, n);
    let wp = w.as_ptr();
    float_dot(
        a,
        n,
        // SAFETY: `float_dot` only asks for i + 8 <= n, checked by `float_lens`.
        |i| _mm256_cvtph_ps(unsafe { load16(wp.add(2 * i)) }),
        |j| f16_at(w, 2 * j),
    )
}

/// BF16 weights x f32 activations (a BF16 is the top half of an f32).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn dot_bf16(w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
    let a = act.bytes;
    float_lens(w, 2, a, n);
    let wp = w.as_ptr();
    float_dot(
        a,
        n,
        |i| {
            // SAFETY: `float_dot` only asks for i + 8 <= n, checked by `float_lens`.
            let h = _mm256_cvtepu16_epi32(unsafe { load16(wp.add(2 * i)) });
            _mm256_castsi256_ps(_mm256_slli_epi32::<16>(h))
        },
        |j| f32::from_bits((u16::from_le_bytes([w[2 * j], w[2 * j + 1]]) as u32) << 16),
    )
}

// ---------------------------------------------------------------------------------------------
// Activation quantization
// ---------------------------------------------------------------------------------------------

/// Rounds 32 floats (4 vectors) times `id` to nearest-even i32 and packs them to 32 i8 in order.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn round_pack32(v: [__m256; 4], id: __m256) -> __m256i {
    // cvtps rounds with the current mode: round-to-nearest-even unless someone changed MXCSR.
    let i: [__m256i; 4] = v.map(|v| _mm256_cvtps_epi32(_mm256_mul_ps(v, id)));
    // packs interleave 128-bit lanes: [a0 b0 a1 b1] -> reorder with a permute.
    let ab = _mm256_packs_epi32(i[0], i[1]);
    let cd = _mm256_packs_epi32(i[2], i[3]);
    let q = _mm256_packs_epi16(ab, cd);
    _mm256_permutevar8x32_epi32(q, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7))
}

/// Loads 32 f32 starting at `x[off]`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn load_f32x32(x: &[f32], off: usize) -> [__m256; 4] {
    let x = &x[off..off + 32];
    // SAFETY: `x` has exactly 32 elements.
    std::array::from_fn(|k| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * k)) })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn abs_max8(v: &[__m256]) -> __m256 {
    let sign = _mm256_set1_ps(-0.0);
    v.iter().fold(_mm256_setzero_ps(), |m, &x| {
        _mm256_max_ps(m, _mm256_andnot_ps(sign, x))
    })
}

#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn hmax_ps(v: __m256) -> f32 {
    let m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_movehdup_ps(m));
    _mm_cvtss_f32(m)
}

/// f32 -> f16 bits, round to nearest even.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn f16_bits(v: f32) -> [u8; 2] {
    let h = _mm_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm_set_ss(v));
    (_mm_cvtsi128_si32(h) as u16).to_le_bytes()
}

/// Quantizes 32 floats like llama.cpp's x86 path; writes the quants to `out` and returns
/// (d, sum of quants).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn quantize32(x: &[f32], off: usize, out: &mut [u8]) -> (f32, i32) {
    let v = load_f32x32(x, off);
    let amax = hmax_ps(abs_max8(&v));
    let d = amax / 127.0;
    let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
    let q = round_pack32(v, _mm256_set1_ps(id));
    let out = &mut out[..32];
    // SAFETY: `out` has exactly 32 bytes.
    unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), q) };
    let sum = hsum_epi32(_mm256_madd_epi16(
        _mm256_maddubs_epi16(_mm256_set1_epi8(1), q),
        _mm256_set1_epi16(1),
    ));
    (d, sum)
}

/// Quantizes a row to Q8_0 (d = amax/127 as f16, q = round_half_even(x * 127/amax)).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_q8_0(x: &[f32], out: &mut [u8]) {
    assert!(x.len().is_multiple_of(32) && out.len() == x.len() / 32 * Q8_0_A);
    for (b, blk) in out.chunks_exact_mut(Q8_0_A).enumerate() {
        let (d, _) = quantize32(x, 32 * b, &mut blk[2..]);
        blk[..2].copy_from_slice(&f16_bits(d));
    }
}

/// Quantizes a row to Q8_1 (Q8_0 plus s = f16(d * sum(q))).
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_q8_1(x: &[f32], out: &mut [u8]) {
    assert!(x.len().is_multiple_of(32) && out.len() == x.len() / 32 * Q8_1_A);
    for (b, blk) in out.chunks_exact_mut(Q8_1_A).enumerate() {
        let (d, sum) = quantize32(x, 32 * b, &mut blk[4..]);
        blk[..2].copy_from_slice(&f16_bits(d));
        blk[2..4].copy_from_slice(&f16_bits(d * sum as f32));
    }
}

/// Quantizes a row to Q8_K: iscale = -127/max for the first element of largest magnitude,
/// q = min(127, round_half_even(iscale * x)), d = 1/iscale, bsums = sums of 16.
#[target_feature(enable = "avx2,fma,f16c")]
pub(crate) fn quantize_q8_k(x: &[f32], out: &mut [u8]) {
    assert!(x.len().is_multiple_of(256) && out.len() == x.len() / 256 * Q8_K_A);
    for (b, blk) in out.chunks_exact_mut(Q8_K_A).enumerate() {
        let xs = &x[256 * b..256 * b + 256];
        let v: [__m256; 32] = std::array::from_fn(|k| {
            // SAFETY: `xs` has 256 elements and 8k + 8 <= 256.
            unsafe { _mm256_loadu_ps(xs.as_ptr().add(8 * k)) }
        });
        let amax = hmax_ps(abs_max8(&v));
        if amax == 0.0 {
            blk.fill(0);
            continue;
        }
        // The reference keeps the sign of the first element reaching amax.
        let max = *xs.iter().find(|v| v.abs() == amax).unwrap_or(&amax);
        let iscale = -127.0 / max;
        let is = _mm256_set1_ps(iscale);
        for g in 0..8 {
            let q = round_pack32([v[4 * g], v[4 * g + 1], v[4 * g + 2], v[4 * g + 3]], is);
            // SAFETY: quants are 256 bytes at 4; 4 + 32g + 32 <= 260.
            unsafe { _mm256_storeu_si256(blk.as_mut_ptr().add(4 + 32 * g).cast(), q) };
            // Group sums of 16: maddubs by ones gives pair sums, madd+hadd finish them.
            let pairs = _mm256_maddubs_epi16(_mm256_set1_epi8(1), q);
            let quads = _mm256_madd_epi16(pairs, _mm256_set1_epi16(1));
            // quads: 8 i32, each the sum of 4 quants; groups of 16 = lanes 0-3 and 4-7.
            let s = hsum_epi32(_mm256_and_si256(
                quads,
                _mm256_setr_epi32(-1, -1, -1, -1, 0, 0, 0, 0),
            ));
            let t = hsum_epi32(quads) - s;
            blk[Q8K_BSUMS + 4 * g..Q8K_BSUMS + 4 * g + 2]
                .copy_from_slice(&(s as i16).to_le_bytes());
            blk[Q8K_BSUMS + 4 * g + 2..Q8K_BSUMS + 4 * g + 4]
                .copy_from_slice(&(t as i16).to_le_bytes());
        }
        blk[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    }
}
