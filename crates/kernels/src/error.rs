use gguf::GgmlType;

/// Errors of the kernels crate.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("tensor type {0} is not supported for computation (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)")]
    UnsupportedType(GgmlType),
    #[error("{what}: expected {expected} bytes, got {got}")]
    SizeMismatch {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error(
        "a row of {cols} elements is not a whole number of {ty} blocks ({block} elements each)"
    )]
    RaggedRow {
        ty: GgmlType,
        cols: usize,
        block: usize,
    },
}
