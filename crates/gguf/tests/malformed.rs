//! A corpus of malformed GGUF files. Each must produce a specific, clean error: no panic, no
//! abort, no huge allocation.

use std::time::{Duration, Instant};

use gguf::{GgmlType, Gguf, GgufError, GgufWriter, Value, MAX_ARRAY_NESTING, MAX_METADATA_VALUES};

// Value type ids.
const U8: u32 = 0;
const U32: u32 = 4;
const STRING: u32 = 8;
const ARRAY: u32 = 9;
const U64: u32 = 10;

/// A hand-assembled file, for fields the writer refuses to produce.
#[derive(Clone)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        Raw(b"GGUF".to_vec()).u32(version).u64(n_tensors).u64(n_kv)
    }
    fn u32(mut self, v: u32) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Raw {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Raw {
        self.0.extend_from_slice(b);
        self
    }
    fn raw_str(self, s: &[u8]) -> Raw {
        self.u64(s.len() as u64).bytes(s)
    }
    fn str(self, s: &str) -> Raw {
        self.raw_str(s.as_bytes())
    }
    fn kv_u32(self, key: &str, v: u32) -> Raw {
        self.str(key).u32(U32).u32(v)
    }
    fn tensor(self, name: &str, dims: &[u64], ty: u32, offset: u64) -> Raw {
        let mut r = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            r = r.u64(d);
        }
        r.u32(ty).u64(offset)
    }
    fn pad_to(mut self, align: usize) -> Raw {
        while self.0.len() % align != 0 {
            self.0.push(0);
        }
        self
    }
    fn zeros(mut self, n: usize) -> Raw {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    fn parse(&self) -> Result<Gguf, GgufError> {
        Gguf::from_bytes(self.0.clone())
    }
    fn err(&self) -> GgufError {
        match self.parse() {
            Ok(g) => panic!("expected an error, parsed {g:?}"),
            Err(e) => {
                // Every message must render and say what to do or what was wrong.
                assert!(!e.to_string().is_empty());
                e
            }
        }
    }
}

/// A valid file exercising every part of the format.
fn valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::from("llama"));
    w.add_metadata("llama.block_count", Value::U32(1));
    w.add_metadata("f64", Value::F64(1.5));
    w.add_metadata("flag", Value::Bool(true));
    w.add_metadata(
        "tokenizer.ggml.tokens",
        Value::Array(vec![Value::from("<s>"), Value::from("hé"), Value::from("")]),
    );
    w.add_metadata(
        "tokenizer.ggml.scores",
        Value::Array(vec![Value::F32(0.0), Value::F32(-1.0), Value::F32(-2.0)]),
    );
    w.add_metadata(
        "nested",
        Value::Array(vec![
            Value::Array(vec![Value::I16(1), Value::I16(2)]),
            Value::Array(vec![]),
        ]),
    );
    w.add_tensor(
        "token_embd.weight",
        &[32, 3],
        GgmlType::Q8_0,
        vec![1; 3 * 34],
    )
    .unwrap();
    w.add_tensor("output_norm.weight", &[5], GgmlType::F32, vec![2; 20])
        .unwrap();
    w.add_tensor(
        "blk.0.ffn_down.weight",
        &[256, 2],
        GgmlType::Q4_K,
        vec![3; 288],
    )
    .unwrap();
    w.to_bytes()
}

#[test]
fn the_valid_file_parses() {
    let g = Gguf::from_bytes(valid_file()).unwrap();
    assert_eq!(g.tensors().len(), 3);
    assert_eq!(g.metadata().len(), 7);
}

