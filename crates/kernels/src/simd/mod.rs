//! Run-time selection of the SIMD kernels.
//!
//! The best instruction set is detected once ([`detected_level`]); [`active_level`] is what
//! [`crate::matmul()`] uses and can be lowered with [`set_level`] (for benchmarks and A/B runs).
//! Tests should not change the process-wide level (tests run in parallel); they pass a [`Level`]
//! explicitly to [`DotKernel::new`] / [`QuantKernel::new`] / [`crate::matmul::matmul_at`].
//!
//! | level | needs | kernels |
//! |---|---|---|
//! | [`Level::Avx512`] | AVX-512 F/BW/VL/VNNI + AVX2/FMA/F16C | `avx512.rs`: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL (two blocks per zmm `vpdpbusd`, prepared activations), F32/F16/BF16 (zmm FMA), 4-token variants of the 32-element types; the other types from `avx2.rs`. `tiles.rs`: 8-row x 8-token tiles (`vpdpbusd`) of the 32-element types, Q4_K, Q6_K |
//! | [`Level::Avx2`] | AVX2, FMA, F16C | `avx2.rs`: every supported type (`maddubs`/`madd`), Q8_0/Q8_1/Q8_K quantizers (also used at the AVX-512 level). `tiles.rs`: 8-row x 8-token tiles (`maddubs`) of Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q6_K |
//! | [`Level::Scalar`] | - | [`crate::formats::vec_dot`] and [`crate::formats::quantize_activations`] |
//!
//! The dot kernels take an [`ActRow`]: a token's activations in the standard layout, plus for the
//! AVX-512 32-element kernels side arrays built once per matmul by [`Activations`] (see
//! [`ActRow`]). [`DotKernel::dot4`] dots one weight row with 4 tokens, unpacking the weights once, and
//! [`DotKernel::gemm`] a tile of [`GEMM_ROWS`] rows x [`GEMM_TOKENS`] tokens ([`ActTile`], with the
//! tokens interleaved block by block) (prompt processing).
//!
//! The float sums follow the order of llama.cpp's x86 kernels on an AVX-512 machine (which made the
//! reference outputs), including where that order depends on the batch size
//! ([`DotKernel::for_batch`]): the integer parts are exact in any order, and matching the float
//! parts keeps the logits of even Gemma-class models, which amplify last-bit differences, on the
//! reference.
//!
//! Non-x86 targets build only the scalar level; a NEON level would slot in as another variant.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod tiles;

use crate::formats;
use gguf::GgmlType;
use layout::{Q8K_BSUMS, Q8_K_A};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// Byte layouts the kernels rely on (block sizes and offsets; see `formats` for the full story).
#[allow(dead_code)]
pub(crate) mod layout {
    /// Bytes per weight block.
    pub const Q4_0_W: usize = 18;
    pub const Q4_1_W: usize = 20;
    pub const Q5_0_W: usize = 22;
    pub const Q5_1_W: usize = 24;
    pub const Q8_0_W: usize = 34;
    pub const IQ4_NL_W: usize = 18;
    pub const Q2_K_W: usize = 84;
    pub const Q3_K_W: usize = 110;
    pub const Q4_K_W: usize = 144;
    pub const Q5_K_W: usize = 176;
    pub const Q6_K_W: usize = 210;
    pub const IQ4_XS_W: usize = 136;
    /// Bytes per activation block.
    pub const Q8_0_A: usize = 34;
    pub const Q8_1_A: usize = 36;
    pub const Q8_K_A: usize = 292;
    /// Offset of the 16 i16 group sums in a Q8_K block.
    pub const Q8K_BSUMS: usize = 260;
    /// The IQ4_NL / IQ4_XS codebook.
    pub static KVALUES: [i8; 16] = [
        -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
    ];
}

/// An instruction-set level, ordered from least to most capable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Portable Rust (the `formats` reference code).
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL/VNNI (plus everything [`Level::Avx2`] needs).
    Avx512,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 3] = [Level::Scalar, Level::Avx2, Level::Avx512];

    /// Short name for logs (`scalar`, `avx2`, `avx512vnni`).
    pub fn name(self) -> &'static str {
        match self {
            Level::Scalar => "scalar",
            Level::Avx2 => "avx2",
            Level::Avx512 => "avx512vnni",
        }
    }

    /// Whether this CPU can run code of this level.
    pub fn is_available(self) -> bool {
        self <= detected_level()
    }
}

