//! Hugging Face model directories to GGUF: what llama.cpp's `convert_hf_to_gguf.py` does, for
//! the architectures Hearth runs, with llama.cpp's tensor names and metadata keys so that
//! llama.cpp and Hearth read the result alike.
//!
//! [`convert_dir`] reads a directory holding `config.json`, `model.safetensors` (or
//! `model.safetensors.index.json` and its shards) and `tokenizer.json`, checks every tensor's
//! name and shape against config.json, and writes one GGUF file. [`Options`] chooses the
//! [`FileType`] (F32, F16 or Q8_0) and the model's name; the [`Summary`] says what was written;
//! [`ConvertError`] names the file, key or tensor that stopped it.
//!
//! ```no_run
//! use std::path::Path;
//! use convert::{convert_dir, FileType, Options};
//!
//! let options = Options { ftype: FileType::Q8_0, ..Options::default() };
//! let summary = convert_dir(Path::new("all-MiniLM-L6-v2"), Path::new("minilm.gguf"), &options)?;
//! println!("{}: {} tensors, {} bytes", summary.architecture, summary.tensors, summary.bytes);
//! # Ok::<(), convert::ConvertError>(())
//! ```
//!
//! # Architectures
//!
//! BERT (`BertModel`, as in sentence-transformers embedding models) becomes llama.cpp's `bert`;
//! `LlamaForCausalLM` and `MistralForCausalLM` (Llama 2 and 3, SmolLM, Mistral-style configs)
//! `llama`; `Qwen2ForCausalLM` `qwen2`; `Qwen3ForCausalLM` `qwen3`; `Gemma3ForCausalLM` (text-only
//! Gemma 3) `gemma3`, its norm weights stored plus one as llama.cpp does. Each architecture is one
//! table (in `arch/`): checkpoint names to GGUF names with shapes in terms of config.json keys
//! (with transformers' defaults for `num_key_value_heads`, `head_dim` and `rope_theta`), and
//! the hyper-parameters to copy. Any other `architectures` value is
//! [`ConvertError::UnsupportedArchitecture`], listing the supported ones.
//!
//! A decoder's `lm_head.weight` may be left out when config.json sets `tie_word_embeddings`
//! (the file then has no `output.weight`, and llama.cpp uses the token embeddings); missing
//! otherwise it is [`ConvertError::UntiedOutputMissing`]. Llama's Q and K matrices are written
//! with the rows of each head reordered from Hugging Face's rotate-half RoPE layout into
//! llama.cpp's adjacent pairs, as llama.cpp's converter does; Qwen's are copied as they are
//! (NeoX RoPE).
//!
//! # Tensors
//!
//! GGUF dims are the checkpoint's shape reversed (`ne[0]` is the row length); the data keeps
//! its row-major order. F32, F16 and BF16 checkpoints are read.
//!
//! - [`FileType::F32`]: every tensor F32 (F32 source data is copied bit for bit).
//! - [`FileType::F16`]: as llama.cpp's `--outtype f16`, 2-D weight matrices F16 (rounded to
//!   nearest even); 1-D tensors (norms, biases), `*_norm.weight`, `position_embd.weight` and
//!   `token_types.weight` F32.
//! - [`FileType::Q8_0`]: the F32 file, then [`quantize::quantize_file`] with its llama.cpp
//!   rules: weight matrices Q8_0; norms, biases, `position_embd.weight` and
//!   `token_types.weight` F32.
//!
//! # Tokenizer
//!
//! A WordPiece tokenizer becomes `tokenizer.ggml.model = "bert"` with llama.cpp's phantom-space
//! vocabulary (`[CLS]` unchanged, `##ing` → `ing`, `hello` → `▁hello`), token types, and the
//! ids of `[CLS]` (as `bos_token_id` and `cls_token_id`), `[SEP]`, `[UNK]`, `[PAD]` and
//! `[MASK]`.
//!
//! A byte-level BPE tokenizer (the decoders') becomes `tokenizer.ggml.model = "gpt2"`: the
//! tokens in id order (added tokens included: special ones control, others user-defined), the
//! merges, `tokenizer.ggml.pre` chosen from tokenizer.json's pre-tokenizer steps (Llama 3's
//! split regex `llama-bpe`, Qwen 2's `qwen2`, single digits then GPT-2's regex `smollm`, GPT-2's
//! alone `gpt-2`; anything else is an error), the BOS/EOS/UNK/padding ids (tokenizer_config.json,
//! then config.json, then generation_config.json), `add_bos_token`/`add_eos_token`, and
//! `tokenizer.chat_template` (chat_template.jinja or tokenizer_config.json).
//!
//! Gemma's SentencePiece tokenizer becomes `tokenizer.ggml.model = "llama"`: the pieces with
//! their scores (a Unigram model's own, or for a byte-fallback BPE model minus the rank of the
//! merge that makes each piece) and types (byte, unknown, control, user-defined), the same
//! special ids, flags and templates, and `add_space_prefix`. Normalizers and pre-tokenizers
//! other than SentencePiece's space handling are errors.
//!
//! # Output
//!
//! The file is written to a temporary file beside `dest`, synced, and renamed over `dest` only
//! when complete; on an error it is removed.

