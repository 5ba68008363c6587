//! Reading safetensors checkpoints: an 8-byte little-endian header length, a JSON header naming
//! every tensor's dtype, shape and byte range, then the raw row-major data.
//!
//! Only the header is read up front; a tensor's bytes are read when it is converted, so memory
//! holds one tensor at a time. Every range in the header is checked against the file size.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::error::io_err;
use crate::hf::read_json;
use crate::ConvertError;

/// Largest JSON header accepted (the format's own reference implementation allows 100 MB).
const MAX_HEADER: u64 = 100 << 20;

/// One tensor's entry in a safetensors header.
#[derive(Clone, Debug)]
pub(crate) struct TensorEntry {
    pub name: String,
    /// The dtype as the header spells it (`F32`, `BF16`, `I64`, ...).
    pub dtype: String,
    /// The shape, outermost dimension first (PyTorch's order).
    pub shape: Vec<u64>,
    /// Index of its file in [`Checkpoint::files`].
    file: usize,
    /// Absolute byte offset of the data in that file.
    start: u64,
    len: u64,
}

/// The tensors of a model's safetensors file or files.
pub(crate) struct Checkpoint {
    files: Vec<PathBuf>,
    pub tensors: Vec<TensorEntry>,
}

/// Bytes per element of the dtypes safetensors defines (None for an unknown one).
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
        _ => return None,
    })
}

impl Checkpoint {
    /// Opens `dir/model.safetensors`, or the shards `dir/model.safetensors.index.json` lists.
    pub(crate) fn open(dir: &Path) -> Result<Checkpoint, ConvertError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files = if single.exists() || !index.exists() {
            vec![single]
        } else {
            shards(&index)?
                .into_iter()
                .map(|name| dir.join(name))
                .collect()
        };
        let mut tensors = Vec::new();
        for (i, path) in files.iter().enumerate() {
            tensors.extend(read_header(path, i)?);
        }
        Ok(Checkpoint { files, tensors })
    }

    /// The file holding `t`.
    pub(crate) fn path_of(&self, t: &TensorEntry) -> &Path {
        &self.files[t.file]
    }

    /// The raw little-endian bytes of `t`.
    pub(crate) fn read(&self, t: &TensorEntry) -> Result<Vec<u8>, ConvertError> {
        let path = self.path_of(t);
        let mut file = File::open(path).map_err(io_err("open", path))?;
        let mut data = vec![0; t.len as usize];
        file.seek(SeekFrom::Start(t.start))
            .and_then(|_| file.read_exact(&mut data))
            .map_err(io_err("read", path))?;
        Ok(data)
    }

    /// The values of `t` as f32 (F32 exactly, F16 and BF16 widened exactly).
    pub(crate) fn read_f32(&self, t: &TensorEntry) -> Result<Vec<f32>, ConvertError> {
        let bytes = self.read(t)?;
        let halves = || {
            bytes
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
        };
        Ok(match t.dtype.as_str() {
            "F32" => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            "F16" => halves().map(|h| half::f16::from_bits(h).to_f32()).collect(),
            "BF16" => halves()
                .map(|h| f32::from_bits(u32::from(h) << 16))
                .collect(),
            _ => {
                return Err(ConvertError::UnsupportedDtype {
                    path: self.path_of(t).to_owned(),
                    tensor: t.name.clone(),
                    dtype: t.dtype.clone(),
                })
            }
        })
    }
}

/// The shard file names of a sharded checkpoint's index, each once, sorted.
fn shards(index: &Path) -> Result<Vec<String>, ConvertError> {
    let json = read_json(index)?;
    let map = json
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| ConvertError::BadKey {
            path: index.to_owned(),
            key: "weight_map".into(),
            expected: "an object from tensor names to shard file names",
        })?;
    let mut names = BTreeSet::new();
    for file in map.values() {
        // A shard name must stay inside the directory.
        match file.as_str() {
            Some(f) if !f.is_empty() && !f.contains(['/', '\\']) && f != ".." => {
                names.insert(f.to_owned());
            }
            _ => {
                return Err(ConvertError::BadKey {
                    path: index.to_owned(),
                    key: "weight_map".into(),
                    expected: "plain file names of shards in the same directory",
                })
            }
        }
    }
    Ok(names.into_iter().collect())
}

/// Reads and checks the header of the safetensors file `path` (file number `file`).
fn read_header(path: &Path, file: usize) -> Result<Vec<TensorEntry>, ConvertError> {
    let bad = |reason: String| ConvertError::Safetensors {
        path: path.to_owned(),
        reason,
    };
    let mut f = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => ConvertError::MissingFile {
            path: path.to_owned(),
        },
        _ => io_err("open", path)(e),
    })?;
    let size = f.metadata().map_err(io_err("read", path))?.len();
    let mut len = [0; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad(format!("{size} bytes is too short for the header length")))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER || 8 + header_len > size {
        return Err(bad(format!(
            "the header length {header_len} exceeds the file ({size} bytes) or the {MAX_HEADER}-byte limit"
        )));
    }
    let mut header = vec![0; header_len as usize];
    f.read_exact(&mut header).map_err(io_err("read", path))?;
    let json: serde_json::Map<String, Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("the header is not a JSON object ({e})")))?;
    let data_start = 8 + header_len;
    let data_len = size - data_start;
    let mut tensors = Vec::new();
    for (name, entry) in json {
        if name == "__metadata__" {
            continue;
        }
        let field = |key: &str| entry.get(key);
        let dtype = field("dtype").and_then(Value::as_str);
        let shape = field("shape")
            .and_then(Value::as_array)
            .and_then(|dims| dims.iter().map(Value::as_u64).collect::<Option<Vec<_>>>());
        let offsets = field("data_offsets")
            .and_then(Value::as_array)
            .and_then(|o| o.iter().map(Value::as_u64).collect::<Option<Vec<_>>>());
        let (Some(dtype), Some(shape), Some(&[begin, end])) = (dtype, shape, offsets.as_deref())
        else {
            return Err(bad(format!(
                "tensor `{name}` lacks a dtype, a shape or two data_offsets"
            )));
        };
        if begin > end || end > data_len {
            return Err(bad(format!(
                "tensor `{name}` has data_offsets [{begin}, {end}] outside the {data_len} data bytes"
            )));
        }
        let expected = dtype_size(dtype).and_then(|size| {
            shape
                .iter()
                .try_fold(size, |acc: u64, &d| acc.checked_mul(d))
        });
        if dtype_size(dtype).is_some() && expected != Some(end - begin) {
            return Err(bad(format!(
                "tensor `{name}` ({dtype}, shape {shape:?}) has {} data bytes, not {}",
                end - begin,
                expected.map_or("a size that fits".into(), |e| e.to_string())
            )));
        }
        tensors.push(TensorEntry {
            name,
            dtype: dtype.to_owned(),
            shape,
            file,
            start: data_start + begin,
            len: end - begin,
        });
    }
    Ok(tensors)
}

