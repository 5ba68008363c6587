//! The quantization mixes a model can be re-quantized to.

use std::fmt;
use std::str::FromStr;

use gguf::GgmlType;

use crate::QuantizeError;

/// A target quantization mix, named as Ollama and llama.cpp name them (`q4_K_M`). Parsing ignores
/// case, so `Q4_K_M`, `q4_k_m` and `q4_K_M` are the same target.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// Every weight matrix Q8_0 (8.5 bits per weight).
    Q8_0,
    /// Weight matrices Q4_0, the output matrix Q6_K (4.5 bits per weight for most).
    Q4_0,
    /// Weight matrices Q4_K, with Q6_K for the output matrix and for some layers' `attn_v` and
    /// `ffn_down` (llama.cpp's medium 4-bit K-quant mix).
    Q4_K_M,
    /// Weight matrices Q5_K, with Q6_K for the output matrix and some layers' `attn_v` and
    /// `ffn_down` (llama.cpp's medium 5-bit K-quant mix).
    Q5_K_M,
}

impl Target {
    /// Every target, smallest files last.
    pub const ALL: [Target; 4] = [Target::Q8_0, Target::Q5_K_M, Target::Q4_K_M, Target::Q4_0];

    /// The name Ollama prints and accepts (`q4_K_M`).
    pub fn name(self) -> &'static str {
        match self {
            Target::Q8_0 => "q8_0",
            Target::Q4_0 => "q4_0",
            Target::Q4_K_M => "q4_K_M",
            Target::Q5_K_M => "q5_K_M",
        }
    }

    /// llama.cpp's `llama_ftype` value, written to `general.file_type`
    /// (`LLAMA_FTYPE_MOSTLY_Q8_0` = 7, `Q4_0` = 2, `Q4_K_M` = 15, `Q5_K_M` = 17).
    pub fn file_type(self) -> u32 {
        match self {
            Target::Q8_0 => 7,
            Target::Q4_0 => 2,
            Target::Q4_K_M => 15,
            Target::Q5_K_M => 17,
        }
    }

    /// The type weight matrices get unless a rule picks another (llama.cpp's `default_type`).
    pub fn base_type(self) -> GgmlType {
        match self {
            Target::Q8_0 => GgmlType::Q8_0,
            Target::Q4_0 => GgmlType::Q4_0,
            Target::Q4_K_M => GgmlType::Q4_K,
            Target::Q5_K_M => GgmlType::Q5_K,
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = QuantizeError;

    fn from_str(s: &str) -> Result<Target, QuantizeError> {
        Target::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| QuantizeError::UnknownTarget {
                given: s.to_owned(),
            })
    }
}
