//! The inference engine: model architectures, the KV cache, sampling and generation.
//!
//! [`Model::load`] maps a GGUF file and builds its [`HParams`], weights, tokenizer and chat
//! template; [`Model::forward`] runs tokens through the network (llama, qwen2, qwen3, gemma3,
//! phi3) on the kernels crate's matmul. [`Model::embed`] turns tokens into one unit-length
//! vector: a generative model's mean hidden state, or a BERT encoder's pooled states (`bert.rs`:
//! bidirectional attention, LayerNorm, the erf GELU; [`Pooling`] from the file). An encoder
//! ([`Arch::is_encoder`]) cannot generate ([`EngineError::NotGenerative`]) and keeps no KV
//! cache. A [`Session`] owns one [`KvCache`] (keys and values each stored as a [`KvType`]: f16 by
//! default, or Q8_0 at about half the memory) and drives generation, choosing tokens with a
//! [`Sampler`] configured by [`SamplerConfig`] (a [`Prefix`] copies its cached tokens for other
//! sessions to start from), optionally constrained to a [`Grammar`]
//! (structured output: [`GenerateOptions::grammar`]).

mod bert;
mod error;
mod hparams;
mod kv_cache;
mod model;
mod ops;
mod prompt;
mod sampler;
mod session;
mod weights;

pub use chat::Message;
pub use error::EngineError;
pub use grammar::{Grammar, GrammarError, Matcher, Vocabulary};
pub use hparams::{Arch, HParams, Pooling};
pub use kv_cache::{KvCache, KvType};
pub use model::{Model, Sequence};
pub use sampler::{argmax, Sampler, SamplerConfig};
pub use session::{
    Cancel, GenerateOptions, Generation, GenerationStats, Prefix, Session, Step, StopReason,
    TokenLogprob,
};
pub use weights::packed_weight_bytes;
