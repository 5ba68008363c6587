use crate::KvType;
use gguf::GgmlType;

/// Errors of the engine crate.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    #[error(transparent)]
    Tokenizer(#[from] tokenizer::TokenizerError),
    #[error(transparent)]
    Chat(#[from] chat::ChatError),
    #[error(transparent)]
    Kernel(#[from] kernels::KernelError),
    #[error(
        "architecture `{0}` is not supported (supported: llama, qwen2, qwen3, gemma3, phi3, bert)"
    )]
    UnsupportedArchitecture(String),
    #[error("the model file has no `general.architecture`; it is not a model GGUF")]
    MissingArchitecture,
    #[error("metadata key `{key}` is missing or has the wrong type (expected {expected})")]
    BadMetadata { key: String, expected: &'static str },
    #[error("tensor `{0}` is missing from the model file")]
    MissingTensor(String),
    #[error("tensor `{name}` has shape {got:?}, expected {expected:?}")]
    BadShape {
        name: String,
        expected: Vec<u64>,
        got: Vec<u64>,
    },
    #[error("tensor `{name}` has type {ty}, which cannot be used here (expected F32 for norms and biases)")]
    BadTensorType { name: String, ty: GgmlType },
    #[error("the prompt needs {needed} tokens of context but only {available} are left (context size {ctx}); shorten the prompt by {over} tokens or raise the context size")]
    ContextFull {
        needed: usize,
        available: usize,
        ctx: usize,
        over: usize,
    },
    #[error("an embedding model cannot generate text: `{arch}` only computes embeddings")]
    NotGenerative { arch: &'static str },
    #[error("the input has {tokens} tokens but this embedding model takes at most {max} (its positions); shorten it by {over} tokens")]
    TooLongToEmbed {
        tokens: usize,
        max: usize,
        over: usize,
    },
    #[error("the prompt is empty: there is nothing to continue")]
    EmptyPrompt,
    #[error("token id {id} is outside the vocabulary of {vocab} tokens")]
    BadToken { id: u32, vocab: usize },
    #[error("unknown KV cache type `{0}` (supported: f16, q8_0)")]
    UnknownKvType(String),
    #[error("a {ty} KV cache stores each head in blocks of {block} values, but this model's heads have {head_dim}; use f16")]
    KvTypeHeadDim {
        ty: KvType,
        head_dim: usize,
        block: usize,
    },
}