mod arch;
mod bpe;
mod error;
mod hf;
mod safetensors;
mod spm;
mod vocab;

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use gguf::{GgmlType, Gguf, GgufWriter, Value};

pub use error::ConvertError;

use arch::{Mapped, TensorRule};
use error::io_err;
use hf::Config;
use safetensors::{Checkpoint, TensorEntry};

/// The tensor types of the output file.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FileType {
    /// Every tensor F32.
    #[default]
    F32,
    /// Weight matrices F16, the rest F32.
    F16,
    /// Weight matrices Q8_0, the rest F32.
    Q8_0,
}

impl FileType {
    /// Every output type.
    pub const ALL: [FileType; 3] = [FileType::F32, FileType::F16, FileType::Q8_0];

    /// The name llama.cpp's `--outtype` takes (`q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            FileType::F32 => "f32",
            FileType::F16 => "f16",
            FileType::Q8_0 => "q8_0",
        }
    }

    /// llama.cpp's `llama_ftype`, written to `general.file_type` (0, 1, 7).
    pub fn file_type(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q8_0 => 7,
        }
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for FileType {
    type Err = ConvertError;

    fn from_str(s: &str) -> Result<FileType, ConvertError> {
        FileType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ConvertError::UnknownFileType {
                given: s.to_owned(),
            })
    }
}

/// How to convert.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The output's tensor types.
    pub ftype: FileType,
    /// `general.name`; the source directory's name when `None`.
    pub name: Option<String>,
}

/// What [`convert_dir`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// `general.architecture` (`bert`, `llama`, ...).
    pub architecture: String,
    /// Tensors in the file.
    pub tensors: usize,
    /// Size of the file in bytes.
    pub bytes: u64,
}

/// `GGML_QNT_VERSION`, which llama.cpp's converter always writes.
const QUANTIZATION_VERSION: u32 = 2;

/// The config.json key saying that the output matrix is the token embeddings.
const TIE_WORD_EMBEDDINGS: &str = "tie_word_embeddings";

/// Weight matrices llama.cpp keeps in F32 whatever the output type (besides norms).
const ALWAYS_F32: &[&str] = &["position_embd.weight", "token_types.weight"];

/// Converts the Hugging Face model directory `src` into the GGUF file `dest`.
///
/// Reads and checks everything first (a missing file, an unsupported `architectures`, an
/// unknown, missing or misshapen tensor, an unusable tokenizer: each a [`ConvertError`] naming
/// it), then writes `dest` through a temporary file in the same directory, renamed when
/// complete.
pub fn convert_dir(src: &Path, dest: &Path, options: &Options) -> Result<Summary, ConvertError> {
    let mut config = Config::read(src)?;
    let arch = arch::find(&config)?;
    (arch.defaults)(&mut config)?;
    let n_layer = config.u64(arch.layer_count)?;
    let vocab = (arch.vocab)(src, &config)?;
    let hparams = arch.metadata(src, &config)?;
    let checkpoint = Checkpoint::open(src)?;
    let tensors = plan(arch, &config, &checkpoint, n_layer)?;

    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::from(arch.name));
    let name = options.name.clone().unwrap_or_else(|| dir_name(src));
    w.add_metadata("general.name", Value::String(name));
    for (key, value) in hparams {
        w.add_metadata(&key, value);
    }
    // Q8_0 is quantized from the F32 file, which quantize_file then marks as Q8_0.
    let written = match options.ftype {
        FileType::F16 => FileType::F16,
        FileType::F32 | FileType::Q8_0 => FileType::F32,
    };
    w.add_metadata("general.file_type", Value::U32(written.file_type()));
    w.add_metadata(
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    );
    for (key, value) in vocab {
        w.add_metadata(&key, value);
    }
    for (gguf_name, entry, rule) in &tensors {
        let mut values = checkpoint.read_f32(entry)?;
        if let Some(heads) = rule.rope_heads {
            let row_len = entry.shape.last().map_or(1, |&n| n as usize);
            values = arch::interleave_rope(&values, config.u64(heads)? as usize, row_len);
        }
        if rule.plus_one {
            // llama.cpp adds in the checkpoint's type when that is F16 (BF16 is widened first).
            let f16 = entry.dtype == "F16";
            for v in &mut values {
                *v += 1.0;
                if f16 {
                    *v = half::f16::from_f32(*v).to_f32();
                }
            }
        }
        let dims: Vec<u64> = entry.shape.iter().rev().copied().collect();
        let (ty, data) = if written == FileType::F16 && is_f16_matrix(gguf_name, &dims) {
            let data = values
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect();
            (GgmlType::F16, data)
        } else {
            (
                GgmlType::F32,
                values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            )
        };
        w.add_tensor(gguf_name, &dims, ty, data)
            .map_err(|source| ConvertError::Gguf {
                path: dest.to_owned(),
                source,
            })?;
    }

    let tmp = TempFile(temp_beside(dest));
    write_file(&w, &tmp.0)?;
    match options.ftype {
        FileType::Q8_0 => {
            quantize::quantize_file(&tmp.0, dest, quantize::Target::Q8_0, &mut |_| {})?;
        }
        FileType::F32 | FileType::F16 => {
            std::fs::rename(&tmp.0, dest).map_err(io_err("rename into place", dest))?;
        }
    }
    let out = Gguf::open(dest).map_err(|source| ConvertError::Gguf {
        path: dest.to_owned(),
        source,
    })?;
    Ok(Summary {
        architecture: arch.name.to_owned(),
        tensors: out.tensors().len(),
        bytes: out.file_size(),
    })
}

