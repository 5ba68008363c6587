//! Rebuilds the crate when a file of `assets/` changes: `include_dir!` embeds them, but cannot
//! tell Cargo to watch them.
fn main() {
    println!("cargo:rerun-if-changed=assets");
}
