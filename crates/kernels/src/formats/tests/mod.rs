//! Tests of the formats module: hand-built blocks with known values, activation quantization,
//! round-trip error budgets, dot products, and llama.cpp's own quantized tensors.

mod activations;
mod api;
mod hand_built;
mod llama_ref;
mod round_trip;
