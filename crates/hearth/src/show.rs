//! `hearth show`: what a model file is.

use anyhow::Result;
use engine::HParams;
use gguf::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// llama.cpp's `general.file_type` names (`llama_ftype`).
fn file_type_name(id: u64) -> Option<&'static str> {
    Some(match id {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        25 => "IQ4_NL",
        30 => "IQ4_XS",
        32 => "BF16",
        _ => return None,
    })
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n => format!("{n}"),
    }
}

pub fn show(path: &Path) -> Result<()> {
    let g = crate::open(path)?;
    let hp = HParams::from_gguf(&g)?;
    let params: u64 = g.tensors().iter().map(|t| t.n_elements()).sum();
    let mut types: BTreeMap<&str, usize> = BTreeMap::new();
    for t in g.tensors() {
        *types.entry(t.ty.name()).or_default() += 1;
    }
    let quant = g
        .get("general.file_type")
        .and_then(Value::as_u64)
        .and_then(file_type_name)
        .unwrap_or("unknown");
    let name = g.get("general.name").and_then(Value::as_str).unwrap_or("");
    println!("  Model");
    if !name.is_empty() {
        println!("    name                {name}");
    }
    println!("    architecture        {}", hp.arch.name());
    println!("    parameters          {}", human(params));
    println!("    quantization        {quant}");
    let mix: Vec<String> = types.iter().map(|(t, n)| format!("{t} x{n}")).collect();
    println!("    tensor types        {}", mix.join(", "));
    println!("    context length      {}", hp.n_ctx_train);
    println!("    embedding length    {}", hp.n_embd);
    println!("    layers              {}", hp.n_layer);
    println!(
        "    heads               {} (KV {}, size {})",
        hp.n_head, hp.n_head_kv, hp.head_dim
    );
    println!("    file size           {} bytes", g.file_size());
    println!();
    println!("  Chat template");
    match g.get("tokenizer.chat_template").and_then(Value::as_str) {
        Some(t) => println!("{t}"),
        None => println!(
            "    (none in the file: the {} family format is used)",
            hp.arch.name()
        ),
    }
    Ok(())
}
