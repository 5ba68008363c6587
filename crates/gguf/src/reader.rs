//! The bounded, zero-copy GGUF reader.
//!
//! Parsing walks the file once with a cursor that never indexes past the end: every read goes
//! through [`Cursor::take`], which checks the declared length against the bytes that remain. Counts
//! are checked against hard limits and against the bytes that remain *before* anything is allocated
//! for them, so the memory a parse uses is bounded by a small multiple of the file size (and by
//! [`MAX_METADATA_VALUES`] for metadata).

use std::fs::File;
use std::path::Path;

use crate::value::type_id;
use crate::{GgmlType, GgufError, Value};

/// The alignment of tensor data when a file has no `general.alignment` key.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// How deeply metadata arrays may nest (an array of arrays is depth 2).
pub const MAX_ARRAY_NESTING: u32 = 8;
/// The most metadata values a file may hold, counting every key-value pair and every array element
/// (nested ones included). Real models hold a few million at most (the tokenizer's vocabulary,
/// scores, token types and merges); the limit bounds the memory a crafted file can make the reader
/// allocate, since a one-byte array element becomes a 32-byte [`Value`].
pub const MAX_METADATA_VALUES: u64 = 1 << 24;
/// The most tensors a file may declare.
pub const MAX_TENSORS: u64 = 1 << 24;
/// Tensor names must be shorter than this many bytes to be accepted by llama.cpp
/// (`GGML_MAX_NAME`); the writer enforces it, the reader tolerates longer names.
pub const MAX_TENSOR_NAME: u64 = 64;

/// The magic bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// Smallest possible encodings, used to bound counts by the bytes that remain.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1; // key length, one key byte, value type, a u8 value
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8; // name length, n_dims, type, offset

/// Where the bytes of a [`Gguf`] live.
enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// The description of one tensor in a GGUF file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// The shape, `ne[0]` (the innermost, contiguous dimension) first; 0 to 4 entries.
    pub dims: Vec<u64>,
    /// The element type.
    pub ty: GgmlType,
    /// Absolute byte offset of the tensor's data in the file (a multiple of the alignment).
    pub offset: u64,
    /// Size of the tensor's data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The number of elements (product of the dims; 1 for a 0-dimensional tensor). Checked when
    /// the file is read; saturates at `u64::MAX` for a hand-built info that overflows.
    pub fn n_elements(&self) -> u64 {
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .unwrap_or(u64::MAX)
    }

    /// The shape padded to four dims with 1s, as ggml's `ne[4]`.
    pub fn shape(&self) -> [u64; 4] {
        let mut ne = [1u64; 4];
        for (n, &d) in ne.iter_mut().zip(&self.dims) {
            *n = d;
        }
        ne
    }

    /// Bytes in one row of `ne[0]` elements (ggml's `nb[1]`); `None` if `ne[0]` is not a whole
    /// number of blocks (never the case for an info read from a file).
    pub fn row_bytes(&self) -> Option<u64> {
        self.ty.bytes_for(self.shape()[0])
    }
}

/// A parsed GGUF file: its metadata, its tensor table, and its bytes (memory-mapped or owned).
///
/// Everything was validated when the file was read; the accessors cannot fail.
pub struct Gguf {
    storage: Storage,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    /// Indices into `metadata`, sorted by key.
    key_index: Vec<u32>,
    tensors: Vec<TensorInfo>,
    /// Indices into `tensors`, sorted by name.
    tensor_index: Vec<u32>,
}

