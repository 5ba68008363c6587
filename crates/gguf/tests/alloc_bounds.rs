//! Regression tests for the "no absurd allocation" rule: a counting global allocator measures the
//! peak bytes the parser holds at once, per thread, and every input must stay within a small
//! multiple of its own size. (Test-only `unsafe`: a `GlobalAlloc` must be an `unsafe impl`; it only
//! forwards to the system allocator.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use gguf::{GgmlType, Gguf, GgufWriter, Value, MAX_METADATA_VALUES};

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn record(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so `System`'s
// guarantees carry over; the bookkeeping touches only const-initialised thread-locals without
// destructors (no allocation, no re-entrancy) and never fails.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            record(layout.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) };
        record(-(layout.size() as isize));
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as our caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            record(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Peak bytes allocated (beyond what was live before) while parsing `bytes`, which are moved in.
fn peak_while_parsing(bytes: Vec<u8>) -> (usize, bool) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let ok = Gguf::from_bytes(bytes).is_ok();
    let peak = PEAK.with(Cell::get) - base;
    (peak.max(0) as usize, ok)
}

fn header(n_tensors: u64, n_kv: u64) -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&n_tensors.to_le_bytes());
    b.extend_from_slice(&n_kv.to_le_bytes());
    b
}

fn array_header(key: &str, elem_ty: u32, count: u64) -> Vec<u8> {
    let mut b = header(0, 1);
    b.extend_from_slice(&(key.len() as u64).to_le_bytes());
    b.extend_from_slice(key.as_bytes());
    b.extend_from_slice(&9u32.to_le_bytes());
    b.extend_from_slice(&elem_ty.to_le_bytes());
    b.extend_from_slice(&count.to_le_bytes());
    b
}

#[test]
fn absurd_counts_allocate_almost_nothing() {
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("n_kv = u64::MAX", header(0, u64::MAX)),
        ("n_kv = 2^24", header(0, 1 << 24)),
        ("n_tensors = 2^24", header(1 << 24, 0)),
        ("n_tensors = 2^63", header(1 << 63, 0)),
    ];
    for (elem, count) in [
        (0u32, 1u64 << 40),
        (8, 1 << 40),
        (9, 1 << 40),
        (0, MAX_METADATA_VALUES - 1),
    ] {
        let mut b = array_header("k", elem, count);
        b.resize(b.len() + 256, 0);
        cases.push(("huge array", b));
    }
    let mut b = header(0, 1);
    b.extend_from_slice(&u64::MAX.to_le_bytes());
    b.resize(b.len() + 256, 0);
    cases.push(("huge key length", b));
    for (what, bytes) in cases {
        let (peak, ok) = peak_while_parsing(bytes);
        assert!(!ok, "{what}");
        assert!(peak < 16 << 10, "{what}: parsing allocated {peak} bytes");
    }
}

#[test]
fn valid_files_allocate_a_small_multiple_of_their_size() {
    // The worst case for amplification: one-byte array elements, each of which becomes a Value.
    let n = 100_000;
    let mut w = GgufWriter::new();
    w.add_metadata("bytes", Value::Array(vec![Value::U8(7); n]));
    w.add_metadata("strings", Value::Array(vec![Value::from(""); n / 10]));
    for i in 0..1000 {
        w.add_tensor(&format!("t{i}"), &[1], GgmlType::I8, vec![1])
            .unwrap();
    }
    let bytes = w.to_bytes();
    let len = bytes.len();
    let (peak, ok) = peak_while_parsing(bytes);
    assert!(ok);
    let value_size = std::mem::size_of::<Value>();
    assert!(
        peak >= n * value_size,
        "the counting allocator must see the Values ({peak})"
    );
    assert!(
        peak <= len * (value_size + 8) + (64 << 10),
        "{len}-byte file: parse peaked at {peak} bytes"
    );
}

#[test]
fn a_truncated_big_array_allocates_nothing_for_its_elements() {
    // 2^23 strings fit the value budget, but the file holds only a few bytes of them: the count
    // check must fail before `Vec::with_capacity(2^23)` (256 MiB of Values) happens.
    let mut b = array_header("k", 8, 1 << 23);
    b.resize(b.len() + 1000, 0);
    let (peak, ok) = peak_while_parsing(b);
    assert!(!ok);
    assert!(peak < 16 << 10, "peak {peak}");
}
