//! The key/value cache: f16 rows for every layer and position, allocated once for the whole
//! context (zeroed pages, so memory is committed only as the context fills).

use half::f16;

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

    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let at = pos * self.kv_dim;
        for (dst, &x) in self.k[layer][at..at + self.kv_dim].iter_mut().zip(k) {
            *dst = f16::from_f32(x).to_bits();
        }
        for (dst, &x) in self.v[layer][at..at + self.kv_dim].iter_mut().zip(v) {
            *dst = f16::from_f32(x).to_bits();
        }
    }

    /// The K and V rows of one layer (`n_ctx * kv_dim` f16 bit patterns each).
    pub fn layer(&self, layer: usize) -> (&[u16], &[u16]) {
        (&self.k[layer], &self.v[layer])
    }
}
