//! Run-time selection of the SIMD kernels.
//!
//! The best instruction set is detected once ([`detected_level`]); [`active_level`] is what
//! [`crate::matmul`] uses and can be lowered with [`set_level`] (for benchmarks and A/B runs).
//! Tests should not change the process-wide level (tests run in parallel); they pass a [`Level`]
//! explicitly to [`DotKernel::new`] / [`QuantKernel::new`] / [`crate::matmul::matmul_at`].
//!
//! | level | needs | kernels |
//! |---|---|---|
//! | [`Level::Avx512`] | AVX-512 F/BW/VL/VNNI + AVX2/FMA/F16C | `avx512.rs` (VNNI `vpdpbusd`/`vpdpwssd`, zmm floats), the rest from `avx2.rs` |
//! | [`Level::Avx2`] | AVX2, FMA, F16C | `avx2.rs` (`maddubs`/`madd`) |
//! | [`Level::Scalar`] | - | [`crate::formats::vec_dot`] and [`crate::formats::quantize_activations`] |
//!
//! Non-x86 targets build only the scalar level; a NEON level would slot in as another variant.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

use crate::formats;
use gguf::GgmlType;
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

/// The level [`crate::matmul`] uses: the detected one unless lowered with [`set_level`].
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
type RawDot = unsafe fn(&[u8], &[u8], usize) -> f32;
/// A SIMD activation quantizer (same contract as [`RawDot`]).
type RawQuant = unsafe fn(&[f32], &mut [u8]);

/// The dot product of one weight type at one level: a SIMD kernel where one exists, else the
/// scalar reference.
#[derive(Clone, Copy)]
pub struct DotKernel {
    ty: GgmlType,
    simd: Option<RawDot>,
    level: Level,
}

impl std::fmt::Debug for DotKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DotKernel")
            .field("ty", &self.ty)
            .field("level", &self.level)
            .field("simd", &self.simd.is_some())
            .finish()
    }
}

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
                Q4_K => Some(avx512::dot_q4_k),
                Q6_K => Some(avx512::dot_q6_k),
                IQ4_NL => Some(avx512::dot_iq4_nl),
                _ => None,
            };
            own.or(avx2)
        }
    }
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
        }
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

    /// Dot of one weight row (`n` elements) with one activation row quantized to
    /// [`formats::activation_type`] of the weight type.
    ///
    /// # Panics
    /// If the rows are shorter than `n` elements or `n` is not whole blocks.
    #[inline]
    pub fn dot(&self, w: &[u8], act: &[u8], n: usize) -> f32 {
        match self.simd {
            // SAFETY: `new` only stores a kernel whose level this CPU supports; the kernel itself
            // checks the slice lengths.
            Some(f) => unsafe { f(w, act, n) },
            None => formats::vec_dot(self.ty, w, act, n),
        }
    }
}

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

#[cfg(test)]
mod tests;
