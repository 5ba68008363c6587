//! Streaming the output file: the header, then each tensor converted a batch of rows at a time,
//! into a temporary file that replaces the destination only once it is complete and synced.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;

use gguf::{GgmlType, Gguf, GgufWriter, Value};
use kernels::formats::{dequantize_row, quantize_row};

use crate::{QuantizeError, Target, TensorPlan};

/// `GGML_QNT_VERSION`, which llama.cpp writes to `general.quantization_version`.
const QUANTIZATION_VERSION: u32 = 2;

/// Output bytes converted per batch: bounds the memory of one tensor's conversion whatever its size.
const BATCH_BYTES: usize = 32 << 20;

/// Fewest elements worth a thread of their own (llama.cpp's minimum chunk, 32 x 512).
const MIN_ELEMENTS_PER_THREAD: usize = 32 * 512;

/// The file header: the source's metadata with the new file type, then the tensor infos.
///
/// [`GgufWriter`] encodes the metadata; it holds every tensor's bytes in memory before writing,
/// which a model of many gigabytes cannot afford, so the tensor infos (name, dims, type, offset:
/// plain fixed-width fields) are appended here and the tensor count patched in. The layout is
/// exactly the writer's (the tests compare the two byte for byte).
pub(crate) fn header(src: &Gguf, target: Target, plans: &[TensorPlan]) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (key, value) in src.metadata() {
        // Also carries `general.alignment` over, which sets the writer's alignment.
        w.add_metadata(key, value.clone());
    }
    w.add_metadata(
        "general.quantization_version",
        Value::U32(QUANTIZATION_VERSION),
    );
    w.add_metadata("general.file_type", Value::U32(target.file_type()));
    let alignment = w.alignment();
    let mut h = w.to_bytes();
    // Magic (4 bytes) and version (4) come first, then the u64 tensor count.
    h[8..16].copy_from_slice(&(plans.len() as u64).to_le_bytes());
    let mut offset = 0u64;
    for p in plans {
        h.extend_from_slice(&(p.name.len() as u64).to_le_bytes());
        h.extend_from_slice(p.name.as_bytes());
        h.extend_from_slice(&(p.dims.len() as u32).to_le_bytes());
        for d in &p.dims {
            h.extend_from_slice(&d.to_le_bytes());
        }
        h.extend_from_slice(&p.to.id().to_le_bytes());
        h.extend_from_slice(&offset.to_le_bytes());
        offset += p.out_bytes().next_multiple_of(alignment);
    }
    h
}

/// A temporary file next to the destination, removed on drop unless it was renamed into place.
pub(crate) struct TempOutput {
    path: PathBuf,
    out: BufWriter<File>,
    pos: u64,
    alignment: u64,
    installed: bool,
}

