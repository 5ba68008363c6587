//! Writing GGUF files (version 3).

use std::collections::HashSet;
use std::io::{self, Write};

use crate::reader::{DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_NESTING, MAX_DIMS, MAX_TENSOR_NAME};
use crate::value::type_id;
use crate::{GgmlType, GgufError, Value};

const ALIGNMENT_KEY: &str = "general.alignment";

struct PendingTensor {
    name: String,
    dims: Vec<u64>,
    ty: GgmlType,
    data: Vec<u8>,
}

/// Builds a GGUF version 3 file: metadata in insertion order, then tensor infos, then the tensor
/// data with every tensor aligned (and padded) to the file's alignment, as llama.cpp lays it out.
///
/// ```
/// use gguf::{GgmlType, Gguf, GgufWriter, Value};
/// let mut w = GgufWriter::new();
/// w.add_metadata("general.architecture", Value::from("llama"));
/// w.add_tensor("output_norm.weight", &[4], GgmlType::F32, vec![0; 16]).unwrap();
/// let file = Gguf::from_bytes(w.to_bytes()).unwrap();
/// assert_eq!(file.architecture(), Some("llama"));
/// ```
pub struct GgufWriter {
    alignment: u64,
    metadata: Vec<(String, Value)>,
    tensors: Vec<PendingTensor>,
    names: HashSet<String>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl GgufWriter {
    /// An empty file with the default alignment of 32 bytes.
    pub fn new() -> GgufWriter {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
        }
    }

    /// Sets the alignment of tensor data and records it as `general.alignment` (u32).
    ///
    /// # Panics
    /// If `alignment` is not a power of two that fits in a `u32`.
    pub fn with_alignment(mut self, alignment: u64) -> GgufWriter {
        self.set_alignment(alignment);
        self
    }

    fn set_alignment(&mut self, alignment: u64) {
        assert!(
            alignment.is_power_of_two() && alignment <= u64::from(u32::MAX),
            "GGUF alignment must be a power of two that fits in a u32, got {alignment}"
        );
        self.alignment = alignment;
        self.upsert(ALIGNMENT_KEY, Value::U32(alignment as u32));
    }

    /// The alignment tensor data will be written with.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Adds a metadata entry; adding a key again replaces its value in place (keeping its
    /// position). Adding `general.alignment` sets the alignment, as [`GgufWriter::with_alignment`].
    ///
    /// Empty arrays are written with element type u8. Nested arrays are valid GGUF and read back
    /// by this crate, but llama.cpp rejects them.
    ///
    /// # Panics
    /// If the key is empty, if an array mixes element types (GGUF arrays are homogeneous), if
    /// arrays nest deeper than [`crate::MAX_ARRAY_NESTING`], or if `general.alignment` is not a
    /// power-of-two integer that fits in a u32: all of them would make a file no reader accepts.
    pub fn add_metadata(&mut self, key: &str, value: Value) {
        assert!(!key.is_empty(), "GGUF metadata keys must not be empty");
        if let Err(why) = check_value(&value, 0) {
            panic!("cannot write metadata key `{key}`: {why}");
        }
        if key == ALIGNMENT_KEY {
            match value.as_u64() {
                Some(a) => self.set_alignment(a),
                None => panic!(
                    "`{ALIGNMENT_KEY}` must be a power-of-two integer, got {}",
                    value.describe()
                ),
            }
            return;
        }
        self.upsert(key, value);
    }

