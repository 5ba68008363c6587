//! Unquantized types: F32 (4 bytes), F16 (IEEE binary16, 2 bytes) and BF16 (the top 16 bits of an
//! f32, 2 bytes), one element per "block", little-endian.
//!
//! Weights of these types are dotted with raw little-endian f32 activations
//! ([`GgmlType::F32`](gguf::GgmlType::F32) as the activation type), accumulating in f64.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

/// F32 bytes to f32 values.
pub fn dequantize_f32(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(4).zip(dst.iter_mut()) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// F16 bytes to f32 values (exact; uses F16C through `half` where the CPU has it).
pub fn dequantize_f16(src: &[u8], dst: &mut [f32]) {
    let mut buf = [f16::ZERO; 64];
    for (b, y) in src.chunks(128).zip(dst.chunks_mut(64)) {
        let h = &mut buf[..y.len()];
        for (v, c) in h.iter_mut().zip(b.chunks_exact(2)) {
            *v = f16::from_le_bytes([c[0], c[1]]);
        }
        h.convert_to_f32_slice(y);
    }
}

/// BF16 bytes to f32 values (exact: the bytes become the top half of the f32).
pub fn dequantize_bf16(src: &[u8], dst: &mut [f32]) {
    for (b, y) in src.chunks_exact(2).zip(dst.iter_mut()) {
        *y = bf16::from_le_bytes([b[0], b[1]]).to_f32();
    }
}

/// f32 values to F32 bytes.
pub fn quantize_f32(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.iter().zip(dst.chunks_exact_mut(4)) {
        b.copy_from_slice(&x.to_le_bytes());
    }
}

/// f32 values to F16 bytes, rounding to nearest even (as ggml's `GGML_FP32_TO_FP16`).
pub fn quantize_f16(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&f16::from_f32(*x).to_le_bytes());
    }
}

/// f32 values to BF16 bytes, rounding to nearest even (as ggml's `GGML_FP32_TO_BF16`).
pub fn quantize_bf16(src: &[f32], dst: &mut [u8]) {
    for (x, b) in src.iter().zip(dst.chunks_exact_mut(2)) {
        b.copy_from_slice(&bf16::from_f32(*x).to_le_bytes());
    }
}

/// Reads the `i`-th little-endian f32 of an activation row.
#[inline]
fn act_at(act: &[u8], i: usize) -> f64 {
    f32::from_le_bytes([act[4 * i], act[4 * i + 1], act[4 * i + 2], act[4 * i + 3]]) as f64
}

/// Dot of an F32 weight row with f32 activations, accumulated in f64.
pub fn vec_dot_f32(w: &[u8], act: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for (i, b) in w.chunks_exact(4).enumerate() {
        sum += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64 * act_at(act, i);
    }
    sum as f32
}

/// Dot of an F16 weight row with f32 activations, accumulated in f64.
pub fn vec_dot_f16(w: &[u8], act: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for (i, b) in w.chunks_exact(2).enumerate() {
        sum += f16::from_le_bytes([b[0], b[1]]).to_f64() * act_at(act, i);
    }
    sum as f32
}

/// Dot of a BF16 weight row with f32 activations, accumulated in f64.
pub fn vec_dot_bf16(w: &[u8], act: &[u8]) -> f32 {
    let mut sum = 0.0f64;
    for (i, b) in w.chunks_exact(2).enumerate() {
        sum += bf16::from_le_bytes([b[0], b[1]]).to_f64() * act_at(act, i);
    }
    sum as f32
}