impl std::fmt::Debug for Gguf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gguf")
            .field("version", &self.version)
            .field("file_size", &self.file_size())
            .field("alignment", &self.alignment)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Opens and memory-maps the file at `path`, then parses and validates it.
    pub fn open(path: impl AsRef<Path>) -> Result<Gguf, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        if !meta.is_file() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file; give the path of a .gguf file",
            )));
        }
        if meta.len() == 0 {
            // mmap cannot map zero bytes; an empty file is simply truncated.
            return Gguf::from_storage(Storage::Owned(Vec::new()));
        }
        // SAFETY: `Mmap::map` is unsafe because the mapping aliases the file: if another process
        // truncates or rewrites the file while it is mapped, reads through the slice can fault
        // (SIGBUS) or observe changing bytes. Hearth only maps model files it treats as read-only
        // (the store never modifies a blob in place; replacing a model writes a new file and
        // renames it), and all validation below works on the bytes as read, so a concurrent
        // writer can at worst yield garbage tensor values, never an out-of-bounds access by us.
        // This is the same contract llama.cpp and every mmap-based loader relies on.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Gguf::from_storage(Storage::Mmap(map))
    }

    /// Parses and validates a GGUF file held in memory.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Gguf::from_storage(Storage::Owned(bytes))
    }

    fn from_storage(storage: Storage) -> Result<Gguf, GgufError> {
        let p = parse(storage.bytes())?;
        Ok(Gguf {
            storage,
            version: p.version,
            alignment: p.alignment,
            data_offset: p.data_offset,
            metadata: p.metadata,
            key_index: p.key_index,
            tensors: p.tensors,
            tensor_index: p.tensor_index,
        })
    }

    /// The format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// The metadata key-value pairs, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let i = self
            .key_index
            .binary_search_by(|&i| self.metadata[i as usize].0.as_str().cmp(key))
            .ok()?;
        Some(&self.metadata[self.key_index[i] as usize].1)
    }

    /// `get(key)` as a non-negative integer of any width.
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(Value::as_u64)
    }

    /// `get(key)` as an `f32` (floats and integers).
    pub fn get_f32(&self, key: &str) -> Option<f32> {
        self.get(key).and_then(Value::as_f32)
    }

    /// `get(key)` as a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// `get(key)` as an array.
    pub fn get_array(&self, key: &str) -> Option<&[Value]> {
        self.get(key).and_then(Value::as_array)
    }

    /// `general.architecture` (`llama`, `qwen3`, ...), if present.
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// The tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        let i = self
            .tensor_index
            .binary_search_by(|&i| self.tensors[i as usize].name.as_str().cmp(name))
            .ok()?;
        Some(&self.tensors[self.tensor_index[i] as usize])
    }

    /// The bytes of tensor `t`, borrowed from the map: exactly `t.n_bytes` long, starting at the
    /// aligned absolute offset `t.offset`. `t` must come from this file's [`Gguf::tensors`]; for an
    /// info that does not lie within the file, the slice is empty.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = usize::try_from(t.offset).ok().and_then(|start| {
            let end = start.checked_add(usize::try_from(t.n_bytes).ok()?)?;
            Some(start..end)
        });
        range
            .and_then(|r| self.storage.bytes().get(r))
            .unwrap_or(&[])
    }

    /// The file size in bytes.
    pub fn file_size(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// The absolute offset where the tensor data section starts (the end of the header padded to
    /// the alignment; the end of the header if the file has no tensors).
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    /// Whether the bytes are memory-mapped (from [`Gguf::open`]) rather than owned.
    pub fn is_mmapped(&self) -> bool {
        matches!(self.storage, Storage::Mmap(_))
    }
}

/// The result of [`parse`], before it is joined with its storage.
struct Parsed {
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(String, Value)>,
    key_index: Vec<u32>,
    tensors: Vec<TensorInfo>,
    tensor_index: Vec<u32>,
}

/// A bounds-checked read position in the file.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