    fn upsert(&mut self, key: &str, value: Value) {
        match self.metadata.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.metadata.push((key.to_owned(), value)),
        }
    }

    /// Adds a tensor of shape `dims` (`ne[0]` first, at most 4 dims) and type `ty` whose encoded
    /// bytes are `data`. Checks what the reader checks: a unique name shorter than 64 bytes, at
    /// most 4 dims, an element count that fits, whole blocks per row, and `data` of exactly the
    /// size the shape and type require.
    pub fn add_tensor(
        &mut self,
        name: &str,
        dims: &[u64],
        ty: GgmlType,
        data: Vec<u8>,
    ) -> Result<(), GgufError> {
        if name.len() as u64 >= MAX_TENSOR_NAME {
            return Err(GgufError::NameTooLong {
                tensor: name.to_owned(),
                len: name.len() as u64,
                limit: MAX_TENSOR_NAME - 1,
            });
        }
        if self.names.contains(name) {
            return Err(GgufError::DuplicateTensor {
                tensor: name.to_owned(),
                offset: 0,
            });
        }
        if dims.len() > MAX_DIMS as usize {
            return Err(GgufError::TooManyDims {
                tensor: name.to_owned(),
                offset: 0,
                n_dims: dims.len() as u32,
                limit: MAX_DIMS,
            });
        }
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64 && dims.iter().all(|&d| d <= i64::MAX as u64));
        let Some(n_elements) = n_elements else {
            return Err(GgufError::ElementCountOverflow {
                tensor: name.to_owned(),
                offset: 0,
                dims: dims.to_vec(),
            });
        };
        let ne0 = dims.first().copied().unwrap_or(1);
        let block_size = ty.block_size() as u64;
        if ne0 % block_size != 0 {
            return Err(GgufError::NotWholeBlocks {
                tensor: name.to_owned(),
                ty,
                ne0,
                block_size,
                dims: dims.to_vec(),
            });
        }
        let expected = ty
            .bytes_for(n_elements)
            .ok_or_else(|| GgufError::TooLarge {
                field: format!("element count of tensor `{name}` ({ty})"),
                offset: 0,
                value: n_elements,
                limit: u64::MAX / ty.type_size() as u64 * block_size,
            })?;
        if data.len() as u64 != expected {
            return Err(GgufError::DataSizeMismatch {
                tensor: name.to_owned(),
                expected,
                got: data.len() as u64,
            });
        }
        self.names.insert(name.to_owned());
        self.tensors.push(PendingTensor {
            name: name.to_owned(),
            dims: dims.to_vec(),
            ty,
            data,
        });
        Ok(())
    }

    /// Writes the file to `out` (the header is assembled in memory first, then each tensor's
    /// data is written with one `write_all`, so `out` need not be buffered).
    pub fn write_to(&self, mut out: impl Write) -> io::Result<()> {
        let header = self.header();
        out.write_all(&header)?;
        let mut pos = header.len() as u64;
        for t in &self.tensors {
            let pad = padding(pos, self.alignment);
            write_zeros(&mut out, pad)?;
            out.write_all(&t.data)?;
            pos += pad + t.data.len() as u64;
        }
        if !self.tensors.is_empty() {
            write_zeros(&mut out, padding(pos, self.alignment))?;
        }
        out.flush()
    }

    /// The file as bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .expect("writing to a Vec<u8> cannot fail");
        out
    }

    /// Magic, version, counts, metadata and tensor infos.
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend_from_slice(&MAGIC);
        h.extend_from_slice(&3u32.to_le_bytes());
        h.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        h.extend_from_slice(&(self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut h, key);
            h.extend_from_slice(&value.type_id().to_le_bytes());
            put_value(&mut h, value);
        }
        let mut offset = 0u64;
        for t in &self.tensors {
            put_str(&mut h, &t.name);
            h.extend_from_slice(&(t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                h.extend_from_slice(&d.to_le_bytes());
            }
            h.extend_from_slice(&t.ty.id().to_le_bytes());
            h.extend_from_slice(&offset.to_le_bytes());
            let len = t.data.len() as u64;
            offset += len + padding(len, self.alignment);
        }
        h
    }
}

/// Bytes needed after `pos` to reach a multiple of `align` (a power of two).
fn padding(pos: u64, align: u64) -> u64 {
    pos.wrapping_neg() & (align - 1)
}

fn write_zeros(out: &mut impl Write, mut n: u64) -> io::Result<()> {
    const ZEROS: [u8; 4096] = [0; 4096];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64);
        out.write_all(&ZEROS[..k as usize])?;
        n -= k;
    }
    Ok(())
}

fn put_str(h: &mut Vec<u8>, s: &str) {
    h.extend_from_slice(&(s.len() as u64).to_le_bytes());
    h.extend_from_slice(s.as_bytes());
}

