//! Architecture tables: how one transformers model class becomes one llama.cpp architecture.
//!
//! An [`Arch`] is data: the checkpoint's tensor names with their GGUF names and their shapes in
//! terms of config.json keys, the hyper-parameters copied into metadata, and two hooks for what
//! a table cannot say (defaults for config.json keys, extra metadata, the tokenizer). Supporting
//! another family is one more table in [`ARCHES`].

mod bert;
mod decoder;
mod gemma;

use std::path::Path;

use gguf::Value;

use crate::hf::Config;
use crate::ConvertError;

/// One tensor of a checkpoint.
#[derive(Debug, PartialEq)]
pub(crate) struct TensorRule {
    /// Its name in the checkpoint (inside a layer: after `{layer_prefix}N.`).
    pub hf: &'static str,
    /// Its GGUF name (inside a layer: after `blk.N.`).
    pub gguf: &'static str,
    /// Its shape as the checkpoint stores it (outermost first), as config.json keys (`a*b`: a
    /// product of two keys).
    pub shape: &'static [&'static str],
    /// For a Llama Q or K matrix, the config.json key of its head count: its rows are reordered
    /// from Hugging Face's rotate-half RoPE layout into llama.cpp's ([`interleave_rope`]).
    pub rope_heads: Option<&'static str>,
    /// Gemma's RMSNorm weights, which scale by `1 + weight`: llama.cpp stores `weight + 1`.
    pub plus_one: bool,
}

/// A tensor rule with no reordering.
pub(crate) const fn rule(
    hf: &'static str,
    gguf: &'static str,
    shape: &'static [&'static str],
) -> TensorRule {
    TensorRule {
        hf,
        gguf,
        shape,
        rope_heads: None,
        plus_one: false,
    }
}

/// A metadata entry `{arch}.{key}` copied from a config.json key.
pub(crate) enum HParam {
    U32(&'static str, &'static str),
    F32(&'static str, &'static str),
}

/// Extra metadata or the tokenizer's metadata, from the model directory.
pub(crate) type Hook = fn(&Path, &Config) -> Result<Vec<(String, Value)>, ConvertError>;

/// An output matrix a checkpoint may leave out because it shares the token embeddings.
pub(crate) struct TiedOutput {
    /// Its GGUF name.
    pub gguf: &'static str,
    /// transformers' default for `tie_word_embeddings` in this model class.
    pub default: bool,
}

/// The conversion table of one architecture.
pub(crate) struct Arch {
    /// config.json `architectures` values this table converts.
    pub classes: &'static [&'static str],
    /// `general.architecture`, llama.cpp's name.
    pub name: &'static str,
    /// Prefixes some checkpoints put before every name (the first that matches is removed).
    pub strip_prefixes: &'static [&'static str],
    /// Old spellings of name endings and their current ones.
    pub renames: &'static [(&'static str, &'static str)],
    /// Tensors left out of the GGUF file: exact names, or prefixes when ending in `.`.
    pub skipped: &'static [&'static str],
    /// Tensors outside the layers, in output order.
    pub globals: &'static [TensorRule],
    /// The checkpoint's prefix of layer `N`'s tensors, without the `N.`.
    pub layer_prefix: &'static str,
    /// The config.json key of the layer count.
    pub layer_count: &'static str,
    /// The tensors of each layer, in output order.
    pub layer_tensors: &'static [TensorRule],
    /// The output matrix that `tie_word_embeddings` makes optional, if any.
    pub tied_output: Option<TiedOutput>,
    /// Fills in the config.json keys transformers defaults and checks how they fit together,
    /// before anything else reads them.
    pub defaults: fn(&mut Config) -> Result<(), ConvertError>,
    /// Hyper-parameters copied from config.json.
    pub hparams: &'static [HParam],
    /// Metadata no config.json key gives directly.
    pub extra: Hook,
    /// The tokenizer's metadata.
    pub vocab: Hook,
}

/// Every architecture this crate converts.
pub(crate) const ARCHES: &[&Arch] = &[
    &bert::BERT,
    &decoder::LLAMA,
    &decoder::QWEN2,
    &decoder::QWEN3,
    &gemma::GEMMA3,
];

/// What a checkpoint tensor becomes.
#[derive(Debug, PartialEq)]
pub(crate) enum Mapped {
    /// Left out of the GGUF file.
    Skip,
    /// Written as `gguf`, with the shape `rule` gives.
    Tensor {
        gguf: String,
        rule: &'static TensorRule,
    },
}

/// The table for config.json's `architectures`.
pub(crate) fn find(config: &Config) -> Result<&'static Arch, ConvertError> {
    let got = config.architectures()?;
    ARCHES
        .iter()
        .copied()
        .find(|a| got.iter().any(|c| a.classes.contains(&c.as_str())))
        .ok_or_else(|| ConvertError::UnsupportedArchitecture {
            path: config.path().to_owned(),
            got,
            supported: ARCHES
                .iter()
                .flat_map(|a| a.classes.iter().map(move |c| format!("{c} ({})", a.name)))
                .collect::<Vec<_>>()
                .join(", "),
        })
}