impl TempOutput {
    /// Creates `.NAME.tmp-PID-N` beside `dst` (hidden, and marked as the store's temporary files
    /// are, so a crash's leftovers are recognisable).
    pub(crate) fn create(dst: &Path, alignment: u64) -> Result<TempOutput, QuantizeError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let name = dst
            .file_name()
            .map_or_else(|| "model.gguf".into(), |n| n.to_string_lossy().into_owned());
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = dst.with_file_name(format!(".{name}.tmp-{}-{n}", std::process::id()));
        let file = File::create(&path).map_err(io_err("create", &path))?;
        Ok(TempOutput {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
            pos: 0,
            alignment,
            installed: false,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<(), QuantizeError> {
        self.out
            .write_all(bytes)
            .map_err(io_err("write", &self.path))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Zero bytes up to the next multiple of the alignment.
    pub(crate) fn pad(&mut self) -> Result<(), QuantizeError> {
        let n = self.pos.next_multiple_of(self.alignment) - self.pos;
        self.write(&vec![0; n as usize])
    }

    /// Flushes and syncs the file; it is complete on disk but not yet in place.
    pub(crate) fn finish(&mut self) -> Result<u64, QuantizeError> {
        self.out.flush().map_err(io_err("write", &self.path))?;
        self.out
            .get_ref()
            .sync_all()
            .map_err(io_err("sync", &self.path))?;
        Ok(self.pos)
    }

    /// Renames the finished file over `dst` and syncs the directory, so that `dst` is either
    /// absent (or its old self) or the complete new file, even across a crash.
    pub(crate) fn install(mut self, dst: &Path) -> Result<(), QuantizeError> {
        fs::rename(&self.path, dst).map_err(io_err("rename the finished file to", dst))?;
        self.installed = true;
        #[cfg(unix)]
        if let Some(dir) = dst.parent() {
            let dir = if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            };
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("sync the directory", dir))?;
        }
        Ok(())
    }
}

impl Drop for TempOutput {
    fn drop(&mut self) {
        if !self.installed {
            // Best effort: the error that got us here matters more than a failed cleanup.
            let _ = fs::remove_file(&self.path);
        }
    }
}

pub(crate) fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> QuantizeError {
    let path = path.to_owned();
    move |source| QuantizeError::Io {
        action,
        path,
        source,
    }
}

/// Converts one tensor's data `src` as `plan` says and writes it, a batch of rows at a time,
/// each batch's rows spread over up to `threads` threads.
pub(crate) fn convert_tensor(
    src: &[u8],
    plan: &TensorPlan,
    threads: usize,
    out: &mut TempOutput,
) -> Result<(), QuantizeError> {
    let ne0 = plan.dims.first().copied().unwrap_or(1) as usize;
    let row_bytes = |ty: GgmlType| {
        ty.bytes_for(ne0 as u64)
            .expect("planned types hold whole rows") as usize
    };
    let (src_row, dst_row) = (row_bytes(plan.from), row_bytes(plan.to));
    if dst_row == 0 {
        return Ok(()); // no elements, no bytes
    }
    let n_rows = src.len() / src_row;
    let conv = Rows {
        from: plan.from,
        to: plan.to,
        ne0,
        src_row,
        dst_row,
    };
    let batch_rows = (BATCH_BYTES / dst_row).max(1);
    let mut buf = vec![0u8; batch_rows.min(n_rows) * dst_row];
    for first in (0..n_rows).step_by(batch_rows) {
        let n = batch_rows.min(n_rows - first);
        let dst = &mut buf[..n * dst_row];
        let src = &src[first * src_row..(first + n) * src_row];
        let threads = threads
            .min((n * ne0).div_ceil(MIN_ELEMENTS_PER_THREAD))
            .max(1);
        let per_thread = n.div_ceil(threads);
        thread::scope(|s| {
            let mut parts = dst
                .chunks_mut(per_thread * dst_row)
                .zip(src.chunks(per_thread * src_row));
            // The first part runs on this thread, the others on their own.
            let (d0, s0) = parts.next().expect("a batch has at least one row");
            for (d, s_rows) in parts {
                s.spawn(move || conv.convert(s_rows, d));
            }
            conv.convert(s0, d0);
        });
        out.write(dst)?;
    }
    Ok(())
}

/// How the rows of one tensor are converted.
#[derive(Clone, Copy)]
struct Rows {
    from: GgmlType,
    to: GgmlType,
    /// Elements per row.
    ne0: usize,
    /// Bytes per source row and per output row.
    src_row: usize,
    dst_row: usize,
}

impl Rows {
    /// Converts the whole rows in `src` into `dst`.
    fn convert(self, src: &[u8], dst: &mut [u8]) {
        let mut row = vec![0f32; self.ne0];
        for (s, d) in src
            .chunks_exact(self.src_row)
            .zip(dst.chunks_exact_mut(self.dst_row))
        {
            dequantize_row(self.from, s, &mut row)
                .expect("the plan accepts only types the kernels read");
            quantize_row(self.to, &row, d).expect("the plan picks only types the kernels write");
        }
    }
}