type Field<'f> = &'f dyn Fn() -> String;

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    fn remaining(&self) -> u64 {
        self.rest().len() as u64
    }

    fn file_size(&self) -> u64 {
        self.buf.len() as u64
    }

    fn truncated(&self, field: String, needed: u64) -> GgufError {
        GgufError::Truncated {
            field,
            offset: self.offset(),
            needed,
            available: self.remaining(),
            file_size: self.file_size(),
        }
    }

    /// The next `n` bytes, or `Truncated` if fewer remain.
    fn take(&mut self, n: u64, field: Field) -> Result<&'a [u8], GgufError> {
        let rest = self.rest();
        match usize::try_from(n).ok().and_then(|n| rest.get(..n)) {
            Some(s) => {
                self.pos += s.len();
                Ok(s)
            }
            None => Err(self.truncated(field(), n)),
        }
    }

    fn fixed<const N: usize>(&mut self, field: Field) -> Result<[u8; N], GgufError> {
        match self.rest().first_chunk::<N>() {
            Some(a) => {
                self.pos += N;
                Ok(*a)
            }
            None => Err(self.truncated(field(), N as u64)),
        }
    }

    fn u32(&mut self, field: Field) -> Result<u32, GgufError> {
        self.fixed(field).map(u32::from_le_bytes)
    }

    fn u64(&mut self, field: Field) -> Result<u64, GgufError> {
        self.fixed(field).map(u64::from_le_bytes)
    }

    /// A GGUF string: `u64` length, then that many bytes of UTF-8.
    fn string(&mut self, field: Field) -> Result<String, GgufError> {
        let len = self.u64(&|| format!("length of {}", field()))?;
        let start = self.offset();
        let bytes = self.take(len, field)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(_) => Err(GgufError::InvalidUtf8 {
                field: field(),
                offset: start,
            }),
        }
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in what remains.
    fn check_count(&self, count: u64, min_size: u64, field: Field) -> Result<(), GgufError> {
        let needed = count.saturating_mul(min_size);
        if needed > self.remaining() {
            return Err(self.truncated(field(), needed));
        }
        Ok(())
    }
}

/// Size in bytes of one value of a fixed-size type, or the minimum size of a variable one.
fn min_value_size(ty: u32) -> u64 {
    match ty {
        type_id::U8 | type_id::I8 | type_id::BOOL => 1,
        type_id::U16 | type_id::I16 => 2,
        type_id::U32 | type_id::I32 | type_id::F32 => 4,
        type_id::U64 | type_id::I64 | type_id::F64 => 8,
        type_id::STRING => 8,
        _ => 4 + 8, // array: element type and count
    }
}

fn known_value_type(ty: u32) -> bool {
    ty <= type_id::F64
}

/// Decodes one fixed-size value from exactly `min_value_size(ty)` bytes.
fn decode_fixed(ty: u32, b: &[u8]) -> Option<Value> {
    Some(match ty {
        type_id::U8 => Value::U8(*b.first()?),
        type_id::I8 => Value::I8(i8::from_le_bytes(*b.first_chunk()?)),
        type_id::BOOL => Value::Bool(*b.first()? != 0),
        type_id::U16 => Value::U16(u16::from_le_bytes(*b.first_chunk()?)),
        type_id::I16 => Value::I16(i16::from_le_bytes(*b.first_chunk()?)),
        type_id::U32 => Value::U32(u32::from_le_bytes(*b.first_chunk()?)),
        type_id::I32 => Value::I32(i32::from_le_bytes(*b.first_chunk()?)),
        type_id::F32 => Value::F32(f32::from_le_bytes(*b.first_chunk()?)),
        type_id::U64 => Value::U64(u64::from_le_bytes(*b.first_chunk()?)),
        type_id::I64 => Value::I64(i64::from_le_bytes(*b.first_chunk()?)),
        type_id::F64 => Value::F64(f64::from_le_bytes(*b.first_chunk()?)),
        _ => return None,
    })
}

struct ValueReader<'c, 'a> {
    cur: &'c mut Cursor<'a>,
    /// How many more values may be created (see [`MAX_METADATA_VALUES`]).
    budget: u64,
}

impl ValueReader<'_, '_> {
    /// Reads a value of type `ty` (already validated as known) for key `key`. `depth` is the
    /// number of arrays enclosing it.
    fn value(&mut self, ty: u32, key: &str, depth: u32, field: Field) -> Result<Value, GgufError> {
        match ty {
            type_id::STRING => self.cur.string(field).map(Value::String),
            type_id::ARRAY => self.array(key, depth + 1),
            _ => {
                let size = min_value_size(ty);
                let b = self.cur.take(size, field)?;
                // `take` returned exactly `size` bytes, so decoding cannot fail.
                decode_fixed(ty, b).ok_or_else(|| GgufError::UnknownValueType {
                    key: key.to_owned(),
                    offset: self.cur.offset(),
                    id: ty,
                })
            }
        }
    }

