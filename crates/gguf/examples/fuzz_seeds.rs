//! Writes a few small, valid GGUF files to seed the fuzzer's corpus:
//! `cargo run -p gguf --example fuzz_seeds -- fuzz/corpus/gguf_reader`.

use gguf::{GgmlType, GgufWriter, Value};

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "fuzz/corpus/gguf_reader".to_owned());
    std::fs::create_dir_all(&dir)?;

    // Metadata only: every value type, arrays, nested arrays.
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::from("llama"));
    w.add_metadata("a.u8", Value::U8(1));
    w.add_metadata("a.i8", Value::I8(-1));
    w.add_metadata("a.u16", Value::U16(2));
    w.add_metadata("a.i16", Value::I16(-2));
    w.add_metadata("a.u32", Value::U32(3));
    w.add_metadata("a.i32", Value::I32(-3));
    w.add_metadata("a.f32", Value::F32(0.5));
    w.add_metadata("a.bool", Value::Bool(true));
    w.add_metadata("a.u64", Value::U64(4));
    w.add_metadata("a.i64", Value::I64(-4));
    w.add_metadata("a.f64", Value::F64(0.25));
    w.add_metadata(
        "tokenizer.ggml.tokens",
        Value::Array(vec![
            Value::from("<s>"),
            Value::from("a"),
            Value::from("Ġb"),
        ]),
    );
    w.add_metadata(
        "tokenizer.ggml.scores",
        Value::Array(vec![Value::F32(0.0), Value::F32(-1.0), Value::F32(-2.0)]),
    );
    w.add_metadata(
        "nested",
        Value::Array(vec![Value::Array(vec![Value::U8(1)]), Value::Array(vec![])]),
    );
    std::fs::write(format!("{dir}/metadata.gguf"), w.to_bytes())?;

    // Tensors of several types and shapes, default alignment.
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", Value::from("llama"));
    w.add_metadata("llama.block_count", Value::U32(1));
    w.add_tensor("a", &[4], GgmlType::F32, vec![1; 16]).unwrap();
    w.add_tensor("b", &[32, 2], GgmlType::Q8_0, vec![2; 68])
        .unwrap();
    w.add_tensor("c", &[256], GgmlType::Q4_K, vec![3; 144])
        .unwrap();
    w.add_tensor("d", &[2, 1, 1, 2], GgmlType::F16, vec![4; 8])
        .unwrap();
    std::fs::write(format!("{dir}/tensors.gguf"), w.to_bytes())?;

    // A different alignment and an empty tensor.
    let mut w = GgufWriter::new().with_alignment(8);
    w.add_tensor("x", &[3], GgmlType::I8, vec![5; 3]).unwrap();
    w.add_tensor("y", &[0, 2], GgmlType::F32, vec![]).unwrap();
    w.add_tensor("z", &[], GgmlType::F32, vec![6; 4]).unwrap();
    std::fs::write(format!("{dir}/aligned8.gguf"), w.to_bytes())?;
    Ok(())
}
