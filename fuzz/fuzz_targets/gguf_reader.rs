//! Feeds arbitrary bytes to the GGUF reader. It must never panic, abort or allocate absurdly; on
//! success every accessor must agree with the file, and writing the parsed file back out must be
//! a fixed point (parse(write(parse(x))) writes the same bytes again).
#![no_main]

use gguf::{Gguf, GgufWriter, Value};
use libfuzzer_sys::fuzz_target;

fn touch(v: &Value) -> usize {
    let _ = (
        v.as_u64(),
        v.as_i64(),
        v.as_f32(),
        v.as_bool(),
        v.type_name(),
    );
    match v {
        Value::String(s) => s.len(),
        Value::Array(a) => a.iter().map(touch).sum::<usize>() + 1,
        _ => 1,
    }
}

fn rewrite(g: &Gguf) -> Option<Vec<u8>> {
    let mut w = GgufWriter::new();
    for (k, v) in g.metadata() {
        w.add_metadata(k, v.clone());
    }
    for t in g.tensors() {
        // Fails only for names llama.cpp would reject as too long; the reader tolerates them.
        w.add_tensor(&t.name, &t.dims, t.ty, g.tensor_data(t).to_vec())
            .ok()?;
    }
    Some(w.to_bytes())
}

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_bytes(data.to_vec()) else {
        return;
    };
    assert!(g.version() == 2 || g.version() == 3);
    assert!(g.alignment().is_power_of_two());
    let mut n = 0usize;
    for (k, v) in g.metadata() {
        assert!(!k.is_empty());
        assert!(g.get(k).is_some());
        n += touch(v);
        let _ = v.to_string();
    }
    for t in g.tensors() {
        let bytes = g.tensor_data(t);
        assert_eq!(bytes.len() as u64, t.n_bytes);
        assert_eq!(t.offset % g.alignment(), 0);
        assert!(t.offset + t.n_bytes <= g.file_size());
        assert_eq!(g.tensor(&t.name), Some(t));
        assert!(t.dims.len() <= 4);
        assert_eq!(t.ty.bytes_for(t.n_elements()), Some(t.n_bytes));
        n += bytes.iter().map(|&b| b as usize).sum::<usize>();
    }
    std::hint::black_box(n);

    if let Some(once) = rewrite(&g) {
        let g2 = Gguf::from_bytes(once.clone()).expect("the writer's output must parse");
        assert_eq!(g2.tensors().len(), g.tensors().len());
        for (a, b) in g.tensors().iter().zip(g2.tensors()) {
            assert_eq!((&a.name, &a.dims, a.ty), (&b.name, &b.dims, b.ty));
            assert_eq!(g.tensor_data(a), g2.tensor_data(b));
        }
        let twice = rewrite(&g2).expect("names already accepted once");
        assert_eq!(once, twice, "writing a parsed file must be a fixed point");
    }
});
