//! Shared helpers for the format tests: a deterministic random generator, test data, error
//! measures and row-level wrappers.

use super::{dequantize_row, quantize_row};
use gguf::GgmlType;

/// Every weight type the formats module supports.
pub const ALL_TYPES: [GgmlType; 15] = super::SUPPORTED;

/// SplitMix64: small, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn gaussian(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    pub fn byte(&mut self) -> u8 {
        self.next_u64() as u8
    }
}

/// Kinds of test data: weights look roughly Gaussian, sometimes with outliers or a mean.
#[derive(Clone, Copy, Debug)]
pub enum Data {
    Gaussian,
    Uniform,
    /// Gaussian with 1% of elements scaled by 8.
    Outliers,
    /// Gaussian plus a positive offset of 1 sigma.
    Shifted,
}

pub const ALL_DATA: [Data; 4] = [Data::Gaussian, Data::Uniform, Data::Outliers, Data::Shifted];

pub fn make_data(kind: Data, n: usize, rng: &mut Rng) -> Vec<f32> {
    (0..n)
        .map(|_| match kind {
            Data::Gaussian => rng.gaussian() * 0.02,
            Data::Uniform => (rng.uniform() as f32 * 2.0 - 1.0) * 0.05,
            Data::Outliers => {
                let g = rng.gaussian() * 0.02;
                if rng.uniform() < 0.01 {
                    g * 8.0
                } else {
                    g
                }
            }
            Data::Shifted => (rng.gaussian() + 1.0) * 0.02,
        })
        .collect()
}

/// sqrt(sum (x - y)^2 / sum x^2), in f64.
pub fn rel_rmse(x: &[f32], y: &[f32]) -> f64 {
    assert_eq!(x.len(), y.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&a, &b) in x.iter().zip(y) {
        num += (a as f64 - b as f64).powi(2);
        den += (a as f64).powi(2);
    }
    (num / den).sqrt()
}

pub fn dot64(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

pub fn norm64(a: &[f32]) -> f64 {
    dot64(a, a).sqrt()
}

pub fn quantize_vec(ty: GgmlType, x: &[f32]) -> Vec<u8> {
    let mut out = vec![0u8; x.len() / ty.block_size() * ty.type_size()];
    quantize_row(ty, x, &mut out).unwrap();
    out
}

pub fn dequantize_vec(ty: GgmlType, bytes: &[u8]) -> Vec<f32> {
    let n = bytes.len() / ty.type_size() * ty.block_size();
    let mut out = vec![0.0f32; n];
    dequantize_row(ty, bytes, &mut out).unwrap();
    out
}

/// Stores `v` as f16 at `off`.
pub fn put_f16(b: &mut [u8], off: usize, v: f32) {
    b[off..off + 2].copy_from_slice(&half::f16::from_f32(v).to_le_bytes());
}