#[test]
fn truncation_at_every_header_byte_is_a_clean_truncated_error() {
    let file = valid_file();
    let g = Gguf::from_bytes(file.clone()).unwrap();
    let header_end = g.tensors()[0].offset; // first tensor sits at the aligned data start
    let last = g
        .tensors()
        .iter()
        .map(|t| t.offset + t.n_bytes)
        .max()
        .unwrap();
    for cut in 0..header_end as usize {
        match Gguf::from_bytes(file[..cut].to_vec()) {
            Err(GgufError::Truncated {
                offset,
                needed,
                available,
                file_size,
                ..
            }) => {
                assert_eq!(file_size, cut as u64);
                assert!(offset <= cut as u64, "cut {cut}: offset {offset}");
                assert!(needed > available, "cut {cut}");
            }
            other => panic!("cut at {cut}: expected Truncated, got {other:?}"),
        }
    }
    // Cuts in the data section: before the data start the padding is missing, after it a
    // tensor's bytes are.
    for cut in header_end as usize..last as usize {
        match Gguf::from_bytes(file[..cut].to_vec()) {
            Err(GgufError::Truncated { field, .. }) => assert!(field.contains("padding")),
            Err(GgufError::TensorOutOfBounds { file_size, .. }) => {
                assert_eq!(file_size, cut as u64)
            }
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // The padding after the last tensor is not needed.
    assert!(Gguf::from_bytes(file[..last as usize].to_vec()).is_ok());
}

#[test]
fn bad_magic() {
    let mut file = valid_file();
    file[..4].copy_from_slice(b"GGML");
    match Gguf::from_bytes(file).unwrap_err() {
        GgufError::BadMagic { got } => assert_eq!(&got, b"GGML"),
        e => panic!("{e:?}"),
    }
    let e = Raw(b"\x7fELF\x02\x01\x01\x00".to_vec()).err();
    assert!(matches!(e, GgufError::BadMagic { .. }), "{e:?}");
}

#[test]
fn versions_1_and_4_are_rejected_big_endian_is_named() {
    for version in [0, 1, 4, u32::MAX] {
        let mut file = valid_file();
        file[4..8].copy_from_slice(&version.to_le_bytes());
        match Gguf::from_bytes(file).unwrap_err() {
            GgufError::UnsupportedVersion { version: v } => assert_eq!(v, version),
            e => panic!("{e:?}"),
        }
    }
    let mut file = valid_file();
    file[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert!(matches!(
        Gguf::from_bytes(file).unwrap_err(),
        GgufError::BigEndian {
            version: 0x0300_0000
        }
    ));
}

#[test]
fn absurd_metadata_count() {
    let e = Raw::header(3, 0, u64::MAX).err();
    assert!(
        matches!(
            e,
            GgufError::TooLarge {
                offset: 16,
                value: u64::MAX,
                ..
            }
        ),
        "{e:?}"
    );
    // Plausible count, but the file cannot hold that many entries.
    let e = Raw::header(3, 0, 1 << 20).kv_u32("a", 1).err();
    assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
}

#[test]
fn absurd_tensor_count() {
    let e = Raw::header(3, u64::MAX, 0).err();
    assert!(
        matches!(
            e,
            GgufError::TooLarge {
                offset: 8,
                value: u64::MAX,
                ..
            }
        ),
        "{e:?}"
    );
    let e = Raw::header(3, 1 << 60, 0).err();
    assert!(matches!(e, GgufError::TooLarge { .. }), "{e:?}");
    let e = Raw::header(3, 1000, 0).tensor("a", &[1], 0, 0).err();
    match e {
        GgufError::Truncated { field, .. } => assert!(field.contains("1000 tensor infos")),
        e => panic!("{e:?}"),
    }
}

#[test]
fn absurd_string_lengths() {
    // Key length.
    let e = Raw::header(3, 0, 1).u64(u64::MAX).zeros(64).err();
    match e {
        GgufError::Truncated {
            field,
            offset,
            needed,
            ..
        } => {
            assert!(field.contains("key of metadata entry #0"), "{field}");
            assert_eq!((offset, needed), (32, u64::MAX));
        }
        e => panic!("{e:?}"),
    }
    // String value length.
    let e = Raw::header(3, 0, 1)
        .str("k")
        .u32(STRING)
        .u64(1 << 50)
        .zeros(64)
        .err();
    match e {
        GgufError::Truncated { field, needed, .. } => {
            assert!(field.contains("value of `k`"), "{field}");
            assert_eq!(needed, 1 << 50);
        }
        e => panic!("{e:?}"),
    }
    // Tensor name length.
    let e = Raw::header(3, 1, 0).u64(u64::MAX - 1).zeros(64).err();
    match e {
        GgufError::Truncated { field, .. } => assert!(field.contains("name of tensor #0")),
        e => panic!("{e:?}"),
    }
}

#[test]
fn absurd_array_lengths_fail_fast_without_allocating() {
    let start = Instant::now();
    for (elem, count) in [
        (U8, 1u64 << 40),
        (U64, u64::MAX),
        (STRING, 1 << 40),
        (ARRAY, 1 << 40),
        (U8, MAX_METADATA_VALUES), // exactly over the budget (the key itself takes one)
    ] {
        let e = Raw::header(3, 0, 1)
            .str("big")
            .u32(ARRAY)
            .u32(elem)
            .u64(count)
            .zeros(16)
            .err();
        match e {
            GgufError::TooLarge {
                field,
                value,
                offset,
                ..
            } => {
                assert!(field.contains("array `big`"), "{field}");
                assert_eq!(value, count);
                assert_eq!(offset, 24 + 8 + 3 + 4 + 4);
            }
            e => panic!("type {elem} count {count}: {e:?}"),
        }
    }
    // Within the value budget but larger than the file: Truncated, before any allocation.
    for (elem, count) in [(U32, 1u64 << 20), (STRING, 1 << 23), (ARRAY, 1 << 22)] {
        let e = Raw::header(3, 0, 1)
            .str("big")
            .u32(ARRAY)
            .u32(elem)
            .u64(count)
            .zeros(64)
            .err();
        assert!(matches!(e, GgufError::Truncated { .. }), "{e:?}");
    }
    // The budget is shared by all metadata: 10 entries leave MAX - 10 values for arrays.
    let e = Raw::header(3, 0, 10)
        .str("big")
        .u32(ARRAY)
        .u32(U8)
        .u64(MAX_METADATA_VALUES - 5)
        .zeros(200)
        .err();
    assert!(
        matches!(e, GgufError::TooLarge { limit, .. } if limit == MAX_METADATA_VALUES - 10),
        "{e:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
}

#[test]
fn unknown_value_type_names_the_key() {
    for id in [13, 100, u32::MAX] {
        let e = Raw::header(3, 0, 2)
            .kv_u32("ok", 1)
            .str("weird.key")
            .u32(id)
            .zeros(16)
            .err();
        match e {
            GgufError::UnknownValueType {
                key,
                offset,
                id: got,
            } => {
                assert_eq!((key.as_str(), got), ("weird.key", id));
                assert_eq!(offset, 24 + (8 + 2 + 4 + 4) + 8 + 9);
            }
            e => panic!("{e:?}"),
        }
    }
    // As an array element type, nested too.
    let e = Raw::header(3, 0, 1)
        .str("arr")
        .u32(ARRAY)
        .u32(ARRAY)
        .u64(1)
        .u32(77)
        .u64(0)
        .err();
    assert!(
        matches!(&e, GgufError::UnknownValueType { key, id: 77, .. } if key == "arr"),
        "{e:?}"
    );
}

#[test]
fn unknown_tensor_type_names_the_tensor_and_id() {
    for id in [4, 5, 31, 32, 33, 36, 1000, u32::MAX] {
        let e = Raw::header(3, 1, 0)
            .tensor("blk.0.attn_q.weight", &[32], id, 0)
            .pad_to(32)
            .zeros(4096)
            .err();
        match e {
            GgufError::UnknownTensorType {
                tensor,
                id: got,
                offset,
            } => {
                assert_eq!((tensor.as_str(), got), ("blk.0.attn_q.weight", id));
                assert_eq!(offset, 24 + 8 + 19 + 4 + 8);
            }
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn non_utf8_strings_are_rejected_with_their_field() {
    let e = Raw::header(3, 0, 1)
        .raw_str(b"ke\xffy")
        .u32(U8)
        .bytes(&[1])
        .err();
    match e {
        GgufError::InvalidUtf8 { field, offset } => {
            assert!(field.contains("key of metadata entry #0"), "{field}");
            assert_eq!(offset, 32);
        }
        e => panic!("{e:?}"),
    }
    let e = Raw::header(3, 0, 1)
        .str("k")
        .u32(ARRAY)
        .u32(STRING)
        .u64(2)
        .str("fine")
        .raw_str(b"\xc3")
        .err();
    match e {
        GgufError::InvalidUtf8 { field, .. } => {
            assert!(field.contains("element 1 of array `k`"), "{field}")
        }
        e => panic!("{e:?}"),
    }
    let e = Raw::header(3, 1, 0)
        .raw_str(b"\xed\xa0\x80") // an encoded surrogate
        .u32(1)
        .u64(1)
        .u32(0)
        .u64(0)
        .pad_to(32)
        .zeros(32)
        .err();
    assert!(matches!(e, GgufError::InvalidUtf8 { .. }), "{e:?}");
}

fn one_tensor(dims: &[u64], ty: u32) -> GgufError {
    Raw::header(3, 1, 0)
        .tensor("t", dims, ty, 0)
        .pad_to(32)
        .zeros(1024)
        .err()
}

#[test]
fn too_many_dims() {
    match one_tensor(&[1, 1, 1, 1, 1], 0) {
        GgufError::TooManyDims { tensor, n_dims, .. } => {
            assert_eq!((tensor.as_str(), n_dims), ("t", 5))
        }
        e => panic!("{e:?}"),
    }
    // A huge n_dims must not make the reader read (or allocate for) that many dims.
    let e = Raw::header(3, 1, 0).str("t").u32(u32::MAX).zeros(64).err();
    assert!(
        matches!(
            e,
            GgufError::TooManyDims {
                n_dims: u32::MAX,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn dims_whose_product_overflows() {
    for dims in [
        vec![1u64 << 32, 1 << 32],
        vec![1 << 20, 1 << 20, 1 << 20, 1 << 20],
        vec![1 << 62, 2],
        vec![u64::MAX],    // -1 as int64
        vec![0, u64::MAX], // a negative dim is an error even when another dim is 0
        vec![i64::MAX as u64 + 1],
    ] {
        match one_tensor(&dims, 0) {
            GgufError::ElementCountOverflow { dims: got, .. } => assert_eq!(got, dims),
            e => panic!("{dims:?}: {e:?}"),
        }
    }
    // Fits in i64 elements, but not in u64 bytes.
    let e = one_tensor(&[1 << 62], 28 /* F64 */);
    assert!(matches!(e, GgufError::TooLarge { .. }), "{e:?}");
}

#[test]
fn row_not_a_multiple_of_block_size() {
    match one_tensor(&[33, 2], 8 /* Q8_0 */) {
        GgufError::NotWholeBlocks {
            ty,
            ne0,
            block_size,
            ..
        } => assert_eq!((ty, ne0, block_size), (GgmlType::Q8_0, 33, 32)),
        e => panic!("{e:?}"),
    }
    // ggml checks ne[0] only: a row count that is not a multiple is fine.
    let ok = Raw::header(3, 1, 0)
        .tensor("t", &[256, 3], 12, 0)
        .pad_to(32)
        .zeros(3 * 144);
    assert_eq!(ok.parse().unwrap().tensors()[0].n_bytes, 432);
    // A 0-dim tensor has ne[0] = 1.
    assert!(matches!(
        one_tensor(&[], 12),
        GgufError::NotWholeBlocks { ne0: 1, .. }
    ));
}

#[test]
fn out_of_range_offsets() {
    let base = || Raw::header(3, 1, 0);
    for offset in [64, 1 << 40, 1 << 63, u64::MAX - 31] {
        let e = base()
            .tensor("w", &[8], 0, offset)
            .pad_to(32)
            .zeros(64)
            .err();
        match e {
            GgufError::TensorOutOfBounds {
                tensor,
                size,
                file_size,
                ..
            } => {
                assert_eq!((tensor.as_str(), size), ("w", 32));
                assert_eq!(file_size, 128);
            }
            e => panic!("{offset}: {e:?}"),
        }
    }
    // One byte short.
    let e = base().tensor("w", &[8], 0, 0).pad_to(32).zeros(31).err();
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e:?}");
    // Exactly enough.
    assert!(base()
        .tensor("w", &[8], 0, 0)
        .pad_to(32)
        .zeros(32)
        .parse()
        .is_ok());
    // A size that overflows when added to the offset.
    let e = base()
        .tensor("w", &[i64::MAX as u64 / 4], 0, 1 << 62)
        .pad_to(32)
        .err();
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e:?}");
}

#[test]
fn misaligned_offsets() {
    for (align_kv, offset) in [(None, 4u64), (None, 16), (Some(64), 32), (Some(8), 12)] {
        let mut r = Raw::header(3, 1, u64::from(align_kv.is_some()));
        if let Some(a) = align_kv {
            r = r.kv_u32("general.alignment", a);
        }
        let e = r.tensor("w", &[1], 0, offset).pad_to(64).zeros(256).err();
        match e {
            GgufError::MisalignedTensor {
                tensor,
                offset: got,
                alignment,
            } => {
                assert_eq!((tensor.as_str(), got), ("w", offset));
                assert_eq!(alignment, u64::from(align_kv.unwrap_or(32)));
            }
            e => panic!("{e:?}"),
        }
    }
}

#[test]
fn overlapping_tensors() {
    let e = Raw::header(3, 2, 0)
        .tensor("a", &[16], 0, 0) // bytes 0..64
        .tensor("b", &[8], 0, 32) // bytes 32..64
        .pad_to(32)
        .zeros(64)
        .err();
    match e {
        GgufError::OverlappingTensors { first, second, .. } => {
            assert_eq!((first.as_str(), second.as_str()), ("a", "b"))
        }
        e => panic!("{e:?}"),
    }
    // Identical ranges, listed in reverse file order.
    let e = Raw::header(3, 3, 0)
        .tensor("z", &[8], 0, 64)
        .tensor("a", &[8], 0, 0)
        .tensor("b", &[8], 0, 64)
        .pad_to(32)
        .zeros(96)
        .err();
    assert!(matches!(e, GgufError::OverlappingTensors { .. }), "{e:?}");
    // Adjacent and out of order is fine (llama.cpp would want them contiguous in file order;
    // we only require that they do not overlap). Empty tensors overlap nothing.
    let g = Raw::header(3, 3, 0)
        .tensor("second", &[8], 0, 32)
        .tensor("first", &[8], 0, 0)
        .tensor("empty", &[0], 0, 32)
        .pad_to(32)
        .zeros(64)
        .parse()
        .unwrap();
    assert_eq!(g.tensors()[0].name, "second");
}

#[test]
fn duplicate_keys_and_tensors() {
    let e = Raw::header(3, 0, 3)
        .kv_u32("a", 1)
        .kv_u32("b", 2)
        .kv_u32("a", 3)
        .err();
    match e {
        GgufError::DuplicateKey { key, offset } => {
            assert_eq!((key.as_str(), offset), ("a", 24 + 2 * 17))
        }
        e => panic!("{e:?}"),
    }
    let e = Raw::header(3, 2, 0)
        .tensor("w", &[8], 0, 0)
        .tensor("w", &[8], 0, 32)
        .pad_to(32)
        .zeros(64)
        .err();
    assert!(
        matches!(&e, GgufError::DuplicateTensor { tensor, .. } if tensor == "w"),
        "{e:?}"
    );
}

#[test]
fn empty_key() {
    let e = Raw::header(3, 0, 1).str("").u32(U8).bytes(&[0, 0]).err();
    assert!(
        matches!(
            e,
            GgufError::EmptyKey {
                index: 0,
                offset: 24
            }
        ),
        "{e:?}"
    );
}

#[test]
fn nesting_too_deep() {
    let mut r = Raw::header(3, 0, 1).str("deep").u32(ARRAY);
    for _ in 0..MAX_ARRAY_NESTING {
        r = r.u32(ARRAY).u64(1);
    }
    let e = r.clone().u32(U8).u64(0).err();
    assert!(
        matches!(&e, GgufError::NestingTooDeep { key, limit, .. } if key == "deep" && *limit == MAX_ARRAY_NESTING),
        "{e:?}"
    );
    // One level less is fine.
    let mut r = Raw::header(3, 0, 1).str("deep").u32(ARRAY);
    for _ in 0..MAX_ARRAY_NESTING - 1 {
        r = r.u32(ARRAY).u64(1);
    }
    assert!(r.u32(U8).u64(0).parse().is_ok());
}

#[test]
fn bad_alignment() {
    for value in [0u32, 3, 48, u32::MAX] {
        let e = Raw::header(3, 0, 1)
            .kv_u32("general.alignment", value)
            .err();
        assert!(
            matches!(e, GgufError::BadAlignment { .. }),
            "{value}: {e:?}"
        );
    }
    let e = Raw::header(3, 0, 1)
        .str("general.alignment")
        .u32(STRING)
        .str("32")
        .err();
    assert!(matches!(e, GgufError::BadAlignment { .. }), "{e:?}");
    let e = Raw::header(3, 0, 1)
        .str("general.alignment")
        .u32(U64)
        .u64(1 << 40)
        .err();
    assert!(matches!(e, GgufError::BadAlignment { .. }), "{e:?}");
    // Other integer widths are accepted leniently.
    let g = Raw::header(3, 0, 1)
        .str("general.alignment")
        .u32(U64)
        .u64(64)
        .parse()
        .unwrap();
    assert_eq!(g.alignment(), 64);
}

#[test]
fn missing_padding_before_data() {
    let e = Raw::header(3, 1, 0).tensor("w", &[0], 0, 0).err();
    match e {
        GgufError::Truncated { field, .. } => assert!(field.contains("padding"), "{field}"),
        e => panic!("{e:?}"),
    }
    // Without tensors no padding (and no data section) is needed.
    assert!(Raw::header(3, 0, 1).kv_u32("a", 1).parse().is_ok());
}

#[test]
fn mutating_every_header_byte_never_panics() {
    // Not a substitute for the fuzzer, but cheap and deterministic: flip each header byte to a
    // few interesting values and parse.
    let file = valid_file();
    let header_end = Gguf::from_bytes(file.clone()).unwrap().tensors()[0].offset as usize;
    for i in 0..header_end {
        for v in [0x00, 0x01, 0x7f, 0x80, 0xff] {
            let mut f = file.clone();
            f[i] = v;
            let _ = Gguf::from_bytes(f);
        }
    }
}
