//! Prints a GGUF file's metadata and tensor table: `cargo run -p gguf --example inspect -- FILE`.

use gguf::Gguf;

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: inspect FILE.gguf");
        std::process::exit(2);
    };
    let g = match Gguf::open(&path) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "{path}: GGUF v{}, {} bytes, alignment {}, data at {}",
        g.version(),
        g.file_size(),
        g.alignment(),
        g.data_offset()
    );
    println!("{} metadata entries:", g.metadata().len());
    for (k, v) in g.metadata() {
        println!("  {k:<40} {:<4} {v}", v.type_name());
    }
    println!("{} tensors:", g.tensors().len());
    for t in g.tensors() {
        println!(
            "  {:<32} {:<8} {:?} offset {} bytes {}",
            t.name, t.ty, t.dims, t.offset, t.n_bytes
        );
    }
}
