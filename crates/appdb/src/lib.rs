//! The web app's database: users, sessions, API keys, chats, messages, presets, usage,
//! server-wide settings, and documents for search and answers with sources, in one SQLite file.
//!
//! [`Db`] is the whole interface: [`Db::open`] creates or migrates the file (the steps are in
//! `schema.rs`) and every method takes `&self`, so one `Db` in an `Arc` serves all requests (one
//! connection behind a mutex; SQLite serialises writes anyway). The methods are grouped by
//! module:
//!
//! - users, sign-in sessions and API keys ([`User`], [`Role`], [`Status`], [`NewSession`],
//!   [`ApiKey`]): passwords are Argon2id hashes; session tokens and API key secrets are stored
//!   only as SHA-256 digests, so a copy of the file gives no way in;
//! - chats and their messages ([`Chat`], [`ChatSettings`], [`ChatUpdate`], [`Message`],
//!   [`NewMessage`], [`MessageStats`], [`MessageStatus`]), full-text search ([`SearchHit`]) and
//!   export/import ([`ChatExport`], [`export_markdown`]); every chat method takes the user's id
//!   and treats another user's chat as a missing one; a message may carry the sources its answer was given ([`Db::set_message_sources`]);
//! - documents for "chat with my documents" ([`Collection`], [`Document`], [`DocStatus`],
//!   [`NewChunk`], [`ChunkView`], [`Hit`]): collections of a user or shared, documents worked on
//!   in the background (chunks, embeddings, progress), and [`Db::hybrid_search`] (cosine over
//!   the stored vectors fused with FTS5 bm25 by reciprocal rank fusion);
//! - presets ([`Preset`], [`NewPreset`]);
//! - token usage per user, model and UTC day ([`UsageRow`], [`utc_day`]) and key/value settings.
//!
//! Errors are one [`DbError`].

mod chats;
mod documents;
mod error;
mod presets;
mod schema;
mod search;
mod usage;
mod users;

use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use sha2::{Digest, Sha256};

pub use chats::{
    export_markdown, Chat, ChatExport, ChatSettings, ChatUpdate, ExportedMessage, Message,
    MessageStats, MessageStatus, NewMessage,
};
pub use documents::{ChunkView, Collection, DocStatus, Document, Hit, NewChunk};
pub use error::{DbError, Result};
pub use presets::{NewPreset, Preset};
pub use search::SearchHit;
pub use usage::{utc_day, UsageRow};
pub use users::{ApiKey, NewSession, Role, Status, User};

/// A consistent copy of `conn`'s database at `dest`, which must not exist.
fn vacuum_into(conn: &Connection, dest: &Path) -> Result<()> {
    if dest.exists() {
        return Err(DbError::BackupExists {
            path: dest.to_path_buf(),
        });
    }
    let target = dest.to_str().ok_or_else(|| {
        error::invalid(
            "backup path",
            format!("{dest:?} is not valid UTF-8; choose a plain file name"),
        )
    })?;
    conn.execute("VACUUM INTO ?1", [target])?;
    Ok(())
}

/// The app's database. `Send + Sync`; every method takes `&self`.
pub struct Db {
    conn: Mutex<Connection>,
    interrupted: usize,
}

impl Db {
    /// Opens the database at `path`, creating the file and its parent directories.
    ///
    /// Sets WAL mode, foreign keys, a 5 s busy timeout and `synchronous=NORMAL`, applies the
    /// schema's migrations, and marks every message still `streaming` as `interrupted`: only a
    /// server that stopped mid-answer leaves one behind (see [`Db::interrupted_at_open`]).
    pub fn open(path: &Path) -> Result<Db> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Io {
                op: "create the database directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let open_err = |source| DbError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        Self::setup(conn, path)
    }

    /// A fresh database in memory (for tests).
    pub fn open_in_memory() -> Result<Db> {
        let path = Path::new(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| DbError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        Self::setup(conn, path)
    }

    fn setup(mut conn: Connection, path: &Path) -> Result<Db> {
        let open_err = |source| DbError::Open {
            path: path.to_path_buf(),
            source,
        };
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        // journal_mode answers with the mode set ("memory" for an in-memory database).
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        schema::migrate(&mut conn, path)?;
        let interrupted = conn.execute(
            "UPDATE messages SET status = 'interrupted' WHERE status = 'streaming'",
            [],
        )?;
        Ok(Db {
            conn: Mutex::new(conn),
            interrupted,
        })
    }

    /// How many messages [`Db::open`] found still streaming and marked `interrupted`.
    pub fn interrupted_at_open(&self) -> usize {
        self.interrupted
    }

    /// Writes a consistent copy of the database to `dest` (`VACUUM INTO`), which must not exist.
    pub fn backup(&self, dest: &Path) -> Result<()> {
        vacuum_into(&self.conn(), dest)
    }

    /// [`Db::backup`] of the database file at `path`, opened read-only: safe while a server
    /// uses it (unlike [`Db::open`], it marks no answer interrupted).
    pub fn backup_file(path: &Path, dest: &Path) -> Result<()> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|source| DbError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        conn.busy_timeout(Duration::from_secs(5))?;
        vacuum_into(&conn, dest)
    }

    /// The connection. A panic while it was held cannot leave it mid-transaction (a dropped
    /// `Transaction` rolls back), so a poisoned lock is safe to take over.
    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The current Unix time in seconds.
fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// `bytes` random bytes from the operating system, as lowercase hex.
fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|source| DbError::Random { source })?;
    Ok(hex(&buf))
}

/// The SHA-256 of `text`, as lowercase hex (how tokens and API keys are stored).
fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Gives an enum stored as lowercase text `as_str`, `parse` and its SQLite conversions.
macro_rules! text_enum {
    ($name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $name {
            /// The lowercase name, as stored and as sent in JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            /// The value named `text`, if it is one.
            pub fn parse(text: &str) -> Option<Self> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl rusqlite::types::ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
                Ok(self.as_str().into())
            }
        }

        impl rusqlite::types::FromSql for $name {
            fn column_result(
                value: rusqlite::types::ValueRef<'_>,
            ) -> rusqlite::types::FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::parse(text).ok_or_else(|| {
                    rusqlite::types::FromSqlError::Other(
                        format!(
                            "unknown {} {text:?} (written by a newer Hearth?)",
                            stringify!($name)
                        )
                        .into(),
                    )
                })
            }
        }
    };
}
pub(crate) use text_enum;

/// A JSON column, read as `T`.
fn json_column<T: serde::de::DeserializeOwned>(
    row: &rusqlite::Row<'_>,
    index: usize,
) -> rusqlite::Result<T> {
    let text: String = row.get(index)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
    })
}

/// `value` as JSON text for a column.
fn to_json<T: serde::Serialize>(what: &'static str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|source| DbError::Json { what, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_sha256() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let r = random_hex(8).unwrap();
        assert_eq!(r.len(), 16);
        assert_ne!(r, random_hex(8).unwrap());
    }

    #[test]
    fn db_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Db>();
    }
}
