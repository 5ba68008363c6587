//! Users, sign-in sessions and API keys.

use std::sync::OnceLock;
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::error::invalid;
use crate::{now, random_hex, sha256_hex, text_enum, Db, DbError, Result};

/// The built-in user of single-user mode: an admin without a password.
const LOCAL_USERNAME: &str = "local";

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    User,
}
text_enum!(Role { Admin => "admin", User => "user" });

/// Whether a user may sign in: `pending` accounts wait for an admin's approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Pending,
    Disabled,
}
text_enum!(Status { Active => "active", Pending => "pending", Disabled => "disabled" });

/// A user, as the app shows it (the password hash never leaves this crate).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    pub status: Status,
    pub created_at: i64,
}

/// A new sign-in session: the cookie's token and the CSRF token the page must echo.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewSession {
    pub token: String,
    pub csrf: String,
}

/// An API key as listed (the secret itself is shown once, by [`Db::create_api_key`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

const USER_COLUMNS: &str = "id, username, role, status, created_at";

fn user_row(row: &Row<'_>) -> rusqlite::Result<User> {
    Ok(User {
        id: row.get(0)?,
        username: row.get(1)?,
        role: row.get(2)?,
        status: row.get(3)?,
        created_at: row.get(4)?,
    })
}

const KEY_COLUMNS: &str = "id, name, prefix, created_at, last_used_at";

fn key_row(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    Ok(ApiKey {
        id: row.get(0)?,
        name: row.get(1)?,
        prefix: row.get(2)?,
        created_at: row.get(3)?,
        last_used_at: row.get(4)?,
    })
}

/// Checks the username rules: 1-64 characters of `[A-Za-z0-9_.-]`.
fn check_username(username: &str) -> Result<()> {
    let ok_chars = username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if username.is_empty() || username.len() > 64 || !ok_chars {
        return Err(invalid(
            "username",
            format!(
                "{username:?} is not 1 to 64 characters of letters, digits, '_', '.' and '-'; \
                 choose another"
            ),
        ));
    }
    Ok(())
}

/// Argon2id (default parameters) with a random 16-byte salt, as a PHC string.
fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|source| DbError::Random { source })?;
    hash_with_salt(password, &salt)
}

fn hash_with_salt(password: &str, salt: &[u8]) -> Result<String> {
    let hash_err = |e: argon2::password_hash::Error| DbError::PasswordHash {
        reason: e.to_string(),
    };
    let salt = SaltString::encode_b64(salt).map_err(hash_err)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(hash_err)
}

/// Whether `password` matches the PHC string `hash` (false for a malformed hash).
fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash verified against for unknown users, so that a sign-in takes as long whether or not
/// the username exists. Its password and salt need no secrecy: it never grants anything.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_with_salt("no such user", &[0x5a; 16]).unwrap_or_default())
}

impl Db {
    /// The number of accounts that can sign in (all but the built-in `local` user).
    pub fn account_count(&self) -> Result<u64> {
        Ok(self.conn().query_row(
            "SELECT count(*) FROM users WHERE password_hash IS NOT NULL",
            [],
            |row| row.get(0),
        )?)
    }