/// Writes a safetensors file holding `tensors` (name, dtype, shape, raw bytes), for tests.
#[cfg(test)]
pub(crate) fn write(path: &Path, tensors: &[(&str, &str, &[u64], Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut data = Vec::new();
    for (name, dtype, shape, bytes) in tensors {
        let begin = data.len();
        data.extend_from_slice(bytes);
        header.insert(
            (*name).into(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [begin, data.len()]}),
        );
    }
    let header = serde_json::to_vec(&header).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&header);
    out.extend_from_slice(&data);
    std::fs::write(path, out).unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn reads_tensors_in_every_float_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let f16: Vec<u8> = [1.5f32, -2.0]
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect();
        let bf16: Vec<u8> = [0.15625f32, 3.0]
            .iter()
            .flat_map(|&x| ((x.to_bits() >> 16) as u16).to_le_bytes())
            .collect();
        write(
            &dir.path().join("model.safetensors"),
            &[
                ("a", "F32", &[2, 1], f32_bytes(&[0.1, f32::MIN_POSITIVE])),
                ("b", "F16", &[2], f16),
                ("c", "BF16", &[2], bf16),
                ("ids", "I64", &[1], vec![7, 0, 0, 0, 0, 0, 0, 0]),
            ],
        );
        let ck = Checkpoint::open(dir.path()).unwrap();
        let get = |n: &str| ck.tensors.iter().find(|t| t.name == n).unwrap();
        assert_eq!(get("a").shape, [2, 1]);
        assert_eq!(ck.read_f32(get("a")).unwrap(), [0.1, f32::MIN_POSITIVE]);
        assert_eq!(ck.read_f32(get("b")).unwrap(), [1.5, -2.0]);
        assert_eq!(ck.read_f32(get("c")).unwrap(), [0.15625, 3.0]);
        let e = ck.read_f32(get("ids")).unwrap_err().to_string();
        assert!(e.contains("`ids`") && e.contains("I64"), "{e}");
    }

    #[test]
    fn shards_from_the_index() {
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join("m-1.safetensors"),
            &[("a", "F32", &[1], f32_bytes(&[1.0]))],
        );
        write(
            &dir.path().join("m-2.safetensors"),
            &[("b", "F32", &[1], f32_bytes(&[2.0]))],
        );
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "m-1.safetensors", "b": "m-2.safetensors"}}"#,
        )
        .unwrap();
        let ck = Checkpoint::open(dir.path()).unwrap();
        let values: Vec<_> = ck.tensors.iter().map(|t| ck.read_f32(t).unwrap()).collect();
        assert_eq!(values, [[1.0], [2.0]]);
        std::fs::write(
            dir.path().join("model.safetensors.index.json"),
            r#"{"weight_map": {"a": "../m-1.safetensors"}}"#,
        )
        .unwrap();
        assert!(matches!(
            Checkpoint::open(dir.path()),
            Err(ConvertError::BadKey { .. })
        ));
    }

    #[test]
    fn malformed_headers_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let e = Checkpoint::open(dir.path()).err().unwrap();
        assert!(matches!(e, ConvertError::MissingFile { .. }), "{e}");
        let with_header = |h: &str, data: usize| {
            let mut out = (h.len() as u64).to_le_bytes().to_vec();
            out.extend_from_slice(h.as_bytes());
            out.resize(out.len() + data, 0);
            std::fs::write(&path, out).unwrap();
            Checkpoint::open(dir.path()).err().unwrap().to_string()
        };
        let cases = [
            (
                r#"{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}"#,
                4,
                "outside",
            ),
            (
                r#"{"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}"#,
                8,
                "not 12",
            ),
            (
                r#"{"a": {"dtype": "F32", "shape": [2]}}"#,
                8,
                "two data_offsets",
            ),
            ("[1, 2]", 0, "not a JSON object"),
        ];
        for (header, data, want) in cases {
            let e = with_header(header, data);
            assert!(e.contains(want), "{header}: {e}");
        }
        std::fs::write(&path, [0xff; 12]).unwrap();
        let e = Checkpoint::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("header length"), "{e}");
        std::fs::write(&path, [1, 2]).unwrap();
        let e = Checkpoint::open(dir.path()).err().unwrap().to_string();
        assert!(e.contains("too short"), "{e}");
    }
}