/// The checkpoint's tensors in output order with their GGUF names and rules, each checked:
/// known, shaped as config.json says, none missing (but a tied output matrix), none twice.
fn plan<'c>(
    arch: &'static arch::Arch,
    config: &Config,
    checkpoint: &'c Checkpoint,
    n_layer: u64,
) -> Result<Vec<(String, &'c TensorEntry, &'static TensorRule)>, ConvertError> {
    let mut found: HashMap<String, &TensorEntry> = HashMap::new();
    for t in &checkpoint.tensors {
        let Mapped::Tensor { gguf, rule } = arch.map(&t.name, n_layer)? else {
            continue;
        };
        let expected = arch::shape(rule, config)?;
        if t.shape != expected {
            return Err(ConvertError::WrongShape {
                tensor: t.name.clone(),
                expected,
                got: t.shape.clone(),
            });
        }
        if let Some(first) = found.insert(gguf.clone(), t) {
            return Err(ConvertError::DuplicateTensor {
                first: first.name.clone(),
                second: t.name.clone(),
                gguf,
            });
        }
    }
    let mut out = Vec::new();
    for (hf, gguf, rule) in arch.expected(n_layer) {
        match (found.get(&gguf), &arch.tied_output) {
            (Some(&t), _) => out.push((gguf, t, rule)),
            (None, Some(tied)) if tied.gguf == gguf => {
                if !config.bool(TIE_WORD_EMBEDDINGS, tied.default)? {
                    return Err(ConvertError::UntiedOutputMissing {
                        tensor: hf,
                        path: config.path().to_owned(),
                    });
                }
            }
            (None, _) => return Err(ConvertError::MissingTensor { tensor: hf, gguf }),
        }
    }
    Ok(out)
}

/// Whether an F16 file stores this tensor as F16: 2-D weight matrices but norms and the
/// embeddings llama.cpp keeps in F32 (`convert_hf_to_gguf.py`'s rules).
fn is_f16_matrix(name: &str, dims: &[u64]) -> bool {
    dims.len() >= 2
        && name.ends_with(".weight")
        && !name.ends_with("_norm.weight")
        && !ALWAYS_F32.contains(&name)
}

/// The last component of `dir` (after resolving `.` and the like), else `model`.
fn dir_name(dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    dir.file_name()
        .map_or_else(|| "model".to_owned(), |n| n.to_string_lossy().into_owned())
}

/// A temporary file, removed when dropped (it may have been renamed away already).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A fresh hidden name beside `dest`, unique per process and call.
fn temp_beside(dest: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = dest
        .file_name()
        .map_or_else(|| "model.gguf".into(), |n| n.to_string_lossy());
    dest.with_file_name(format!(".{name}.convert-{}-{n}", std::process::id()))
}

/// Writes `w` to `path` and syncs it.
fn write_file(w: &GgufWriter, path: &Path) -> Result<(), ConvertError> {
    let file = File::create(path).map_err(io_err("create", path))?;
    let mut out = BufWriter::new(file);
    w.write_to(&mut out).map_err(io_err("write", path))?;
    let file = out
        .into_inner()
        .map_err(|e| io_err("write", path)(e.into_error()))?;
    file.sync_all().map_err(io_err("sync", path))
}

#[cfg(test)]
mod tests;
