//! File-system building blocks: atomic writes, directory syncs and advisory locks.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use fs4::{FileExt, TryLockError};

use crate::error::{io_err, Result};

/// Marks the temporary files [`write_atomic`] creates, so that listings skip them and `gc` can
/// delete those a crash left behind.
const TEMP_MARK: &str = ".tmp-";

/// Writes `bytes` to `path` so that readers see either the old file or the complete new one,
/// even across a crash: a uniquely named temporary file in the same directory is written,
/// flushed to disk, renamed over `path`, and the directory entry is flushed too.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("store paths have a parent");
    fs::create_dir_all(dir).map_err(io_err("create the directory", dir))?;
    let tmp = temp_sibling(path);
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    };
    if let Err(e) = write() {
        // Best effort: a leftover temporary file is harmless and `gc` removes it.
        let _ = fs::remove_file(&tmp);
        return Err(io_err("write", &tmp)(e));
    }
    fs::rename(&tmp, path).map_err(io_err("rename into place", path))?;
    sync_dir(dir)
}

/// A fresh temporary name next to `path`: hidden, marked, unique per process and call.
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .expect("store paths have a file name")
        .to_string_lossy();
    path.with_file_name(format!(".{name}{TEMP_MARK}{}-{n}", std::process::id()))
}

/// Whether a file name is one of [`temp_sibling`]'s.
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARK)
}

/// Flushes a directory's entries (a rename is durable only once its directory is synced).
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync the directory", dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// An advisory lock on a file (flock on Unix). The kernel drops it when the process dies, so a
/// killed pull never leaves a stale lock behind; it is released when the value is dropped.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    fn open(path: &Path) -> Result<File> {
        let dir = path.parent().expect("lock paths have a parent");
        fs::create_dir_all(dir).map_err(io_err("create the directory", dir))?;
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(io_err("open the lock file", path))
    }

    /// Waits for an exclusive lock.
    pub(crate) fn exclusive(path: &Path) -> Result<FileLock> {
        let file = FileLock::open(path)?;
        FileExt::lock(&file).map_err(io_err("lock", path))?;
        Ok(FileLock { _file: file })
    }

    /// Waits for a shared lock.
    pub(crate) fn shared(path: &Path) -> Result<FileLock> {
        let file = FileLock::open(path)?;
        FileExt::lock_shared(&file).map_err(io_err("lock", path))?;
        Ok(FileLock { _file: file })
    }

    /// Takes an exclusive lock if nobody holds the lock, else returns `None`.
    pub(crate) fn try_exclusive(path: &Path) -> Result<Option<FileLock>> {
        let file = FileLock::open(path)?;
        match FileExt::try_lock(&file) {
            Ok(()) => Ok(Some(FileLock { _file: file })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => Err(io_err("lock", path)(e)),
        }
    }
}