fn put_value(h: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => h.push(*x),
        Value::I8(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I16(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::U32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F32(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Bool(x) => h.push(u8::from(*x)),
        Value::String(s) => put_str(h, s),
        Value::U64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::I64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::F64(x) => h.extend_from_slice(&x.to_le_bytes()),
        Value::Array(a) => {
            let elem_ty = a.first().map_or(type_id::U8, Value::type_id);
            h.extend_from_slice(&elem_ty.to_le_bytes());
            h.extend_from_slice(&(a.len() as u64).to_le_bytes());
            for e in a {
                put_value(h, e);
            }
        }
    }
}

/// Checks that `v` can be encoded: arrays homogeneous and nested at most `MAX_ARRAY_NESTING` deep.
fn check_value(v: &Value, depth: u32) -> Result<(), String> {
    let Value::Array(a) = v else {
        return Ok(());
    };
    if depth + 1 > MAX_ARRAY_NESTING {
        return Err(format!(
            "arrays nest deeper than {MAX_ARRAY_NESTING} levels"
        ));
    }
    if let Some(first) = a.first() {
        if let Some(other) = a.iter().find(|e| e.type_id() != first.type_id()) {
            return Err(format!(
                "GGUF arrays are homogeneous, but this one mixes {} and {}",
                first.type_name(),
                other.type_name()
            ));
        }
    }
    a.iter().try_for_each(|e| check_value(e, depth + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rounds_up_to_alignment() {
        assert_eq!(padding(0, 32), 0);
        assert_eq!(padding(1, 32), 31);
        assert_eq!(padding(32, 32), 0);
        assert_eq!(padding(33, 64), 31);
        assert_eq!(padding(5, 1), 0);
    }

    #[test]
    fn check_value_rejects_mixed_and_deep_arrays() {
        let mixed = Value::Array(vec![Value::U8(1), Value::from("x")]);
        assert!(check_value(&mixed, 0)
            .unwrap_err()
            .contains("mixes u8 and str"));
        let mut deep = Value::Array(vec![]);
        for _ in 0..MAX_ARRAY_NESTING - 1 {
            deep = Value::Array(vec![deep]);
        }
        assert!(check_value(&deep, 0).is_ok());
        assert!(check_value(&Value::Array(vec![deep]), 0).is_err());
        // Nested arrays may differ from each other.
        let ragged = Value::Array(vec![
            Value::Array(vec![Value::U8(1)]),
            Value::Array(vec![Value::from("a"), Value::from("b")]),
        ]);
        assert!(check_value(&ragged, 0).is_ok());
    }

    #[test]
    #[should_panic(expected = "homogeneous")]
    fn add_metadata_panics_on_mixed_array() {
        GgufWriter::new().add_metadata("k", Value::Array(vec![Value::U8(1), Value::I8(1)]));
    }

    #[test]
    fn add_tensor_validates() {
        let mut w = GgufWriter::new();
        w.add_tensor("a", &[32], GgmlType::Q8_0, vec![0; 34])
            .unwrap();
        assert!(matches!(
            w.add_tensor("a", &[1], GgmlType::F32, vec![0; 4]),
            Err(GgufError::DuplicateTensor { .. })
        ));
        assert!(matches!(
            w.add_tensor("b", &[16], GgmlType::Q8_0, vec![0; 17]),
            Err(GgufError::NotWholeBlocks { .. })
        ));
        assert!(matches!(
            w.add_tensor("b", &[2], GgmlType::F32, vec![0; 4]),
            Err(GgufError::DataSizeMismatch {
                expected: 8,
                got: 4,
                ..
            })
        ));
        assert!(matches!(
            w.add_tensor("b", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4]),
            Err(GgufError::TooManyDims { n_dims: 5, .. })
        ));
        assert!(matches!(
            w.add_tensor("b", &[1 << 40, 1 << 40], GgmlType::F32, vec![]),
            Err(GgufError::ElementCountOverflow { .. })
        ));
        assert!(matches!(
            w.add_tensor(&"x".repeat(64), &[1], GgmlType::F32, vec![0; 4]),
            Err(GgufError::NameTooLong { len: 64, .. })
        ));
        w.add_tensor(&"x".repeat(63), &[1], GgmlType::F32, vec![0; 4])
            .unwrap();
    }

    #[test]
    fn alignment_key_tracks_alignment() {
        let mut w = GgufWriter::new().with_alignment(64);
        w.add_metadata("a", Value::U8(1));
        w.add_metadata("general.alignment", Value::U64(128));
        assert_eq!(w.alignment(), 128);
        assert_eq!(
            w.metadata,
            vec![
                ("general.alignment".to_owned(), Value::U32(128)),
                ("a".to_owned(), Value::U8(1)),
            ]
        );
    }
}
