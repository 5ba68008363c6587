//! The key/value cache: f16 rows for every layer and position, allocated once for the whole
//! context (zeroed pages, so memory is committed only as the context fills).

use half::f16;
use half::slice::{HalfBitsSliceExt, HalfFloatSliceExt};

pub struct KvCache {
    n_ctx: usize,
    kv_dim: usize,
    /// Per layer: `n_ctx` rows of `kv_dim` f16 bit patterns.
    k: Vec<Vec<u16>>,
    v: Vec<Vec<u16>>,
}

impl KvCache {
    pub fn new(n_layer: usize, n_ctx: usize, kv_dim: usize) -> KvCache {
        let alloc = || (0..n_layer).map(|_| vec![0u16; n_ctx * kv_dim]).collect();
        KvCache {
            n_ctx,
            kv_dim,
            k: alloc(),
            v: alloc(),
        }
    }

    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// Stores the key and value rows of consecutive positions from `pos` (`kv_dim` values per
    /// position), rounded to f16.
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
        let at = pos * self.kv_dim..pos * self.kv_dim + k.len();
        for (cache, src) in [(&mut self.k, k), (&mut self.v, v)] {
            cache[layer][at.clone()]
                .reinterpret_cast_mut::<f16>()
                .convert_from_f32_slice(src);
        }
    }

    /// The K and V rows of one layer (`n_ctx * kv_dim` f16 bit patterns each).
    pub fn layer(&self, layer: usize) -> (&[u16], &[u16]) {
        (&self.k[layer], &self.v[layer])
    }
}