    /// Reads an array (element type, count, elements) at nesting depth `depth` (1 = outermost).
    fn array(&mut self, key: &str, depth: u32) -> Result<Value, GgufError> {
        let ty_offset = self.cur.offset();
        if depth > MAX_ARRAY_NESTING {
            return Err(GgufError::NestingTooDeep {
                key: key.to_owned(),
                offset: ty_offset,
                limit: MAX_ARRAY_NESTING,
            });
        }
        let elem_ty = self.cur.u32(&|| format!("element type of array `{key}`"))?;
        if !known_value_type(elem_ty) {
            return Err(GgufError::UnknownValueType {
                key: key.to_owned(),
                offset: ty_offset,
                id: elem_ty,
            });
        }
        let count_offset = self.cur.offset();
        let count = self
            .cur
            .u64(&|| format!("element count of array `{key}`"))?;
        if count > self.budget {
            return Err(GgufError::TooLarge {
                field: format!(
                    "element count of array `{key}` (counting all metadata values read so far)"
                ),
                offset: count_offset,
                value: count,
                limit: self.budget,
            });
        }
        let min_size = min_value_size(elem_ty);
        self.cur.check_count(count, min_size, &|| {
            format!("the {count} elements of array `{key}`")
        })?;
        self.budget -= count;
        // Both checks above bound `count`: by the budget and by the bytes that remain.
        let mut out = Vec::with_capacity(count as usize);
        match elem_ty {
            type_id::STRING | type_id::ARRAY => {
                for i in 0..count {
                    let field = || format!("element {i} of array `{key}`");
                    out.push(self.value(elem_ty, key, depth, &field)?);
                }
            }
            _ => {
                let bytes = self.cur.take(count * min_size, &|| {
                    format!("the {count} elements of array `{key}`")
                })?;
                for chunk in bytes.chunks_exact(min_size as usize) {
                    if let Some(v) = decode_fixed(elem_ty, chunk) {
                        out.push(v);
                    }
                }
            }
        }
        Ok(Value::Array(out))
    }
}

/// Rounds `x` up to a multiple of `align` (a power of two).
fn pad(x: u64, align: u64) -> Option<u64> {
    Some(x.checked_add(align - 1)? & !(align - 1))
}

/// Indices `0..n` sorted by `key`; returns the first adjacent pair with equal keys (earlier file
/// index first) if any.
fn sorted_index<'k>(
    n: usize,
    key: impl Fn(usize) -> &'k str,
) -> (Vec<u32>, Option<(usize, usize)>) {
    let mut idx: Vec<u32> = (0..n as u32).collect();
    // Stable: equal keys stay in file order.
    idx.sort_by(|&a, &b| key(a as usize).cmp(key(b as usize)));
    let dup = idx
        .windows(2)
        .find(|w| key(w[0] as usize) == key(w[1] as usize))
        .map(|w| (w[0] as usize, w[1] as usize));
    (idx, dup)
}

