//! The key/value cache: rows for every layer and position, allocated once for the whole context
//! (zeroed pages, so memory is committed only as the context fills).
//!
//! Keys and values are each stored as a [`KvType`]: f16 (the default, what the reference tests
//! hold to llama.cpp bit for bit), or ggml Q8_0 blocks, 34 bytes per 32 values instead of 64, as
//! llama.cpp's `--cache-type-k q8_0 --cache-type-v q8_0` and Ollama's `OLLAMA_KV_CACHE_TYPE`.
//! Like llama.cpp, a quantized cache holds its rows rotated by a Walsh-Hadamard matrix
//! ([`KvCache::k_rotation`], [`KvCache::v_rotation`]; the forward pass applies them).

use crate::EngineError;
use gguf::GgmlType;
use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};
use kernels::attention::KvRows;
use kernels::formats::QK32;
use kernels::simd::{active_level, QuantKernel};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// How the cache stores keys or values.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvType {
    /// IEEE half precision, 2 bytes a value.
    #[default]
    F16,
    /// ggml Q8_0: blocks of 32 values as an f16 scale and 32 `i8` (34 bytes), quantized like
    /// llama.cpp's x86 `quantize_row_q8_0`. Needs head sizes that are multiples of 32.
    Q8_0,
}

impl KvType {
    /// Every type.
    pub const ALL: [KvType; 2] = [KvType::F16, KvType::Q8_0];

    /// The name llama.cpp's `--cache-type-k` takes and llama-bench's `type_k` reports.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }

    /// Values per block: a head must be whole blocks.
    pub fn block_size(self) -> usize {
        match self {
            KvType::F16 => 1,
            KvType::Q8_0 => QK32,
        }
    }

    /// Whether values lose more than f16's rounding (and so are stored rotated).
    pub fn is_quantized(self) -> bool {
        self != KvType::F16
    }

    /// Bytes of `n` values (whole blocks).
    pub fn row_bytes(self, n: usize) -> usize {
        match self {
            KvType::F16 => 2 * n,
            KvType::Q8_0 => n / QK32 * GgmlType::Q8_0.type_size(),
        }
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KvType {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<KvType, EngineError> {
        KvType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| EngineError::UnknownKvType(s.to_string()))
    }
}

/// One layer's keys or values.
enum Rows {
    /// `n_ctx * kv_dim` f16 bit patterns.
    F16(Vec<u16>),
    /// `n_ctx` rows of `kv_dim / 32` Q8_0 blocks.
    Q8_0(Vec<u8>),
}

impl Rows {
    fn new(ty: KvType, values: usize) -> Rows {
        match ty {
            KvType::F16 => Rows::F16(vec![0; values]),
            KvType::Q8_0 => Rows::Q8_0(vec![0; KvType::Q8_0.row_bytes(values)]),
        }
    }

    fn as_kv_rows(&self) -> KvRows<'_> {
        match self {
            Rows::F16(r) => KvRows::F16(r),
            Rows::Q8_0(r) => KvRows::Q8_0(r),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Rows::F16(r) => 2 * r.len(),
            Rows::Q8_0(r) => r.len(),
        }
    }

    /// Copies values `values` (whole positions) from `src`, of the same type, to the same place.
    fn copy_from(&mut self, src: &Rows, values: Range<usize>) {
        match (self, src) {
            (Rows::F16(d), Rows::F16(s)) => d[values.clone()].copy_from_slice(&s[values]),
            (Rows::Q8_0(d), Rows::Q8_0(s)) => {
                let bytes =
                    KvType::Q8_0.row_bytes(values.start)..KvType::Q8_0.row_bytes(values.end);
                d[bytes.clone()].copy_from_slice(&s[bytes]);
            }
            _ => panic!("KvCache::copy_positions: the caches' KV types differ"),
        }
    }

    /// Stores `src` (whole positions) from value `at`.
    fn store(&mut self, at: usize, src: &[f32], q8: &QuantKernel) {
        match self {
            Rows::F16(r) => r[at..at + src.len()]
                .reinterpret_cast_mut::<f16>()
                .convert_from_f32_slice(src),
            Rows::Q8_0(r) => {
                let bytes = KvType::Q8_0.row_bytes(at)..KvType::Q8_0.row_bytes(at + src.len());
                q8.quantize(src, &mut r[bytes]);
            }
        }
    }
}

/// llama.cpp rotates the rows of a quantized cache only for head sizes that are multiples of this,
/// and rotates values in runs of this many.
const ROTATION_MIN: usize = 64;