impl std::fmt::Display for Level {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn detect() -> Level {
    #[cfg(target_arch = "x86_64")]
    {
        let avx2 = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        let avx512 = avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni");
        if avx512 {
            return Level::Avx512;
        }
        if avx2 {
            return Level::Avx2;
        }
    }
    Level::Scalar
}

/// The best level this CPU supports (detected once).
pub fn detected_level() -> Level {
    static DETECTED: OnceLock<Level> = OnceLock::new();
    *DETECTED.get_or_init(detect)
}

/// Sentinel for "no override".
const NO_OVERRIDE: u8 = u8::MAX;
static OVERRIDE: AtomicU8 = AtomicU8::new(NO_OVERRIDE);

/// The level [`crate::matmul()`] uses: the detected one unless lowered with [`set_level`].
pub fn active_level() -> Level {
    match OVERRIDE.load(Ordering::Relaxed) {
        NO_OVERRIDE => detected_level(),
        i => Level::ALL[i as usize],
    }
}

/// Makes [`active_level`] return `level` for the whole process (`None` restores detection).
/// Returns false, changing nothing, if this CPU cannot run `level`.
pub fn set_level(level: Option<Level>) -> bool {
    match level {
        None => OVERRIDE.store(NO_OVERRIDE, Ordering::Relaxed),
        Some(l) if l.is_available() => OVERRIDE.store(l as u8, Ordering::Relaxed),
        Some(_) => return false,
    }
    true
}

/// Every level this CPU can run, lowest first (tests run each kernel on all of them).
pub fn available_levels() -> Vec<Level> {
    Level::ALL
        .into_iter()
        .filter(|l| l.is_available())
        .collect()
}

/// A SIMD dot product: (weight row, activation row, elements). Unsafe to call because it needs
/// the CPU features of its level; [`DotKernel`] only stores ones that are available.
type RawDot = unsafe fn(&[u8], &ActRow<'_>, usize) -> f32;
/// A SIMD dot of one weight row with 4 tokens (same contract as [`RawDot`]).
type RawDot4 = unsafe fn(&[u8], [&ActRow<'_>; 4], usize) -> [f32; 4];
/// Packs [`GEMM_ROWS`] weight rows of `n` elements for a [`RawGemm`] (same contract as
/// [`RawDot`]).
type RawPack = unsafe fn([&[u8]; GEMM_ROWS], usize, &mut Vec<u8>);
/// A SIMD dot of [`GEMM_ROWS`] packed weight rows with [`GEMM_TOKENS`] tokens (same contract as
/// [`RawDot`]).
type RawGemm = unsafe fn(&[u8], &ActTile<'_>, usize) -> [[f32; GEMM_ROWS]; GEMM_TOKENS];
/// A SIMD activation quantizer (same contract as [`RawDot`]).
type RawQuant = unsafe fn(&[f32], &mut [u8]);

/// The dot product of one weight type at one level: a SIMD kernel where one exists, else the
/// scalar reference.
#[derive(Clone, Copy)]
pub struct DotKernel {
    ty: GgmlType,
    simd: Option<RawDot>,
    level: Level,
    /// The SIMD kernel reads the prepared side arrays of [`ActRow`] (see [`Activations`]).
    prepared: bool,
    /// A kernel that dots one weight row with 4 tokens, unpacking the weights once.
    simd4: Option<RawDot4>,
    /// A kernel for tiles of [`GEMM_ROWS`] rows x [`GEMM_TOKENS`] tokens, and its packer.
    gemm: Option<(RawPack, RawGemm)>,
    /// The tile, 4-token and single-token kernels give each token the same bits (a K-quant in the
    /// single-token order), so a last group of tokens may run as a padded tile.
    pads: bool,
}

impl std::fmt::Debug for DotKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DotKernel")
            .field("ty", &self.ty)
            .field("level", &self.level)
            .field("simd", &self.simd.is_some())
            .field("simd4", &self.simd4.is_some())
            .field("gemm", &self.gemm.is_some())
            .finish()
    }
}

/// The batch size from which llama.cpp's CPU backend multiplies K-quant matrices tile by tile
/// (`ggml_tiled_min_batch`), which changes the order of the float sums.
pub const TILED_MIN_BATCH: usize = 8;

#[cfg(target_arch = "x86_64")]
fn simd_dot(level: Level, ty: GgmlType) -> Option<RawDot> {
    use GgmlType::*;
    let avx2: Option<RawDot> = match ty {
        F32 => Some(avx2::dot_f32),
        F16 => Some(avx2::dot_f16),
        BF16 => Some(avx2::dot_bf16),
        Q4_0 => Some(avx2::dot_q4_0),
        Q4_1 => Some(avx2::dot_q4_1),
        Q5_0 => Some(avx2::dot_q5_0),
        Q5_1 => Some(avx2::dot_q5_1),
        Q8_0 => Some(avx2::dot_q8_0),
        Q2_K => Some(avx2::dot_q2_k),
        Q3_K => Some(avx2::dot_q3_k),
        Q4_K => Some(avx2::dot_q4_k),
        Q5_K => Some(avx2::dot_q5_k),
        Q6_K => Some(avx2::dot_q6_k),
        IQ4_NL => Some(avx2::dot_iq4_nl),
        IQ4_XS => Some(avx2::dot_iq4_xs),
        _ => None,
    };
    match level {
        Level::Scalar => None,
        Level::Avx2 => avx2,
        Level::Avx512 => {
            let own: Option<RawDot> = match ty {
                F32 => Some(avx512::dot_f32),
                F16 => Some(avx512::dot_f16),
                BF16 => Some(avx512::dot_bf16),
                Q4_0 => Some(avx512::dot_q4_0),
                Q4_1 => Some(avx512::dot_q4_1),
                Q5_0 => Some(avx512::dot_q5_0),
                Q5_1 => Some(avx512::dot_q5_1),
                Q8_0 => Some(avx512::dot_q8_0),
                IQ4_NL => Some(avx512::dot_iq4_nl),
                _ => None,
            };
            own.or(avx2)
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn simd_dot4(level: Level, ty: GgmlType) -> Option<RawDot4> {
    use GgmlType::*;
    match (level, ty) {
        (Level::Scalar, _) => None,
        (_, Q4_K) => Some(avx2::dot4_q4_k),
        (Level::Avx512, Q4_0) => Some(avx512::dot4_q4_0),
        (Level::Avx512, Q4_1) => Some(avx512::dot4_q4_1),
        (Level::Avx512, Q5_0) => Some(avx512::dot4_q5_0),
        (Level::Avx512, Q5_1) => Some(avx512::dot4_q5_1),
        (Level::Avx512, Q8_0) => Some(avx512::dot4_q8_0),
        (Level::Avx512, IQ4_NL) => Some(avx512::dot4_iq4_nl),
        _ => None,
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn simd_dot4(_level: Level, _ty: GgmlType) -> Option<RawDot4> {
    None
}

#[cfg(target_arch = "x86_64")]
fn simd_gemm(level: Level, ty: GgmlType) -> Option<(RawPack, RawGemm)> {
    use tiles::{avx2, vnni};
    use GgmlType::*;
    let k: (RawPack, RawGemm) = match (level, ty) {
        (Level::Avx512, Q4_0) => (tiles::pack_q4_0, vnni::gemm_q4_0),
        (Level::Avx512, Q4_1) => (tiles::pack_q4_1, vnni::gemm_q4_1),
        (Level::Avx512, Q5_0) => (tiles::pack_q5_0, vnni::gemm_q5_0),
        (Level::Avx512, Q5_1) => (tiles::pack_q5_1, vnni::gemm_q5_1),
        (Level::Avx512, Q8_0) => (tiles::pack_q8_0, vnni::gemm_q8_0),
        (Level::Avx512, IQ4_NL) => (tiles::pack_iq4_nl, vnni::gemm_iq4_nl),
        (Level::Avx512, Q4_K) => (tiles::pack_q4_k, vnni::gemm_q4_k),
        // Q6_K's single-token kernel sums lane by lane (Q4_K's 4-token one per pair of
        // sub-blocks): the tiles of the same orders.
        (Level::Avx512, Q6_K) => (tiles::pack_q6_k, vnni::gemm_q6_k_lanes),
        (Level::Avx2, Q4_0) => (tiles::pack_q4_0, avx2::gemm_q4_0),
        (Level::Avx2, Q4_1) => (tiles::pack_q4_1, avx2::gemm_q4_1),
        (Level::Avx2, Q5_0) => (tiles::pack_q5_0, avx2::gemm_q5_0),
        (Level::Avx2, Q5_1) => (tiles::pack_q5_1, avx2::gemm_q5_1),
        (Level::Avx2, Q4_K) => (tiles::pack_q4_k, avx2::gemm_q4_k),
        (Level::Avx2, Q6_K) => (tiles::pack_q6_k, avx2::gemm_q6_k_lanes),
        _ => return None,
    };
    Some(k)
}

#[cfg(not(target_arch = "x86_64"))]
fn simd_gemm(_level: Level, _ty: GgmlType) -> Option<(RawPack, RawGemm)> {
    None
}

/// Whether the kernels for `ty` at `level` read the prepared activation arrays (the AVX-512
/// single-token kernels and every 32-element tile kernel).
fn uses_prepared(level: Level, ty: GgmlType) -> bool {
    use GgmlType::*;
    (level == Level::Avx512 && matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | IQ4_NL))
        || (level == Level::Avx2 && matches!(ty, Q4_0 | Q4_1 | Q5_0 | Q5_1))
}

#[cfg(not(target_arch = "x86_64"))]
fn simd_dot(_level: Level, _ty: GgmlType) -> Option<RawDot> {
    None
}

impl DotKernel {
    /// The kernel for weights of type `ty` at `level`.
    ///
    /// # Panics
    /// If this CPU cannot run `level` or `ty` is not a supported weight type.
    pub fn new(level: Level, ty: GgmlType) -> DotKernel {
        assert!(level.is_available(), "{level} is not available on this CPU");
        assert!(
            formats::is_supported(ty),
            "{ty} is not a supported weight type"
        );
        DotKernel {
            ty,
            simd: simd_dot(level, ty),
            level,
            prepared: uses_prepared(level, ty),
            simd4: simd_dot4(level, ty),
            gemm: simd_gemm(level, ty),
            pads: false,
        }
    }

    /// The kernel for a matrix multiply of `n_tokens` tokens with weights of type `ty` at
    /// `level`. It differs from [`DotKernel::new`] where llama.cpp sums in another order for
    /// batches: Q6_K, whose dots llama.cpp sums block by block in integers from
    /// [`TILED_MIN_BATCH`] tokens on, and lane by lane below that; and Q4_K, which it sums per
    /// pair of sub-blocks 4 tokens at a time and per block below 4 tokens. Following it keeps the
    /// logits within a few ulps of the reference, which Gemma-class models need.
    ///
    /// # Panics
    /// As [`DotKernel::new`].
    pub fn for_batch(level: Level, ty: GgmlType, n_tokens: usize) -> DotKernel {
        let mut k = DotKernel::new(level, ty);
        // Below those sizes llama.cpp dots one token at a time (Q4_K: the repacked `gemv`, block
        // by block; Q6_K: `vec_dot`, lane by lane); these 4-token and tile kernels keep that
        // order (the tiles read the packing of `new`, so one matrix packed ahead of time serves
        // every batch size), and so give every token its bits alone at any batch size.
        #[cfg(target_arch = "x86_64")]
        match ty {
            _ if level == Level::Scalar => {}
            GgmlType::Q4_K if n_tokens < 4 => {
                k.simd4 = Some(avx2::dot4_q4_k_gemv);
                k.gemm = Some(if level == Level::Avx512 {
                    (tiles::pack_q4_k, tiles::vnni::gemm_q4_k_gemv)
                } else {
                    (tiles::pack_q4_k, tiles::avx2::gemm_q4_k_gemv)
                });
                k.pads = true;
            }
            GgmlType::Q6_K if n_tokens < TILED_MIN_BATCH => {
                k.simd4 = Some(avx2::dot4_q6_k);
                k.pads = true;
            }
            _ => {}
        }
        #[cfg(target_arch = "x86_64")]
        if ty == GgmlType::Q6_K && level != Level::Scalar {
            // `new` gives the lane-order kernel, which has no 4-token variant. The tiled order's
            // tile reads the same packing.
            if n_tokens >= TILED_MIN_BATCH {
                k.simd = Some(avx2::dot_q6_k_tiled);
                k.simd4 = Some(avx2::dot4_q6_k_tiled);
                k.gemm = Some(if level == Level::Avx512 {
                    (tiles::pack_q6_k, tiles::vnni::gemm_q6_k)
                } else {
                    (tiles::pack_q6_k, tiles::avx2::gemm_q6_k)
                });
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = n_tokens;
        k
    }

    /// The kernel for `ty` at [`active_level`].
    pub fn active(ty: GgmlType) -> DotKernel {
        DotKernel::new(active_level(), ty)
    }

    /// Whether a SIMD kernel (rather than the scalar reference) runs.
    pub fn is_simd(&self) -> bool {
        self.simd.is_some()
    }

    /// The level this kernel was made for.
    pub fn level(&self) -> Level {
        self.level
    }

    /// The weight type.
    pub fn weight_type(&self) -> GgmlType {
        self.ty
    }

    /// The zero point the tile kernel subtracts from this 32-element type's unsigned codes (the
    /// prepared tile layout carries each 4 quants' sum times it), 0 for the others.
    pub(crate) fn zero_point(&self) -> i32 {
        use GgmlType::*;
        match self.ty {
            Q4_0 => 8,
            Q5_0 => 16,
            Q8_0 | IQ4_NL => 128,
            _ => 0,
        }
    }

    /// Whether the kernel needs [`Activations`] prepared for it (rather than plain bytes).
    pub fn wants_prepared(&self) -> bool {
        self.prepared
    }

    /// Whether [`Activations`] for this kernel end in a padded tile when the last group of tokens
    /// is large enough (see [`Activations::tiles`]).
    pub(crate) fn pads_tiles(&self) -> bool {
        self.gemm.is_some() && (self.prepared || self.pads)
    }

    /// Dot of one weight row (`n` elements) with one activation row quantized to
    /// [`formats::activation_type`] of the weight type (prepared by [`Activations`] for this
    /// kernel when [`DotKernel::wants_prepared`]).
    ///
    /// # Panics
    /// If the rows are shorter than `n` elements, `n` is not whole blocks, or the row lacks the
    /// prepared arrays this kernel needs.
    #[inline]
    pub fn dot(&self, w: &[u8], act: &ActRow<'_>, n: usize) -> f32 {
        match self.simd {
            // SAFETY: `new` only stores a kernel whose level this CPU supports; the kernel itself
            // checks the slice lengths.
            Some(f) => unsafe { f(w, act, n) },
            None => formats::vec_dot(self.ty, w, act.bytes, n),
        }
    }

    /// Whether [`DotKernel::dot4`] unpacks the weights once for the 4 tokens (rather than
    /// running [`DotKernel::dot`] 4 times).
    pub fn has_dot4(&self) -> bool {
        self.simd4.is_some()
    }

    /// The dots of one weight row with 4 tokens' activation rows: `[dot(w, acts[k])]`.
    ///
    /// # Panics
    /// As [`DotKernel::dot`].
    #[inline]
    pub fn dot4(&self, w: &[u8], acts: [&ActRow<'_>; 4], n: usize) -> [f32; 4] {
        match self.simd4 {
            // SAFETY: as in `dot`.
            Some(f) => unsafe { f(w, acts, n) },
            None => acts.map(|a| self.dot(w, a, n)),
        }
    }

    /// Whether [`DotKernel::gemm`] has a tile kernel (rather than running [`DotKernel::dot4`]).
    /// Every kernel of a type packs its rows alike, so one matrix packed ahead of time
    /// ([`crate::matmul::pack_matrix`]) serves them all.
    pub fn has_gemm(&self) -> bool {
        self.gemm.is_some()
    }

    /// Bytes [`DotKernel::pack`] makes of [`GEMM_ROWS`] rows of `n` elements (0 without a tile
    /// kernel), without packing any.
    pub(crate) fn packed_len(&self, n: usize) -> usize {
        #[cfg(target_arch = "x86_64")]
        if self.gemm.is_some() {
            return tiles::packed_len(self.ty, n);
        }
        let _ = n;
        0
    }

    /// Packs [`GEMM_ROWS`] weight rows of `n` elements into `packed` for [`DotKernel::gemm`]
    /// (the tile kernels' layout: codes unpacked and transposed, scales converted), once for
    /// many token tiles. Does nothing for kernels without a tile kernel.
    ///
    /// # Panics
    /// If a row is shorter than `n` elements or `n` is not whole blocks.
    pub fn pack(&self, w: [&[u8]; GEMM_ROWS], n: usize, packed: &mut Vec<u8>) {
        if let Some((pack, _)) = self.gemm {
            // SAFETY: as in `dot`.
            unsafe { pack(w, n, packed) }
        }
    }

    /// The dots of [`GEMM_ROWS`] weight rows `w`, packed by [`DotKernel::pack`] into `packed`,
    /// with the [`GEMM_TOKENS`] tokens of `tile`: `out[t][r] = dot4(w[r], tile.rows[t])` bit
    /// for bit (the 4-token kernel's order). `packed` may go on past these rows with the next
    /// group's (a whole matrix packed ahead of time), which the kernel then prefetches.
    ///
    /// # Panics
    /// As [`DotKernel::dot`], or if `packed` or `tile` was not made for this kernel.
    #[inline]
    pub fn gemm(
        &self,
        w: [&[u8]; GEMM_ROWS],
        packed: &[u8],
        tile: &ActTile<'_>,
        n: usize,
    ) -> [[f32; GEMM_ROWS]; GEMM_TOKENS] {
        match self.gemm {
            // SAFETY: as in `dot`.
            Some((_, gemm)) => unsafe { gemm(packed, tile, n) },
            None => {
                let mut out = [[0f32; GEMM_ROWS]; GEMM_TOKENS];
                let r = &tile.rows;
                for (k, w) in w.iter().enumerate() {
                    for t0 in [0, 4] {
                        let v = self.dot4(w, [&r[t0], &r[t0 + 1], &r[t0 + 2], &r[t0 + 3]], n);
                        for (j, v) in v.into_iter().enumerate() {
                            out[t0 + j][k] = v;
                        }
                    }
                }
                out
            }
        }
    }
}

/// Weight rows per [`DotKernel::gemm`] tile.
pub const GEMM_ROWS: usize = 8;
/// Tokens per [`DotKernel::gemm`] tile.
pub const GEMM_TOKENS: usize = 8;

/// Activation quantization to one activation type at one level.
#[derive(Clone, Copy)]
pub struct QuantKernel {
    act: GgmlType,
    simd: Option<RawQuant>,
}

impl std::fmt::Debug for QuantKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantKernel")
            .field("act", &self.act)
            .field("simd", &self.simd.is_some())
            .finish()
    }
}

impl QuantKernel {
    /// The quantizer to activation type `act` (F32, Q8_0, Q8_1 or Q8_K) at `level`.
    ///
    /// # Panics
    /// If this CPU cannot run `level`.
    pub fn new(level: Level, act: GgmlType) -> QuantKernel {
        assert!(level.is_available(), "{level} is not available on this CPU");
        #[cfg(target_arch = "x86_64")]
        let simd: Option<RawQuant> = match (level, act) {
            (Level::Scalar, _) => None,
            (_, GgmlType::Q8_0) => Some(avx2::quantize_q8_0),
            (_, GgmlType::Q8_1) => Some(avx2::quantize_q8_1),
            (_, GgmlType::Q8_K) => Some(avx2::quantize_q8_k),
            _ => None,
        };
        #[cfg(not(target_arch = "x86_64"))]
        let simd = None;
        QuantKernel { act, simd }
    }

    /// Whether a SIMD quantizer (rather than the scalar reference) runs.
    pub fn is_simd(&self) -> bool {
        self.simd.is_some()
    }

    /// Quantizes `src` into `dst` (exactly [`formats::activation_row_bytes`] long).
    #[inline]
    pub fn quantize(&self, src: &[f32], dst: &mut [u8]) {
        match self.simd {
            // SAFETY: `new` only stores a kernel whose level this CPU supports; the kernel itself
            // checks the slice lengths.
            Some(f) => unsafe { f(src, dst) },
            None => formats::quantize_activations(self.act, src, dst),
        }
    }
}

/// One token's quantized activations as the dot kernels read them.
///
/// `bytes` is the row in the activation type's standard layout (`formats`); the AVX-512 kernels of
/// the 32-element types also read side arrays made from it by [`Activations`]: the quants
/// contiguous (`qs`, so two blocks are one 64-byte load), their negations (`nq`, which lets
/// `vpdpbusd` subtract a weight type's zero point exactly in integers), and the block scales as
/// f32 (`d`, and `s` for Q8_1). Empty side arrays mean "not prepared".
#[derive(Clone, Copy, Debug)]
// Only the x86 kernels read the side arrays so far.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct ActRow<'a> {
    pub bytes: &'a [u8],
    qs: &'a [i8],
    nq: &'a [i8],
    d: &'a [f32],
    s: &'a [f32],
}

impl<'a> ActRow<'a> {
    /// A row of standard-layout bytes without prepared arrays (enough for every kernel whose
    /// [`DotKernel::wants_prepared`] is false).
    pub fn plain(bytes: &'a [u8]) -> ActRow<'a> {
        ActRow {
            bytes,
            qs: &[],
            nq: &[],
            d: &[],
            s: &[],
        }
    }
}

/// [`GEMM_TOKENS`] consecutive tokens' activations for [`DotKernel::gemm`]: their rows, and
/// for the kernels with a tile kernel the tokens interleaved block by block, so the kernel walks
/// one pointer. Prepared Q8_0/Q8_1: for block `b` and token `t`, the 32 quants at
/// `q8[256 * b + 32 * t..]`, the sums of each 4 of them times minus the weight type's zero point
/// (`DotKernel::zero_point`) at `ls8[64 * b + 8 * t..]` (i32), and the scales at `d8[8 * b + t]` (`s8` likewise). Q8_K: the
/// block itself at `k8[(8 * b + t) * 292..]` and its 8 sub-block sums (32 quants each) at
/// `ksub8[64 * b + 8 * t..]`, and -32 times its 16 sums of 16 quants (Q6_K's code offset) at
/// `kbias16[128 * b + 16 * t..]`.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub struct ActTile<'a> {
    pub rows: [ActRow<'a>; GEMM_TOKENS],
    q8: &'a [i8],
    ls8: &'a [i32],
    d8: &'a [f32],
    s8: &'a [f32],
    k8: &'a [u8],
    ksub8: &'a [i32],
    kbias16: &'a [i32],
}

/// Quantized activations of a batch of tokens, laid out for one [`DotKernel`]; reusable across
/// calls (buffers only grow).
#[derive(Debug, Default)]
pub struct Activations {
    bytes: Vec<u8>,
    qs: Vec<i8>,
    nq: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
    /// Each whole group of [`GEMM_TOKENS`] tokens interleaved block by block ([`ActTile`]).
    q8: Vec<i8>,
    ls8: Vec<i32>,
    d8: Vec<f32>,
    s8: Vec<f32>,
    k8: Vec<u8>,
    ksub8: Vec<i32>,
    kbias16: Vec<i32>,
    row_bytes: usize,
    n: usize,
    n_tokens: usize,
    prepared: bool,
    /// Q8_K rows with the tile layout (`k8`, `ksub8`).
    tiled_k: bool,
    /// The zero point `ls8` is made for.
    zero_point: i32,
    /// Tokens in the tile layout (whole tiles, the last maybe padded).
    tiled_tokens: usize,
}

/// The fewest tokens a padded last tile holds (see [`Activations::tiles`]).
pub const PADDED_TILE_MIN: usize = 5;

/// Below this many activation elements, quantizing on one thread beats waking the pool.
const PARALLEL_QUANTIZE_MIN: usize = 16 * 1024;

impl Activations {
    /// Empty buffers.
    pub fn new() -> Activations {
        Activations::default()
    }

    /// Quantizes `n_tokens` rows of `n` activations (`x`, row-major) for `kernel`: to the
    /// activation type of its weight type, at its level, plus the prepared arrays if it wants them.
    /// Spreads the work over `pool` when there is enough of it.
    ///
    /// # Panics
    /// If `x` is shorter than `n * n_tokens` or `n` is not whole activation blocks.
    pub fn quantize(
        &mut self,
        kernel: &DotKernel,
        x: &[f32],
        n: usize,
        n_tokens: usize,
        pool: &crate::ThreadPool,
    ) {
        assert!(
            x.len() >= n * n_tokens,
            "activations: {} < {n} x {n_tokens}",
            x.len()
        );
        let act = formats::activation_type(kernel.ty).expect("DotKernel checked the type");
        let quant = QuantKernel::new(kernel.level, act);
        self.reset(act, n, n_tokens, kernel);
        let rb = self.row_bytes;
        let dst = crate::pool::SharedMut(self.bytes.as_mut_ptr());
        let one = |t: usize| {
            // SAFETY: `bytes` holds n_tokens rows of `rb` bytes (resized by `reset`) and each
            // token's row is written by exactly one call.
            let row = unsafe { std::slice::from_raw_parts_mut(dst.at(t * rb), rb) };
            quant.quantize(&x[t * n..(t + 1) * n], row);
        };
        if n_tokens > 1 && n * n_tokens >= PARALLEL_QUANTIZE_MIN && pool.n_threads() > 1 {
            pool.for_each_chunk(n_tokens, 1, &|ts| ts.for_each(one));
        } else {
            (0..n_tokens).for_each(one);
        }
        self.finish(act);
    }

    /// Takes already quantized standard-layout rows (`n_tokens` rows of `n` elements of the
    /// kernel's activation type) and prepares them for `kernel` (tests, and callers that quantize
    /// themselves).
    ///
    /// # Panics
    /// If `bytes` is not exactly `n_tokens` rows.
    pub fn from_quantized(kernel: &DotKernel, bytes: &[u8], n: usize, n_tokens: usize) -> Self {
        let act = formats::activation_type(kernel.ty).expect("DotKernel checked the type");
        let mut a = Activations::new();
        a.reset(act, n, n_tokens, kernel);
        assert_eq!(bytes.len(), a.bytes.len(), "from_quantized: row bytes");
        a.bytes.copy_from_slice(bytes);
        a.finish(act);
        a
    }

    /// Number of token rows.
    pub fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// The row of token `t`.
    ///
    /// # Panics
    /// If `t >= n_tokens`.
    pub fn row(&self, t: usize) -> ActRow<'_> {
        assert!(t < self.n_tokens, "token {t} of {}", self.n_tokens);
        let bytes = &self.bytes[t * self.row_bytes..(t + 1) * self.row_bytes];
        if !self.prepared {
            return ActRow::plain(bytes);
        }
        let (n, nb) = (self.n, self.n / 32);
        ActRow {
            bytes,
            qs: &self.qs[t * n..(t + 1) * n],
            nq: &self.nq[t * n..(t + 1) * n],
            d: &self.d[t * nb..(t + 1) * nb],
            s: &self.s[t * nb..(t + 1) * nb],
        }
    }

    /// How many tiles of [`GEMM_TOKENS`] tokens [`Activations::tile`] gives: the whole groups
    /// of tokens, and for the kernels that give each token the same bits at any batch size (the
    /// 32-element types, the K-quants in the single-token order) a last, padded group of at least
    /// [`PADDED_TILE_MIN`] tokens.
    pub fn tiles(&self) -> usize {
        self.tiled_tokens / GEMM_TOKENS
    }

    /// Tokens `8g..8g + 8` as a tile; in a padded last tile the tokens past the batch repeat its
    /// last token (their results are to be dropped).
    ///
    /// # Panics
    /// If `g >= self.tiles()`.
    pub fn tile(&self, g: usize) -> ActTile<'_> {
        let t0 = g * GEMM_TOKENS;
        assert!(g < self.tiles(), "tile {g} of {} tokens", self.n_tokens);
        let last = self.n_tokens - 1;
        let mut tile = ActTile {
            rows: std::array::from_fn(|t| self.row((t0 + t).min(last))),
            q8: &[],
            ls8: &[],
            d8: &[],
            s8: &[],
            k8: &[],
            ksub8: &[],
            kbias16: &[],
        };
        if self.prepared {
            let per = self.n / 32 * GEMM_TOKENS;
            tile.q8 = &self.q8[g * per * 32..(g + 1) * per * 32];
            tile.ls8 = &self.ls8[g * per * 8..(g + 1) * per * 8];
            tile.d8 = &self.d8[g * per..(g + 1) * per];
            tile.s8 = &self.s8[g * per..(g + 1) * per];
        }
        if self.tiled_k {
            let per = self.n / 256 * GEMM_TOKENS;
            tile.k8 = &self.k8[g * per * Q8_K_A..(g + 1) * per * Q8_K_A];
            tile.ksub8 = &self.ksub8[g * per * 8..(g + 1) * per * 8];
            tile.kbias16 = &self.kbias16[g * per * 16..(g + 1) * per * 16];
        }
        tile
    }

    fn reset(&mut self, act: GgmlType, n: usize, n_tokens: usize, kernel: &DotKernel) {
        self.row_bytes = formats::activation_row_bytes(act, n);
        self.n = n;
        self.n_tokens = n_tokens;
        self.prepared = kernel.prepared && matches!(act, GgmlType::Q8_0 | GgmlType::Q8_1);
        self.tiled_k = kernel.has_gemm() && act == GgmlType::Q8_K;
        self.zero_point = kernel.zero_point();
        self.bytes.resize(self.row_bytes * n_tokens, 0);
        // A last group of 5 to 7 tokens runs faster as a padded tile than 4 tokens at a time
        // and then one by one (each a pass over the weights). Where the kernels give every
        // token the same bits at any batch size, padding changes no result.
        let rest = n_tokens % GEMM_TOKENS;
        let whole = if kernel.pads_tiles() && rest >= PADDED_TILE_MIN {
            n_tokens + GEMM_TOKENS - rest
        } else {
            n_tokens - rest
        };
        self.tiled_tokens = whole;
        if self.tiled_k {
            self.k8.resize(n / 256 * whole * Q8_K_A, 0);
            self.ksub8.resize(n / 32 * whole, 0);
            self.kbias16.resize(n / 16 * whole, 0);
        }
        if self.prepared {
            self.qs.resize(n * n_tokens, 0);
            self.nq.resize(n * n_tokens, 0);
            self.d.resize(n / 32 * n_tokens, 0.0);
            self.s.resize(n / 32 * n_tokens, 0.0);
            self.q8.resize(n * whole, 0);
            self.ls8.resize(n / 4 * whole, 0);
            self.d8.resize(n / 32 * whole, 0.0);
            self.s8.resize(n / 32 * whole, 0.0);
        }
    }

    /// Builds the side arrays this layout wants from the standard rows.
    fn finish(&mut self, act: GgmlType) {
        if self.prepared {
            self.prepare(act);
        }
        if self.tiled_k {
            self.tile_q8_k();
        }
    }

    /// The Q8_K tile layout: whole groups of tokens interleaved block by block, with the sums of
    /// each 32 quants (from the 16-quant sums the blocks carry) and Q6_K's offset terms.
    fn tile_q8_k(&mut self) {
        let nb = self.n / 256;
        let whole = self.ksub8.len() / (8 * nb).max(1);
        for t in 0..whole {
            let (g, k) = (t / GEMM_TOKENS, t % GEMM_TOKENS);
            for b in 0..nb {
                let slot = (g * nb + b) * GEMM_TOKENS + k;
                // A padded tile repeats the last token.
                let from = t.min(self.n_tokens - 1);
                let src = &self.bytes[(from * nb + b) * Q8_K_A..][..Q8_K_A];
                self.k8[slot * Q8_K_A..][..Q8_K_A].copy_from_slice(src);
                let bsum = |j: usize| {
                    i16::from_le_bytes([src[Q8K_BSUMS + 2 * j], src[Q8K_BSUMS + 2 * j + 1]]) as i32
                };
                for (j, sum) in self.ksub8[slot * 8..][..8].iter_mut().enumerate() {
                    *sum = bsum(2 * j) + bsum(2 * j + 1);
                }
                for (j, bias) in self.kbias16[slot * 16..][..16].iter_mut().enumerate() {
                    *bias = -32 * bsum(j);
                }
            }
        }
    }

    /// Fills the side arrays from the standard rows (a few bytes per element, once per call).
    fn prepare(&mut self, act: GgmlType) {
        let (block, qs_off) = match act {
            GgmlType::Q8_0 => (34, 2),
            GgmlType::Q8_1 => (36, 4),
            _ => unreachable!("only Q8_0/Q8_1 rows are prepared"),
        };
        let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).to_f32();
        let blocks = self.bytes.chunks_exact(block);
        let dst = self
            .qs
            .chunks_exact_mut(32)
            .zip(self.nq.chunks_exact_mut(32))
            .zip(self.d.iter_mut().zip(self.s.iter_mut()));
        for (blk, ((qs, nq), (d, s))) in blocks.zip(dst) {
            *d = f16(blk);
            *s = if act == GgmlType::Q8_1 {
                f16(&blk[2..])
            } else {
                0.0
            };
            // Fixed-size zips: the compiler turns these into a few vector moves.
            let src = &blk[qs_off..qs_off + 32];
            for ((q, n), &b) in qs.iter_mut().zip(nq.iter_mut()).zip(src) {
                *q = b as i8;
                // Quants are in -127..=127 (quantizer output), so negation cannot overflow;
                // wrapping keeps arbitrary caller bytes from panicking.
                *n = (b as i8).wrapping_neg();
            }
        }
        // The tile layout: whole groups of tokens interleaved block by block.
        let nb = self.n / 32;
        let whole = self.d8.len() / nb.max(1);
        for t in 0..whole {
            let (g, k) = (t / GEMM_TOKENS, t % GEMM_TOKENS);
            // A padded tile repeats the last token.
            let from = t.min(self.n_tokens - 1);
            for b in 0..nb {
                let slot = (g * nb + b) * GEMM_TOKENS + k;
                let src = &self.qs[(from * nb + b) * 32..][..32];
                self.q8[slot * 32..][..32].copy_from_slice(src);
                for (ls, q4) in self.ls8[slot * 8..][..8]
                    .iter_mut()
                    .zip(src.chunks_exact(4))
                {
                    *ls = -self.zero_point * q4.iter().map(|&q| q as i32).sum::<i32>();
                }
                self.d8[slot] = self.d[from * nb + b];
                self.s8[slot] = self.s[from * nb + b];
            }
        }
    }
}

#[cfg(test)]
mod tests;