impl Arch {
    /// What the checkpoint tensor `name` becomes in a model of `n_layer` layers.
    pub(crate) fn map(&'static self, name: &str, n_layer: u64) -> Result<Mapped, ConvertError> {
        let unknown = || ConvertError::UnknownTensor {
            tensor: name.to_owned(),
            arch: self.name,
        };
        let stripped = self
            .strip_prefixes
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .unwrap_or(name);
        let mut n = stripped.to_owned();
        if let Some((old, new)) = self.renames.iter().find(|(old, _)| n.ends_with(old)) {
            n.truncate(n.len() - old.len());
            n.push_str(new);
        }
        let skipped = |s: &&str| match s.ends_with('.') {
            true => n.starts_with(s),
            false => n == *s,
        };
        if self.skipped.iter().any(skipped) {
            return Ok(Mapped::Skip);
        }
        if let Some(rule) = self.globals.iter().find(|r| r.hf == n) {
            return Ok(Mapped::Tensor {
                gguf: rule.gguf.to_owned(),
                rule,
            });
        }
        let (layer, tail) = n
            .strip_prefix(self.layer_prefix)
            .and_then(|rest| rest.split_once('.'))
            .ok_or_else(unknown)?;
        let layer: u64 = match layer.bytes().all(|b| b.is_ascii_digit()) {
            true => layer.parse().map_err(|_| unknown())?,
            false => return Err(unknown()),
        };
        match self.layer_tensors.iter().find(|r| r.hf == tail) {
            Some(rule) if layer < n_layer => Ok(Mapped::Tensor {
                gguf: format!("blk.{layer}.{}", rule.gguf),
                rule,
            }),
            _ => Err(unknown()),
        }
    }

    /// Every tensor the model needs, in output order: (checkpoint name, GGUF name, rule).
    pub(crate) fn expected(
        &'static self,
        n_layer: u64,
    ) -> impl Iterator<Item = (String, String, &'static TensorRule)> {
        let globals = self
            .globals
            .iter()
            .map(|r| (r.hf.to_owned(), r.gguf.to_owned(), r));
        let layers = (0..n_layer).flat_map(move |l| {
            self.layer_tensors.iter().map(move |r| {
                let hf = format!("{}{l}.{}", self.layer_prefix, r.hf);
                (hf, format!("blk.{l}.{}", r.gguf), r)
            })
        });
        globals.chain(layers)
    }

    /// The hyper-parameter metadata, `{arch}.{key}`, then the extra hook's.
    pub(crate) fn metadata(
        &self,
        dir: &Path,
        config: &Config,
    ) -> Result<Vec<(String, Value)>, ConvertError> {
        let mut out = Vec::new();
        for hp in self.hparams {
            let (key, value) = match *hp {
                HParam::U32(key, from) => (key, Value::U32(config.u32(from)?)),
                HParam::F32(key, from) => (key, Value::F32(config.f64(from)? as f32)),
            };
            out.push((format!("{}.{key}", self.name), value));
        }
        out.extend((self.extra)(dir, config)?);
        Ok(out)
    }
}

/// The shape `rule` gives, from config.json.
pub(crate) fn shape(rule: &TensorRule, config: &Config) -> Result<Vec<u64>, ConvertError> {
    rule.shape.iter().map(|key| config.u64(key)).collect()
}

/// [`Arch::defaults`] of an architecture whose config.json must give every key itself.
pub(crate) fn no_defaults(_: &mut Config) -> Result<(), ConvertError> {
    Ok(())
}

/// A Llama Q or K matrix (rows of `row_len` values, `heads` heads of `d` rows each) in the row
/// order llama.cpp's RoPE expects. Hugging Face rotates row `i` of a head with row `i + d/2`
/// (rotate-half); llama.cpp rotates adjacent rows `2i` and `2i + 1`. So row `2i + j` of each
/// head (`j` 0 or 1) is the head's row `i + j * d/2` of `values`.
pub(crate) fn interleave_rope(values: &[f32], heads: usize, row_len: usize) -> Vec<f32> {
    let rows = values.len() / row_len;
    let d = rows / heads;
    (0..rows)
        .flat_map(|r| {
            let (head, j) = (r / d, r % d);
            let src = head * d + (j % 2) * (d / 2) + j / 2;
            &values[src * row_len..(src + 1) * row_len]
        })
        .copied()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_rows_become_adjacent_pairs_within_each_head() {
        // Two heads of four rows, rows of one value: HF pairs (0, 2), (1, 3) in each head.
        let rows: Vec<f32> = (0..8).map(|r| r as f32).collect();
        assert_eq!(
            interleave_rope(&rows, 2, 1),
            [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]
        );
        // One head of six rows, rows of two values: pairs (0, 3), (1, 4), (2, 5).
        let rows: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let out = interleave_rope(&rows, 1, 2);
        let order: Vec<f32> = out.chunks(2).map(|r| r[0] / 2.0).collect();
        assert_eq!(order, [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        assert!(out.chunks(2).all(|r| r[1] == r[0] + 1.0));
    }
}