pub struct KvCache {
    n_ctx: usize,
    head_dim: usize,
    kv_dim: usize,
    type_k: KvType,
    type_v: KvType,
    /// Per layer.
    k: Vec<Rows>,
    v: Vec<Rows>,
    /// Rounds Q8_0 rows as llama.cpp's CPU backend stores them (its `from_float`).
    q8: QuantKernel,
}

impl KvCache {
    /// A cache of `n_ctx` positions for `n_layer` layers of `n_head_kv` heads of `head_dim`
    /// values, keys stored as `type_k` and values as `type_v`. Fails if a head is not whole
    /// blocks of a type.
    pub fn new(
        n_layer: usize,
        n_ctx: usize,
        n_head_kv: usize,
        head_dim: usize,
        type_k: KvType,
        type_v: KvType,
    ) -> Result<KvCache, EngineError> {
        for ty in [type_k, type_v] {
            if !head_dim.is_multiple_of(ty.block_size()) {
                return Err(EngineError::KvTypeHeadDim {
                    ty,
                    head_dim,
                    block: ty.block_size(),
                });
            }
        }
        let kv_dim = n_head_kv * head_dim;
        let alloc = |ty| {
            (0..n_layer)
                .map(|_| Rows::new(ty, n_ctx * kv_dim))
                .collect()
        };
        Ok(KvCache {
            n_ctx,
            head_dim,
            kv_dim,
            type_k,
            type_v,
            k: alloc(type_k),
            v: alloc(type_v),
            q8: QuantKernel::new(active_level(), GgmlType::Q8_0),
        })
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    pub fn type_k(&self) -> KvType {
        self.type_k
    }

    pub fn type_v(&self) -> KvType {
        self.type_v
    }

    /// With quantized keys (and heads of a multiple of 64 values), the order `n` of the
    /// Walsh-Hadamard rotation ([`kernels::attention::hadamard`]) that queries and keys take
    /// before the keys are stored: the largest power of two dividing the head size, as llama.cpp
    /// (`attn_rot_k`). `q . k` is unchanged, and quantizing the rotated keys loses far less.
    pub fn k_rotation(&self) -> Option<usize> {
        (self.type_k.is_quantized() && self.head_dim.is_multiple_of(ROTATION_MIN))
            .then(|| 1 << self.head_dim.trailing_zeros())
    }

    /// With quantized values (and heads of a multiple of 64 values), the order of the rotation
    /// values take before they are stored and the attention output takes after (the matrix is
    /// its own inverse): 64, as llama.cpp (`attn_rot_v`).
    pub fn v_rotation(&self) -> Option<usize> {
        (self.type_v.is_quantized() && self.head_dim.is_multiple_of(ROTATION_MIN))
            .then_some(ROTATION_MIN)
    }

    /// Bytes of keys and values for the whole context, every layer (what the cache occupies once
    /// the context is full).
    pub fn bytes(&self) -> usize {
        self.k.iter().chain(&self.v).map(Rows::bytes).sum()
    }

    /// Stores the key and value rows of consecutive positions from `pos` (`kv_dim` values per
    /// position), rounded to the cache's types.
    ///
    /// # Panics
    /// If `k` and `v` differ in length, are not whole rows, or run past the context.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        assert!(
            k.len() == v.len() && k.len().is_multiple_of(self.kv_dim),
            "KvCache::store: {} keys, {} values in rows of {}",
            k.len(),
            v.len(),
            self.kv_dim
        );
        let at = pos * self.kv_dim;
        self.k[layer].store(at, k, &self.q8);
        self.v[layer].store(at, v, &self.q8);
    }

    /// Copies the keys and values of `positions` in every layer from `src`, a cache of the same
    /// model and types (a shared prompt prefix, computed once).
    ///
    /// # Panics
    /// If the caches' layers, head layout or types differ, or `positions` runs past either's
    /// context.
    pub fn copy_positions(&mut self, src: &KvCache, positions: Range<usize>) {
        assert!(
            (self.k.len(), self.kv_dim, self.type_k, self.type_v)
                == (src.k.len(), src.kv_dim, src.type_k, src.type_v),
            "KvCache::copy_positions: the caches differ in layout or types"
        );
        assert!(
            positions.end <= self.n_ctx.min(src.n_ctx),
            "KvCache::copy_positions: positions {positions:?} past the context"
        );
        let values = positions.start * self.kv_dim..positions.end * self.kv_dim;
        for (d, s) in self
            .k
            .iter_mut()
            .zip(&src.k)
            .chain(self.v.iter_mut().zip(&src.v))
        {
            d.copy_from(s, values.clone());
        }
    }

    /// The K and V rows of one layer (`n_ctx` positions of `kv_dim` values each).
    pub fn layer(&self, layer: usize) -> (KvRows<'_>, KvRows<'_>) {
        (self.k[layer].as_kv_rows(), self.v[layer].as_kv_rows())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernels::formats;

    #[test]
    fn types_parse_by_their_llama_cpp_names() {
        for ty in KvType::ALL {
            assert_eq!(ty.name().parse::<KvType>().unwrap(), ty);
            assert_eq!(ty.to_string(), ty.name());
        }
        let err = "q4_0".parse::<KvType>().unwrap_err().to_string();
        assert!(err.contains("q4_0") && err.contains("f16, q8_0"), "{err}");
        assert_eq!(KvType::default(), KvType::F16);
    }

    #[test]
    fn q8_0_takes_34_bytes_per_32_values() {
        let (layers, ctx, heads, hd) = (3, 10, 2, 64);
        let f16 = KvCache::new(layers, ctx, heads, hd, KvType::F16, KvType::F16).unwrap();
        let q8 = KvCache::new(layers, ctx, heads, hd, KvType::Q8_0, KvType::Q8_0).unwrap();
        let mixed = KvCache::new(layers, ctx, heads, hd, KvType::Q8_0, KvType::F16).unwrap();
        let values = layers * ctx * heads * hd;
        assert_eq!(f16.bytes(), 2 * values * 2);
        assert_eq!(q8.bytes(), 2 * values / 32 * 34);
        assert_eq!(mixed.bytes(), (f16.bytes() + q8.bytes()) / 2);
        assert_eq!(
            (mixed.type_k(), mixed.type_v()),
            (KvType::Q8_0, KvType::F16)
        );
    }

    #[test]
    fn quantized_rows_are_rotated_as_llama_cpp_rotates_them() {
        let rot = |hd, k, v| {
            let c = KvCache::new(1, 2, 1, hd, k, v).unwrap();
            (c.k_rotation(), c.v_rotation())
        };
        assert_eq!(rot(64, KvType::F16, KvType::F16), (None, None));
        assert_eq!(rot(64, KvType::Q8_0, KvType::Q8_0), (Some(64), Some(64)));
        assert_eq!(rot(128, KvType::Q8_0, KvType::F16), (Some(128), None));
        assert_eq!(rot(256, KvType::F16, KvType::Q8_0), (None, Some(64)));
        assert_eq!(rot(192, KvType::Q8_0, KvType::Q8_0), (Some(64), Some(64)));
        assert_eq!(rot(96, KvType::Q8_0, KvType::Q8_0), (None, None));
    }

    #[test]
    fn q8_0_needs_heads_of_whole_blocks() {
        assert!(KvCache::new(1, 4, 2, 80, KvType::F16, KvType::F16).is_ok());
        for (k, v) in [(KvType::Q8_0, KvType::F16), (KvType::F16, KvType::Q8_0)] {
            let err = KvCache::new(1, 4, 2, 80, k, v).err().unwrap();
            assert!(
                matches!(
                    err,
                    EngineError::KvTypeHeadDim {
                        ty: KvType::Q8_0,
                        head_dim: 80,
                        block: 32
                    }
                ),
                "{err}"
            );
            assert!(err.to_string().contains("80"), "{err}");
        }
    }

    #[test]
    fn stored_rows_read_back_in_each_type() {
        let (heads, hd) = (2, 64);
        let kv_dim = heads * hd;
        let k: Vec<f32> = (0..2 * kv_dim).map(|i| (i as f32 * 0.37).sin()).collect();
        let v: Vec<f32> = k.iter().map(|x| -2.0 * x).collect();
        for ty in KvType::ALL {
            let mut c = KvCache::new(2, 5, heads, hd, ty, ty).unwrap();
            c.store(1, 3, &k, &v);
            let (kr, vr) = c.layer(1);
            for (rows, want) in [(kr, &k), (vr, &v)] {
                let mut got = vec![0f32; want.len()];
                match rows {
                    KvRows::F16(r) => r[3 * kv_dim..5 * kv_dim]
                        .reinterpret_cast::<f16>()
                        .convert_to_f32_slice(&mut got),
                    KvRows::Q8_0(r) => {
                        let at = ty.row_bytes(3 * kv_dim)..ty.row_bytes(5 * kv_dim);
                        formats::dequantize_row(GgmlType::Q8_0, &r[at], &mut got).unwrap()
                    }
                }
                // f16 keeps 11 bits; Q8_0 is off by at most half a step of amax/127 per block.
                let tol = if ty == KvType::F16 { 1e-3 } else { 2.0 / 127.0 };
                for (g, w) in got.iter().zip(want.iter()) {
                    assert!((g - w).abs() <= tol, "{ty}: {g} vs {w}");
                }
            }
        }
    }
}
