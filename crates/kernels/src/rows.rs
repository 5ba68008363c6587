//! Parallel loops over disjoint rows of one buffer (norms, RoPE, activations, residual adds).

use crate::pool::{SharedMut, ThreadPool};

/// Calls `f(first_row, rows)` on consecutive runs of `chunk_rows` whole rows of `data` (rows of
/// `row_len` elements; the last run may be shorter), spread over the pool with work stealing. A
/// single run executes on the calling thread without a dispatch.
///
/// # Panics
/// If `row_len` is 0 or does not divide `data.len()`.
pub fn for_each_rows<T: Copy + Send>(
    pool: &ThreadPool,
    data: &mut [T],
    row_len: usize,
    chunk_rows: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    assert!(
        row_len > 0 && data.len().is_multiple_of(row_len),
        "for_each_rows: {} elements in rows of {row_len}",
        data.len()
    );
    let base = SharedMut(data.as_mut_ptr());
    pool.for_each_chunk(data.len() / row_len, chunk_rows, &|r| {
        // SAFETY: `for_each_chunk` hands out every row range once, so the slices are disjoint and
        // inside `data`, which stays mutably borrowed until every call has returned.
        let rows = unsafe {
            std::slice::from_raw_parts_mut(base.at(r.start * row_len), r.len() * row_len)
        };
        f(r.start, rows);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_is_visited_once_with_its_index() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool::new(threads);
            for (rows, chunk) in [(0, 3), (1, 1), (10, 3), (64, 4), (7, 100)] {
                let mut data = vec![0usize; rows * 5];
                for_each_rows(&pool, &mut data, 5, chunk, &|first, rs| {
                    for (i, row) in rs.chunks_exact_mut(5).enumerate() {
                        row.iter_mut().for_each(|v| *v += first + i + 1);
                    }
                });
                let want: Vec<usize> = (0..rows).flat_map(|r| [r + 1; 5]).collect();
                assert_eq!(data, want);
            }
        }
    }
}