fn parse(buf: &[u8]) -> Result<Parsed, GgufError> {
    let mut cur = Cursor { buf, pos: 0 };

    // Header.
    let magic = cur.fixed::<4>(&|| "magic number \"GGUF\"".to_owned())?;
    if magic != MAGIC {
        return Err(GgufError::BadMagic { got: magic });
    }
    let version = cur.u32(&|| "format version".to_owned())?;
    if version != 2 && version != 3 {
        if matches!(version.swap_bytes(), 2 | 3) {
            return Err(GgufError::BigEndian { version });
        }
        return Err(GgufError::UnsupportedVersion { version });
    }
    let n_tensors_offset = cur.offset();
    let n_tensors = cur.u64(&|| "tensor count".to_owned())?;
    if n_tensors > MAX_TENSORS {
        return Err(GgufError::TooLarge {
            field: "tensor count".to_owned(),
            offset: n_tensors_offset,
            value: n_tensors,
            limit: MAX_TENSORS,
        });
    }
    let n_kv_offset = cur.offset();
    let n_kv = cur.u64(&|| "metadata entry count".to_owned())?;
    if n_kv > MAX_METADATA_VALUES {
        return Err(GgufError::TooLarge {
            field: "metadata entry count".to_owned(),
            offset: n_kv_offset,
            value: n_kv,
            limit: MAX_METADATA_VALUES,
        });
    }
    cur.check_count(n_kv, MIN_KV_BYTES, &|| {
        format!("the {n_kv} metadata entries")
    })?;

    // Metadata.
    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(n_kv as usize);
    let mut key_offsets: Vec<u64> = Vec::with_capacity(n_kv as usize);
    let mut values = ValueReader {
        cur: &mut cur,
        budget: MAX_METADATA_VALUES - n_kv,
    };
    for i in 0..n_kv {
        let key_offset = values.cur.offset();
        let key = values
            .cur
            .string(&|| format!("key of metadata entry #{i}"))?;
        if key.is_empty() {
            return Err(GgufError::EmptyKey {
                index: i,
                offset: key_offset,
            });
        }
        let ty_offset = values.cur.offset();
        let ty = values.cur.u32(&|| format!("value type of `{key}`"))?;
        if !known_value_type(ty) {
            return Err(GgufError::UnknownValueType {
                key,
                offset: ty_offset,
                id: ty,
            });
        }
        let value = values.value(ty, &key, 0, &|| format!("value of `{key}`"))?;
        metadata.push((key, value));
        key_offsets.push(key_offset);
    }
    let (key_index, dup) = sorted_index(metadata.len(), |i| metadata[i].0.as_str());
    if let Some((_, second)) = dup {
        return Err(GgufError::DuplicateKey {
            key: metadata[second].0.clone(),
            offset: key_offsets[second],
        });
    }
    let lookup = |key: &str| {
        key_index
            .binary_search_by(|&i| metadata[i as usize].0.as_str().cmp(key))
            .ok()
            .map(|i| &metadata[key_index[i] as usize].1)
    };
    let alignment = match lookup("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(v) => match v.as_u64() {
            Some(a) if a.is_power_of_two() && a <= u64::from(u32::MAX) => a,
            _ => return Err(GgufError::BadAlignment { got: v.describe() }),
        },
    };

    // Tensor infos.
    cur.check_count(n_tensors, MIN_TENSOR_INFO_BYTES, &|| {
        format!("the {n_tensors} tensor infos")
    })?;
    // (info, offset relative to the data section, file offset of the info)
    let mut infos: Vec<(TensorInfo, u64, u64)> = Vec::with_capacity(n_tensors as usize);
    for i in 0..n_tensors {
        let info_offset = cur.offset();
        let name = cur.string(&|| format!("name of tensor #{i}"))?;
        let n_dims_offset = cur.offset();
        let n_dims = cur.u32(&|| format!("dimension count of tensor `{name}`"))?;
        if n_dims > MAX_DIMS {
            return Err(GgufError::TooManyDims {
                tensor: name,
                offset: n_dims_offset,
                n_dims,
                limit: MAX_DIMS,
            });
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for j in 0..n_dims {
            dims.push(cur.u64(&|| format!("dimension {j} of tensor `{name}`"))?);
        }
        // Dims are int64 on disk: each must be non-negative and so must their product.
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64 && dims.iter().all(|&d| d <= i64::MAX as u64));
        let Some(n_elements) = n_elements else {
            return Err(GgufError::ElementCountOverflow {
                tensor: name,
                offset: n_dims_offset,
                dims,
            });
        };
        let ty_offset = cur.offset();
        let ty_id = cur.u32(&|| format!("type of tensor `{name}`"))?;
        let Some(ty) = GgmlType::from_id(ty_id) else {
            return Err(GgufError::UnknownTensorType {
                tensor: name,
                offset: ty_offset,
                id: ty_id,
            });
        };
        let ne0 = dims.first().copied().unwrap_or(1);
        let block_size = ty.block_size() as u64;
        if ne0 % block_size != 0 {
            return Err(GgufError::NotWholeBlocks {
                tensor: name,
                ty,
                ne0,
                block_size,
                dims,
            });
        }
        // ne0 is whole blocks, so the only way this fails is overflow.
        let Some(n_bytes) = ty.bytes_for(n_elements) else {
            return Err(GgufError::TooLarge {
                field: format!("element count of tensor `{name}` ({ty})"),
                offset: n_dims_offset,
                value: n_elements,
                limit: u64::MAX / ty.type_size() as u64 * block_size,
            });
        };
        let rel = cur.u64(&|| format!("data offset of tensor `{name}`"))?;
        infos.push((
            TensorInfo {
                name,
                dims,
                ty,
                offset: 0,
                n_bytes,
            },
            rel,
            info_offset,
        ));
    }
    let (tensor_index, dup) = sorted_index(infos.len(), |i| infos[i].0.name.as_str());
    if let Some((_, second)) = dup {
        return Err(GgufError::DuplicateTensor {
            tensor: infos[second].0.name.clone(),
            offset: infos[second].2,
        });
    }

    // The data section.
    let header_end = cur.offset();
    let file_size = cur.file_size();
    let data_offset = if n_tensors == 0 {
        header_end
    } else {
        match pad(header_end, alignment).filter(|&d| d <= file_size) {
            Some(d) => d,
            None => {
                return Err(cur.truncated(
                    format!("padding to the {alignment}-byte aligned tensor data"),
                    pad(header_end, alignment).map_or(u64::MAX, |d| d - header_end),
                ))
            }
        }
    };
    let mut tensors = Vec::with_capacity(infos.len());
    for (mut t, rel, _) in infos {
        if rel % alignment != 0 {
            return Err(GgufError::MisalignedTensor {
                tensor: t.name,
                offset: rel,
                alignment,
            });
        }
        let offset = data_offset.checked_add(rel);
        let end = offset.and_then(|o| o.checked_add(t.n_bytes));
        match (offset, end) {
            (Some(offset), Some(end)) if end <= file_size => t.offset = offset,
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: t.name,
                    offset: data_offset.saturating_add(rel),
                    size: t.n_bytes,
                    file_size,
                })
            }
        }
        tensors.push(t);
    }
    // No two tensors may share bytes. (llama.cpp goes further and requires them to be packed
    // contiguously in file order; we accept gaps and any order.)
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().filter(|t| t.n_bytes > 0).collect();
    by_offset.sort_by_key(|t| (t.offset, t.n_bytes));
    if let Some(w) = by_offset
        .windows(2)
        .find(|w| w[0].offset + w[0].n_bytes > w[1].offset)
    {
        return Err(GgufError::OverlappingTensors {
            first: w[0].name.clone(),
            first_offset: w[0].offset,
            first_end: w[0].offset + w[0].n_bytes,
            second: w[1].name.clone(),
            second_offset: w[1].offset,
        });
    }

    Ok(Parsed {
        version,
        alignment,
        data_offset,
        metadata,
        key_index,
        tensors,
        tensor_index,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GgufWriter;

    fn all_scalars() -> Vec<(&'static str, Value)> {
        vec![
            ("t.u8", Value::U8(200)),
            ("t.i8", Value::I8(-100)),
            ("t.u16", Value::U16(60000)),
            ("t.i16", Value::I16(-30000)),
            ("t.u32", Value::U32(4_000_000_000)),
            ("t.i32", Value::I32(-2_000_000_000)),
            ("t.f32", Value::F32(-1.5e-7)),
            ("t.bool_true", Value::Bool(true)),
            ("t.bool_false", Value::Bool(false)),
            ("t.string", Value::from("héllo wörld ✓")),
            ("t.empty_string", Value::from("")),
            ("t.u64", Value::U64(u64::MAX)),
            ("t.i64", Value::I64(i64::MIN)),
            ("t.f64", Value::F64(std::f64::consts::PI)),
        ]
    }

    fn all_arrays() -> Vec<(&'static str, Value)> {
        let arr = |v: Vec<Value>| Value::Array(v);
        vec![
            ("a.u8", arr(vec![Value::U8(0), Value::U8(255)])),
            ("a.i8", arr(vec![Value::I8(-1), Value::I8(1)])),
            (
                "a.u16",
                arr(vec![Value::U16(1), Value::U16(2), Value::U16(3)]),
            ),
            ("a.i16", arr(vec![Value::I16(-7)])),
            ("a.u32", arr((0..100).map(Value::U32).collect())),
            ("a.i32", arr(vec![Value::I32(-5), Value::I32(5)])),
            (
                "a.f32",
                arr(vec![Value::F32(0.0), Value::F32(-0.0), Value::F32(1e30)]),
            ),
            ("a.bool", arr(vec![Value::Bool(true), Value::Bool(false)])),
            (
                "a.string",
                arr(vec![Value::from("a"), Value::from(""), Value::from("Ġthe")]),
            ),
            ("a.u64", arr(vec![Value::U64(1 << 60)])),
            ("a.i64", arr(vec![Value::I64(-(1 << 60))])),
            ("a.f64", arr(vec![Value::F64(1e-300)])),
            ("a.empty", arr(vec![])),
            (
                "a.nested",
                arr(vec![
                    arr(vec![Value::U8(1), Value::U8(2)]),
                    arr(vec![]),
                    arr(vec![Value::from("x")]),
                ]),
            ),
            (
                "a.deep",
                arr(vec![arr(vec![arr(vec![arr(vec![Value::I64(42)])])])]),
            ),
        ]
    }

    #[test]
    fn round_trips_every_value_type() {
        let mut w = GgufWriter::new();
        let mut expected = all_scalars();
        expected.extend(all_arrays());
        for (k, v) in &expected {
            w.add_metadata(k, v.clone());
        }
        let g = Gguf::from_bytes(w.to_bytes()).unwrap();
        assert_eq!(g.version(), 3);
        assert_eq!(g.alignment(), DEFAULT_ALIGNMENT);
        assert_eq!(g.tensors().len(), 0);
        let got: Vec<(&str, &Value)> = g.metadata().iter().map(|(k, v)| (k.as_str(), v)).collect();
        let want: Vec<(&str, &Value)> = expected.iter().map(|(k, v)| (*k, v)).collect();
        assert_eq!(got, want, "metadata must come back in file order");
        for (k, v) in &expected {
            assert_eq!(g.get(k), Some(v), "{k}");
        }
        assert_eq!(g.get("missing"), None);
        assert_eq!(g.get_u64("t.u8"), Some(200));
        assert_eq!(g.get_str("t.string"), Some("héllo wörld ✓"));
        assert_eq!(g.get_array("a.u32").map(<[Value]>::len), Some(100));
        assert_eq!(g.get_f32("t.f64"), Some(std::f32::consts::PI));
    }

    /// Deterministic pseudo-random bytes, so data mix-ups between tensors are visible.
    fn bytes(n: u64, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    type Spec = (String, Vec<u64>, GgmlType, Vec<u8>);

    fn tensor_file(alignment: u64) -> (Vec<u8>, Vec<Spec>) {
        let specs: Vec<(&str, Vec<u64>, GgmlType)> = vec![
            ("token_embd.weight", vec![256, 3], GgmlType::Q4_K),
            ("blk.0.attn_norm.weight", vec![7], GgmlType::F32),
            ("blk.0.attn_q.weight", vec![64, 2], GgmlType::Q8_0),
            ("blk.0.ffn_up.weight", vec![32, 2, 2], GgmlType::Q4_0),
            ("blk.0.ffn_down.weight", vec![256, 1, 1, 2], GgmlType::Q6_K),
            ("output.weight", vec![5, 3], GgmlType::F16),
            ("rope_freqs.weight", vec![3], GgmlType::BF16),
            ("scalar", vec![], GgmlType::F32),
            ("empty", vec![0, 4], GgmlType::Q4_K),
            ("iq4", vec![256], GgmlType::IQ4_XS),
            ("i8", vec![3], GgmlType::I8),
        ];
        let mut w = GgufWriter::new().with_alignment(alignment);
        w.add_metadata("general.architecture", Value::from("llama"));
        let mut out = Vec::new();
        for (i, (name, dims, ty)) in specs.into_iter().enumerate() {
            let n = dims.iter().product::<u64>();
            let data = bytes(ty.bytes_for(n).unwrap(), i as u8);
            w.add_tensor(name, &dims, ty, data.clone()).unwrap();
            out.push((name.to_owned(), dims, ty, data));
        }
        (w.to_bytes(), out)
    }

    #[test]
    fn round_trips_tensors_at_several_alignments() {
        for alignment in [1, 8, 32, 64, 4096] {
            let (file, specs) = tensor_file(alignment);
            let g = Gguf::from_bytes(file).unwrap();
            assert_eq!(g.alignment(), alignment);
            assert_eq!(g.get_u64("general.alignment"), Some(alignment));
            assert_eq!(g.tensors().len(), specs.len());
            assert_eq!(g.data_offset() % alignment, 0);
            let mut expected_next = g.data_offset();
            for (t, (name, dims, ty, data)) in g.tensors().iter().zip(&specs) {
                assert_eq!(&t.name, name);
                assert_eq!(&t.dims, dims);
                assert_eq!(t.ty, *ty);
                assert_eq!(t.n_bytes, data.len() as u64);
                assert_eq!(t.offset % alignment, 0, "{name} at alignment {alignment}");
                // llama.cpp requires tensors packed in file order, each padded to the alignment.
                assert_eq!(t.offset, expected_next, "{name}");
                expected_next = t.offset + pad(t.n_bytes, alignment).unwrap();
                assert_eq!(g.tensor_data(t), &data[..], "{name}");
                assert_eq!(g.tensor(name), Some(t));
            }
            assert_eq!(g.file_size(), expected_next);
            let scalar = g.tensor("scalar").unwrap();
            assert_eq!((scalar.n_elements(), scalar.shape()), (1, [1; 4]));
            let empty = g.tensor("empty").unwrap();
            assert_eq!((empty.n_elements(), empty.n_bytes), (0, 0));
            let up = g.tensor("blk.0.ffn_up.weight").unwrap();
            assert_eq!(up.shape(), [32, 2, 2, 1]);
            assert_eq!(up.row_bytes(), Some(18));
            assert!(g.tensor("nope").is_none());
        }
    }

    #[test]
    fn gguf_can_be_shared_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Gguf>();
        assert_send_sync::<GgufError>();
    }

    #[test]
    fn reads_version_2() {
        let (mut file, _) = tensor_file(32);
        file[4..8].copy_from_slice(&2u32.to_le_bytes());
        assert_eq!(Gguf::from_bytes(file).unwrap().version(), 2);
    }

    #[test]
    fn open_maps_the_file_and_reports_io_errors_with_the_path() {
        let (file, specs) = tensor_file(32);
        let dir = std::env::temp_dir().join(format!("gguf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.gguf");
        std::fs::write(&path, &file).unwrap();
        let g = Gguf::open(&path).unwrap();
        assert!(g.is_mmapped());
        assert_eq!(g.bytes(), &file[..]);
        let t = g.tensor(&specs[0].0).unwrap();
        assert_eq!(g.tensor_data(t), &specs[0].3[..]);

        let empty = dir.join("empty.gguf");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            Gguf::open(&empty),
            Err(GgufError::Truncated {
                offset: 0,
                needed: 4,
                ..
            })
        ));
        let missing = dir.join("missing.gguf");
        match Gguf::open(&missing) {
            Err(e @ GgufError::Io { .. }) => assert!(e.to_string().contains("missing.gguf")),
            other => panic!("{other:?}"),
        }
        assert!(matches!(Gguf::open(&dir), Err(GgufError::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tensor_data_of_a_foreign_info_is_empty_not_a_panic() {
        let (file, _) = tensor_file(32);
        let g = Gguf::from_bytes(file).unwrap();
        let mut t = g.tensors()[0].clone();
        t.offset = u64::MAX - 1;
        assert!(g.tensor_data(&t).is_empty());
        t.offset = 0;
        t.n_bytes = u64::MAX;
        assert!(g.tensor_data(&t).is_empty());
    }

    #[test]
    fn error_messages_name_field_offset_and_remedy() {
        let e = Gguf::from_bytes(b"GGUF\x03\x00\x00".to_vec()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("format version"), "{msg}");
        assert!(msg.contains("byte 4"), "{msg}");
        assert!(msg.contains("re-download"), "{msg}");
        let e = Gguf::from_bytes(b"GGUF\x01\x00\x00\x00".to_vec()).unwrap_err();
        assert!(e.to_string().contains("v1"), "{e}");
        let e = Gguf::from_bytes(b"GGUF\x00\x00\x00\x03".to_vec()).unwrap_err();
        assert!(matches!(e, GgufError::BigEndian { .. }), "{e}");
    }
}