    /// Creates an account. The username is 1-64 characters of `[A-Za-z0-9_.-]`, unique ignoring
    /// case ([`DbError::Conflict`]); the password has at least 8 characters.
    pub fn create_user(
        &self,
        username: &str,
        password: &str,
        role: Role,
        status: Status,
    ) -> Result<User> {
        check_username(username)?;
        if password.chars().count() < 8 {
            return Err(invalid(
                "password",
                "it has fewer than 8 characters; choose a longer one",
            ));
        }
        // "local" is the single-user mode's account, even before it is first created.
        if username.eq_ignore_ascii_case(LOCAL_USERNAME) {
            return Err(DbError::Conflict {
                username: username.into(),
            });
        }
        // Hashing takes tens of milliseconds: not while holding the connection.
        let hash = hash_password(password)?;
        let conn = self.conn();
        let inserted = conn.execute(
            "INSERT INTO users (username, password_hash, role, status, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (username) DO NOTHING",
            params![username, hash, role, status, now()],
        )?;
        if inserted == 0 {
            return Err(DbError::Conflict {
                username: username.into(),
            });
        }
        let id = conn.last_insert_rowid();
        Ok(conn.query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
            [id],
            user_row,
        )?)
    }

    /// The built-in admin `local` of single-user mode (no password: it cannot sign in),
    /// created on the first call.
    pub fn local_user(&self) -> Result<User> {
        let conn = self.conn();
        conn.execute(
            "INSERT INTO users (username, password_hash, role, status, created_at)
             VALUES (?1, NULL, ?2, ?3, ?4) ON CONFLICT (username) DO NOTHING",
            params![LOCAL_USERNAME, Role::Admin, Status::Active, now()],
        )?;
        Ok(conn.query_row(
            &format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?1"),
            [LOCAL_USERNAME],
            user_row,
        )?)
    }

    /// The user with this id.
    pub fn user(&self, id: i64) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [id],
                user_row,
            )
            .optional()?)
    }

    /// All accounts (not the built-in `local` user), oldest first.
    pub fn users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {USER_COLUMNS} FROM users WHERE password_hash IS NOT NULL ORDER BY id"
        ))?;
        let users = stmt
            .query_map([], user_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(users)
    }

    /// The user if `password` is theirs, whatever their status (the caller checks it); `None`
    /// for an unknown username or a wrong password.
    pub fn check_password(&self, username: &str, password: &str) -> Result<Option<User>> {
        let found = self
            .conn()
            .query_row(
                &format!(
                    "SELECT {USER_COLUMNS}, password_hash FROM users
                     WHERE username = ?1 AND password_hash IS NOT NULL"
                ),
                [username],
                |row| Ok((user_row(row)?, row.get::<_, String>(5)?)),
            )
            .optional()?;
        // The connection is free again: verification is slow on purpose.
        Ok(match found {
            Some((user, hash)) => verify_password(password, &hash).then_some(user),
            None => {
                verify_password(password, dummy_hash());
                None
            }
        })
    }

    /// Sets a user's status; `None` if there is no such user.
    pub fn set_status(&self, id: i64, status: Status) -> Result<Option<User>> {
        self.update_user(id, "status", &status)
    }

    /// Sets a user's role; `None` if there is no such user.
    pub fn set_role(&self, id: i64, role: Role) -> Result<Option<User>> {
        self.update_user(id, "role", &role)
    }

    fn update_user(
        &self,
        id: i64,
        column: &'static str,
        value: &dyn rusqlite::ToSql,
    ) -> Result<Option<User>> {
        Ok(self
            .conn()
            .query_row(
                &format!("UPDATE users SET {column} = ?1 WHERE id = ?2 RETURNING {USER_COLUMNS}"),
                params![value, id],
                user_row,
            )
            .optional()?)
    }

    /// Deletes the user with their sessions, keys, chats, presets and usage; false if there is
    /// no such user.
    pub fn delete_user(&self, id: i64) -> Result<bool> {
        Ok(self
            .conn()
            .execute("DELETE FROM users WHERE id = ?1", [id])?
            > 0)
    }

    /// Signs `user_id` in for `ttl`: a new random token (only its SHA-256 is stored) and CSRF
    /// token. Expired sessions of everyone are cleared on the way.
    pub fn create_session(&self, user_id: i64, ttl: Duration) -> Result<NewSession> {
        let session = NewSession {
            token: random_hex(32)?,
            csrf: random_hex(32)?,
        };
        let created = now();
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        let conn = self.conn();
        conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [created])?;
        conn.execute(
            "INSERT INTO sessions (token_hash, user_id, csrf, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                sha256_hex(&session.token),
                user_id,
                session.csrf,
                created,
                created.saturating_add(ttl)
            ],
        )?;
        Ok(session)
    }

    /// The user and CSRF token of the session `token`, unless it is unknown or expired (an
    /// expired session is deleted).
    pub fn session(&self, token: &str) -> Result<Option<(User, String)>> {
        let token_hash = sha256_hex(token);
        let conn = self.conn();
        let found = conn
            .query_row(
                "SELECT u.id, u.username, u.role, u.status, u.created_at, s.csrf, s.expires_at
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = ?1",
                [&token_hash],
                |row| {
                    Ok((
                        user_row(row)?,
                        row.get::<_, String>(5)?,
                        row.get::<_, i64>(6)?,
                    ))
                },
            )
            .optional()?;
        match found {
            Some((user, csrf, expires_at)) if expires_at > now() => Ok(Some((user, csrf))),
            Some(_) => {
                conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [&token_hash])?;
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Ends the session `token` (nothing if it is unknown).
    pub fn delete_session(&self, token: &str) -> Result<()> {
        self.conn().execute(
            "DELETE FROM sessions WHERE token_hash = ?1",
            [sha256_hex(token)],
        )?;
        Ok(())
    }

    /// Ends every session of `user_id` (when they are disabled or their role changes).
    pub fn delete_sessions_of(&self, user_id: i64) -> Result<()> {
        self.conn()
            .execute("DELETE FROM sessions WHERE user_id = ?1", [user_id])?;
        Ok(())
    }

    /// A new API key named `name` (1-100 characters) for `user_id`, with its secret
    /// (`hearth_` and 40 hex digits), which is shown only this once: only its SHA-256 is kept.
    pub fn create_api_key(&self, user_id: i64, name: &str) -> Result<(ApiKey, String)> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(invalid("API key name", "it must have 1 to 100 characters"));
        }
        let secret = format!("hearth_{}", random_hex(20)?);
        let prefix: String = secret.chars().take(12).collect();
        let key = self.conn().query_row(
            &format!(
                "INSERT INTO api_keys (user_id, name, prefix, secret_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5) RETURNING {KEY_COLUMNS}"
            ),
            params![user_id, name, prefix, sha256_hex(&secret), now()],
            key_row,
        )?;
        Ok((key, secret))
    }

    /// The API keys of `user_id`, oldest first.
    pub fn api_keys(&self, user_id: i64) -> Result<Vec<ApiKey>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE user_id = ?1 ORDER BY id"
        ))?;
        let keys = stmt
            .query_map([user_id], key_row)?
            .collect::<rusqlite::Result<_>>()?;
        Ok(keys)
    }

    /// Deletes key `key_id` if it belongs to `user_id`; false otherwise.
    pub fn revoke_api_key(&self, user_id: i64, key_id: i64) -> Result<bool> {
        Ok(self.conn().execute(
            "DELETE FROM api_keys WHERE id = ?1 AND user_id = ?2",
            [key_id, user_id],
        )? > 0)
    }

    /// The user whose key has this secret (and notes that the key was used), if any.
    pub fn api_key_user(&self, secret: &str) -> Result<Option<User>> {
        let conn = self.conn();
        let user_id: Option<i64> = conn
            .query_row(
                "UPDATE api_keys SET last_used_at = ?1 WHERE secret_hash = ?2 RETURNING user_id",
                params![now(), sha256_hex(secret)],
                |row| row.get(0),
            )
            .optional()?;
        let Some(user_id) = user_id else {
            return Ok(None);
        };
        Ok(conn
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                [user_id],
                user_row,
            )
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["a", "Alice_1.x-y", &"z".repeat(64)] {
            check_username(ok).unwrap();
        }
        for bad in ["", "has space", "é", "a/b", &"z".repeat(65)] {
            assert!(matches!(
                check_username(bad),
                Err(DbError::Invalid {
                    what: "username",
                    ..
                })
            ));
        }
    }

    #[test]
    fn hashes_are_salted_argon2id_phc_strings() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b);
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("correct horsf", &a));
        assert!(!verify_password("x", "not a hash"));
        assert!(dummy_hash().starts_with("$argon2id$"));
    }

    #[test]
    fn local_user_is_one_admin_without_sign_in() {
        let db = Db::open_in_memory().unwrap();
        let local = db.local_user().unwrap();
        assert_eq!(local, db.local_user().unwrap());
        assert_eq!((local.role, local.status), (Role::Admin, Status::Active));
        assert_eq!(db.account_count().unwrap(), 0);
        assert!(db.users().unwrap().is_empty());
        assert_eq!(db.check_password("local", "").unwrap(), None);
        assert!(matches!(
            db.create_user("LOCAL", "password1", Role::User, Status::Active),
            Err(DbError::Conflict { .. })
        ));
    }

    #[test]
    fn role_and_status_updates() {
        let db = Db::open_in_memory().unwrap();
        let u = db
            .create_user("bob", "password1", Role::User, Status::Pending)
            .unwrap();
        let u2 = db.set_status(u.id, Status::Active).unwrap().unwrap();
        assert_eq!(u2.status, Status::Active);
        let u3 = db.set_role(u.id, Role::Admin).unwrap().unwrap();
        assert_eq!((u3.role, u3.status), (Role::Admin, Status::Active));
        assert_eq!(db.user(u.id).unwrap(), Some(u3));
        assert_eq!(db.set_role(999, Role::Admin).unwrap(), None);
        assert_eq!(db.set_status(999, Status::Active).unwrap(), None);
        assert!(db.delete_user(u.id).unwrap());
        assert!(!db.delete_user(u.id).unwrap());
        assert_eq!(db.user(u.id).unwrap(), None);
    }
}
