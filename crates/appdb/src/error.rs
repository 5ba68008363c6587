//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong in the app's database.
///
/// Each variant carries the facts needed to act on it, and each message says what the user (or
/// the web app, which maps [`DbError::Invalid`] to 400 and [`DbError::Conflict`] to 409) can do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbError {
    /// A file-system operation around the database failed (e.g. creating its directory).
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The database file could not be opened or set up.
    #[error(
        "cannot open the database {}: {source}; check that it is a Hearth database and that \
         its directory is writable",
        path.display()
    )]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The database was written by a newer Hearth whose schema this one does not know.
    #[error(
        "the database {} has schema version {found}, but this Hearth knows only up to version \
         {supported}: it was written by a newer Hearth; upgrade Hearth (or open a backup made \
         before the upgrade)",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// A query failed.
    #[error(
        "database error: {0}; if it keeps happening, check the disk (free space, permissions) \
         and restart Hearth"
    )]
    Sqlite(#[from] rusqlite::Error),

    /// Input that breaks a rule (a username, a password, an import, ...); nothing was written.
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },

    /// The username is already used by another account.
    #[error("the username {username:?} is already taken (usernames ignore case); choose another")]
    Conflict { username: String },

    /// [`crate::Db::backup`] was given a file that already exists.
    #[error(
        "refusing to back up to {}: the file already exists; choose a new file name or remove \
         the old one first",
        path.display()
    )]
    BackupExists { path: PathBuf },

    /// Argon2 could not hash the password (only with a broken parameter set).
    #[error("cannot hash the password: {reason}; this is a bug in Hearth, please report it")]
    PasswordHash { reason: String },

    /// The operating system gave no random bytes for a token, key or salt.
    #[error(
        "the operating system's random number generator failed: {source}; tokens cannot be made \
         safely, check the system (e.g. /dev/urandom) and restart Hearth"
    )]
    Random {
        #[source]
        source: getrandom::Error,
    },

    /// A value could not be encoded as JSON for storage.
    #[error("cannot store {what} as JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// Shorthand for the crate's results.
pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// Builds a [`DbError::Invalid`].
pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> DbError {
    DbError::Invalid {
        what,
        reason: reason.into(),
    }
}
